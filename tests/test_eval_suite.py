"""The evaluation suite on SynthTalk ground truth: metrics move the right way when the ground
truth is damaged, bad items are reported and skipped, the CLI writes its report."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from streamchar.cli.main import app
from streamchar.data.mp4 import read_mp4, write_mp4
from streamchar.errors import StreamcharError
from streamchar.evaluation.asr import Recognizer, word_error_rate
from streamchar.evaluation.frechet import GaussianStats, frechet_distance
from streamchar.evaluation.items import named_folders, synthtalk_items
from streamchar.evaluation.quality import FrameQuality, quality_drift
from streamchar.evaluation.scorers import FrechetFeatures, IdentityScorer, SyncScorer, read_reference


@pytest.fixture(scope="module")
def clips(small_set):
    root, _ = small_set
    items = synthtalk_items(root, "train") + synthtalk_items(root, "test") + synthtalk_items(root, "test-unseen")
    loaded = []
    for it in items:
        d = read_mp4(it.video)
        loaded.append((it, d))
    loaded.sort(key=lambda x: -len(x[1].frames))
    return loaded


def _shift_audio(audio, frames, rate, fps):
    """Positive frames: the audio plays that much earlier than the picture (it leads)."""
    n = int(round(abs(frames) * rate / fps))
    if frames > 0:
        return np.concatenate([audio[n:], np.zeros(n, audio.dtype)])
    return np.concatenate([np.zeros(n, audio.dtype), audio[:-n]])


def test_sync_finds_a_five_frame_shift_and_drops_for_unrelated_audio(clips):
    torch.set_num_threads(2)
    item, d = clips[0]
    sync = SyncScorer()
    base = sync(d.frames, d.audio, d.sample_rate, d.fps)
    assert abs(base.offset) <= 1
    lead = sync(d.frames, _shift_audio(d.audio, 5, d.sample_rate, d.fps), d.sample_rate, d.fps)
    lag = sync(d.frames, _shift_audio(d.audio, -5, d.sample_rate, d.fps), d.sample_rate, d.fps)
    assert lead.offset == 5 and lag.offset == -5
    far = sync(d.frames, _shift_audio(d.audio, 48, d.sample_rate, d.fps), d.sample_rate, d.fps)
    assert far.sync_c < 0.6 * base.sync_c


@pytest.mark.slow
def test_wrong_sentence_gives_wer_near_100(clips):
    (a, da), (b, db) = clips[0], clips[1]
    rec = Recognizer([a.transcript, b.transcript])
    right = word_error_rate([a.transcript], [rec.transcribe(da.audio, da.sample_rate)]).wer
    wrong = word_error_rate([a.transcript], [rec.transcribe(db.audio, db.sample_rate)]).wer
    assert right < 0.3 and wrong > 0.8


def test_identity_prefers_the_right_character(clips):
    (a, da) = clips[0]
    other = next((it, d) for it, d in clips if it.character_id != a.character_id)
    ident = IdentityScorer()
    own = ident(da.frames, read_reference(a.reference_image, da.frames))
    swapped = ident(da.frames, read_reference(other[0].reference_image, da.frames))
    assert own["similarity"] > swapped["similarity"] + 0.2
    assert own["consistent"] > 0.8 and swapped["consistent"] < 0.2


@pytest.mark.slow
def test_blur_and_recolour_raise_fd_and_drift(clips):
    feats = FrechetFeatures(frame_stride=1)
    frames = np.concatenate([d.frames for _, d in clips])
    ref, same = feats.frames(frames[0::2]), feats.frames(frames[1::2])  # the same clips, alternate frames
    assert np.allclose(feats.frames(frames[0::2], batch=5), ref, atol=1e-4)  # a long stream's frames go in batches
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in frames[1::2]])
    recoloured = (frames[1::2].astype(np.float32) * np.array([0.7, 1.0, 1.2])).clip(0, 255).astype(np.uint8)
    fd = lambda x: frechet_distance(GaussianStats.of(ref), GaussianStats.of(x))  # noqa: E731
    assert fd(feats.frames(blurred)) > 2 * fd(same)
    assert fd(feats.frames(recoloured)) > 2 * fd(same)

    quality = FrameQuality()
    fps = 24.0
    video = np.concatenate([frames] * (int(31 * fps) // len(frames) + 1))[: int(31 * fps)]
    damaged = video.copy()
    damaged[int(25 * fps) :] = np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in video[int(25 * fps) :]])
    clean_drift, _ = quality_drift(quality(video), fps)
    damaged_drift, _ = quality_drift(quality(damaged), fps)
    assert damaged_drift > clean_drift + 0.01


@pytest.mark.slow
def test_eval_short_reports_bad_items_and_goes_on(small_set, clips, tmp_path):
    root, _ = small_set
    folder = tmp_path / "generated"
    folder.mkdir()
    good = clips[:2]
    for it, _ in good:
        shutil.copy(it.video, folder / f"{it.name}.mp4")
        shutil.copy(it.reference_image, folder / f"{it.name}.png")
        (folder / f"{it.name}.json").write_text(json.dumps({"transcript": it.transcript, "reference_image": f"{it.name}.png"}))
    it, d = good[0]
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    (folder / "broken.json").write_text(json.dumps({"transcript": it.transcript}))
    write_mp4(folder / "fps25.mp4", d.frames[:50], 25, d.audio[: 2 * d.sample_rate], d.sample_rate)
    (folder / "fps25.json").write_text(json.dumps({"transcript": it.transcript}))
    shutil.copy(it.video, folder / "untold.mp4")
    (folder / "untold.json").write_text(json.dumps({"transcript": "  "}))
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["eval", "short", "--data", str(root), "--split", "test-unseen", "--videos", f"copy={folder}",
                                      "--clips", "10", "--out", str(out), "--threads", "2"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval-short.json").read_text())
    copy = report["systems"]["copy"]
    reasons = {f["name"]: f["reason"] for f in copy["failed"]}
    assert set(reasons) == {"broken", "fps25", "untold"}
    assert "damaged" in reasons["broken"] or "cannot read" in reasons["broken"]
    assert "25 fps" in reasons["fps25"] and "empty transcript" in reasons["untold"]
    assert copy["summary"]["evaluated"] == 2
    assert report["systems"]["ground truth"]["summary"]["evaluated"] >= 1
    assert list(copy["by_group"]) == ["espeak"]  # each engine's clips apart: this set has espeak-ng's only
    assert all(copy["by_group"]["espeak"][k] == copy["summary"][k] for k in ("evaluated", "wer", "sync_c", "identity_similarity"))
    assert report["metrics"]["sync"] == "synthtalk-sync" and report["metrics"]["frame_fd"] == "FD-tinyvae"
    table = (out / "eval-short.md").read_text()
    assert "| copy |" in table and "| copy · espeak |" in table and "FD-tinyvae" in table and "FID" not in table.split("\n")[0]
    assert (out / "eval-short.png").stat().st_size > 1000


def test_user_torchscript_inception_is_used_for_fid(tmp_path, clips):
    class FakeInception(torch.nn.Module):
        def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            return torch.nn.functional.adaptive_avg_pool2d(x / 255.0, 4).flatten(1)

    path = tmp_path / "inception-2015-12-05.pt"
    torch.jit.script(FakeInception()).save(str(path))
    feats = FrechetFeatures(inception=path)
    assert feats.frame_name == "FID" and feats.video_name == "FD-tinyvae-video"
    f = feats.frames(clips[0][1].frames)
    assert f.shape[1] == 48
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")

    with pytest.raises(StreamcharError, match="not a TorchScript Inception"):
        FrechetFeatures(inception=bad)


def test_named_folders_reads_name_folder_pairs_and_refuses_bad_ones():
    assert named_folders(["teacher=runs/a", "student=b=c"]) == {"teacher": Path("runs/a"), "student": Path("b=c")}
    for bad in (["teacher"], ["=runs/a"], ["teacher="]):
        with pytest.raises(StreamcharError, match="NAME=FOLDER"):
            named_folders(bad)
    with pytest.raises(StreamcharError, match="two systems are named 'ground truth'"):
        named_folders(["ground truth=x"], taken=("ground truth",))
    with pytest.raises(StreamcharError, match="two systems are named 'a'"):
        named_folders(["a=x", "a=y"])
