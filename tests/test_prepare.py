"""`streamchar data prepare` on SynthTalk clips re-encoded as footage comes (another size, frame
rate and audio rate; the transcript as plain text): face-centred crops at the preset's geometry,
word starts from forced alignment near the truth, skipped clips listed with their reasons, a
resumable run, and a folder the training loader reads."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from streamchar.config import load_config
from streamchar.data.audio import resample
from streamchar.data.dataset import ClipDataset
from streamchar.data.mp4 import read_mp4, write_mp4
from streamchar.data.synth import synthesize_set


def _as_footage(clip_dir, out, fps=30, rate=44100):
    """The clip upscaled to 256x256 inside a 320x256 frame with grey bars, at 30 fps and 44.1 kHz."""
    rec = json.loads((clip_dir / "clip.json").read_text())
    d = read_mp4(clip_dir / "clip.mp4")
    n = int(len(d.frames) / d.fps * fps)
    frames = d.frames[np.minimum(np.round(np.arange(n) * d.fps / fps).astype(int), len(d.frames) - 1)]
    frames = np.stack([cv2.copyMakeBorder(cv2.resize(f, (256, 256), interpolation=cv2.INTER_CUBIC), 0, 0, 32, 32, cv2.BORDER_CONSTANT,
                                          value=(90, 90, 90)) for f in frames])  # fmt: skip
    write_mp4(out / f"{clip_dir.name}.mp4", frames, fps, resample(d.audio, d.sample_rate, rate), rate)
    (out / f"{clip_dir.name}.txt").write_text(rec["transcript"] + "\n")
    return rec


@pytest.mark.slow
def test_prepare_turns_footage_into_a_training_folder(tmp_path):
    cfg = load_config("tiny", {"synthtalk": {"engines": ["espeak", "festival", "flite"]}})
    synthesize_set(tmp_path / "set", 6, 3, cfg, workers=2)
    footage = tmp_path / "footage"
    footage.mkdir()
    truth = {c.name: _as_footage(c, footage) for c in sorted((tmp_path / "set").glob("shard-*/clip-*"))}
    write_mp4(footage / "silent.mp4", np.full((48, 240, 320, 3), 128, np.uint8), 30, np.zeros(44100 * 2, np.float32), 44100)
    (footage / "silent.txt").write_text("nothing is said here")
    (footage / "untold.mp4").write_bytes((footage / "silent.mp4").read_bytes())
    out = tmp_path / "prepared"
    r = subprocess.run([sys.executable, "-m", "streamchar", "data", "prepare", "--in", str(footage), "--out", str(out), "--workers", "2"],
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((out / "prepare.json").read_text())
    assert report["skipped"]["silent"].startswith("no speech") and report["skipped"]["untold"] == "no transcript: expected untold.txt"
    assert len(report["prepared"]) >= 2  # Haar finds some of SynthTalk's drawn faces, not all
    assert all(report["skipped"][k].startswith("no face") for k in truth if k not in report["prepared"])
    errors = []
    for name in report["prepared"]:
        rec = json.loads((out / f"{name}.json").read_text())
        assert [w["word"] for w in rec["words"]] == [w["word"] for w in truth[name]["words"]]
        errors += [abs(a["start"] - b["start"]) for a, b in zip(rec["words"], truth[name]["words"])]
        clip = read_mp4(out / f"{name}.mp4")
        assert clip.frames.shape[1:] == (128, 128, 3) and clip.fps == 24 and clip.sample_rate == 24000
    assert np.mean(errors) <= 0.04, np.mean(errors)
    again = subprocess.run([sys.executable, "-m", "streamchar", "data", "prepare", "--in", str(footage), "--out", str(out)],
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert again.returncode == 0 and json.loads((out / "prepare.json").read_text())["prepared"] == report["prepared"]
    items = ClipDataset(out, cfg, split="train")
    assert len(items) == len(report["prepared"]) and items[0]["split"] == "train" and items[0]["reference_voice"] is not None


def test_prepare_refuses_to_write_over_the_footage(tmp_path):
    from streamchar.data.prepare import prepare_folder
    from streamchar.errors import StreamcharError

    with pytest.raises(StreamcharError, match="another folder than --in"):
        prepare_folder(tmp_path, tmp_path, load_config("tiny"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "prepare.json").write_text("{")
    (tmp_path / "clip.mp4").write_bytes(b"")
    with pytest.raises(StreamcharError, match="prepare.json is damaged"):
        prepare_folder(tmp_path, tmp_path / "out", load_config("tiny"))
