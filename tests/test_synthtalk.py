import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from streamchar.data.audio import read_wav
from streamchar.data.character import make_character
from streamchar.data.clip import RECORD
from streamchar.data.harvard import harvard_sentences, split_sentences
from streamchar.data.mp4 import read_mp4
from streamchar.data.synth import INDEX, character_seeds, plan_set, synthesize_set
from streamchar.errors import StreamcharError


def records(root: Path) -> list[dict]:
    index = json.loads((root / INDEX).read_text())["clips"]
    return [json.loads((root / e["path"] / RECORD).read_text()) | {"_dir": root / e["path"]} for e in index]


def test_harvard_splits_are_disjoint():
    assert len(harvard_sentences()) == 600
    train, val, test = (set(split_sentences(s)) for s in ("train", "val", "test"))
    assert len(train) == 500 and len(val) == 50 and len(test) == 50
    assert not (train & val) and not (train & test) and not (val & test)


def test_plan_keeps_splits_and_unseen_characters_apart(tiny_cfg):
    plans = plan_set(200, 3, tiny_cfg)
    train_chars, unseen = character_seeds(3, tiny_cfg)
    assert not set(train_chars) & set(unseen)
    for p in plans:
        pool = set(split_sentences(p.split))
        assert set(p.sentences) <= pool and not set(p.sentences) & set(p.reference_sentences)
        assert 1 <= len(p.sentences) <= 4
        assert (p.character_seed in unseen) == (p.split == "test-unseen")
    splits = [p.split for p in plans]
    assert splits.count("test-unseen") == 20 and splits.count("val") == 10 and splits.count("test") == 10
    assert plan_set(200, 3, tiny_cfg) == plans, "the plan depends on the seed alone"


def test_codec_training_set_shares_no_character_with_the_main_set(tiny_cfg):
    """The video codec trains on configs/synthtalk-codec.yaml at seed 7 and is measured on the
    main set's (seed 0) unseen characters: had a character been in both, 'unseen' would be false."""
    from streamchar.config import load_config

    codec_cfg = load_config(None, Path(__file__).parents[1] / "configs" / "synthtalk-codec.yaml")
    codec_train, _ = character_seeds(7, codec_cfg)
    main_train, main_unseen = character_seeds(0, tiny_cfg)
    assert len(codec_train) == 2000
    assert not set(codec_train) & (set(main_train) | set(main_unseen))
    plans = plan_set(50, 7, codec_cfg)
    assert {p.split for p in plans} == {"train"} and all(len(p.sentences) == 1 for p in plans)


def test_character_is_a_seed():
    a, b = make_character(12345), make_character(12345)
    assert a == b
    voices = {make_character(s).voice.name for s in range(40)}
    assert voices <= {"en-us+f5", "en-us+f2", "en-us+adam", "en-us+edward"}
    genders = {make_character(s).gender for s in range(40)}
    assert genders == {"woman", "man"}


def test_clip_files_and_alignment(small_set):
    root, cfg = small_set
    recs = records(root)
    assert len(recs) == 6
    for r in recs:
        d = r["_dir"]
        for f in r["files"].values():
            assert (d / f).is_file()
        assert r["transcript"].strip() and r["words"] and r["phonemes"]
        dec = read_mp4(d / r["files"]["video"])
        assert dec.frames.shape == (r["frame_count"], 128, 128, 3)
        assert dec.fps == 24
        spf = cfg.samples_per_frame
        # MP4 audio and video durations agree within one frame
        assert abs(len(dec.audio) / dec.sample_rate - r["frame_count"] / 24) <= 1 / 24
        audio, sr = read_wav(d / r["files"]["audio"])
        assert sr == 24000 and len(audio) == r["frame_count"] * spf == r["num_samples"]
        # the MP4's AAC track lines up with the lossless WAV (no priming offset)
        n = min(len(audio), len(dec.audio))
        lags = range(-240, 241, 12)
        best = max(lags, key=lambda k: float(np.dot(audio[max(0, k) : n + min(0, k)], dec.audio[max(0, -k) : n - max(0, k)])))
        assert abs(best) <= 24
        words = [w["start"] for w in r["words"]]
        assert words == sorted(words) and r["words"][-1]["end"] <= r["duration"]
        voice, _ = read_wav(d / r["files"]["reference_voice"])
        assert len(voice) / sr >= cfg.synthtalk.reference_voice_seconds * 0.8
        assert r["reference_voice_transcript"] not in r["transcript"]


def _side_activity(frames: np.ndarray, reference: np.ndarray, side: str) -> np.ndarray:
    """Mean change from the neutral reference in the band beside the body where a raised
    hand appears (the character's right is the viewer's left); background otherwise."""
    w = frames.shape[2]
    x0, x1 = (int(0.02 * w), int(0.2 * w)) if side == "right" else (int(0.8 * w), int(0.98 * w))
    band = (slice(None), slice(int(0.42 * w), int(0.7 * w)), slice(x0, x1))
    return np.abs(frames[band].astype(int) - reference[band[1:]].astype(int)).mean(axis=(1, 2, 3))


@pytest.mark.slow
def test_prompt_gestures_are_in_the_frames(tiny_cfg):
    """Every hand the prompt says is raised shows in the frames while it is up, and
    a side the prompt does not name stays empty."""
    from streamchar.data.clip import build_clip

    seen = 0
    for plan in plan_set(24, 11, tiny_cfg):
        clip = build_clip(plan, tiny_cfg)
        rec, frames = clip["record"], clip["frames"]
        c = make_character(plan.character_seed)
        t = (np.arange(len(frames)) + 0.5) / 24
        assert rec["prompt"].startswith(c.describe()) and rec["prompt"].endswith(c.scene())
        for side in ("left", "right"):
            act = _side_activity(frames, clip["reference"], side)
            spans = [g for g in rec["gestures"] if g["side"] == side]
            up = np.zeros(len(t), bool)
            down = np.ones(len(t), bool)
            for g in spans:
                assert f"{g['kind']} {c.pronoun} {side} hand" in rec["prompt"]
                up |= (t > g["start"] + 0.4) & (t < g["end"] - 0.4)
                down &= (t < g["start"]) | (t > g["end"])
            if not spans:
                assert f"{side} hand" not in rec["prompt"]
            assert (act[down] < 3).all(), (plan.clip_id, side)
            assert (act[up] > 15).all(), (plan.clip_id, side)
            seen += len(spans)
        assert ("nods" in rec["prompt"]) == bool(rec["nods"])
    assert seen >= 4, "the sample holds gestures to check"


def test_clip_shorter_than_smoothing_window(tiny_cfg):
    from streamchar.data.clip import ClipPlan, build_clip

    plan = ClipPlan("clip-x", 0, "train", 3, ["Do that with a wooden stick."], ["The birch canoe slid on the smooth planks."], 1)
    clip = build_clip(plan, tiny_cfg)
    assert len(clip["frames"]) < 49 and clip["record"]["frame_count"] == len(clip["frames"])


def test_raised_hand_is_visible(tmp_path):
    """A planned gesture puts skin-coloured pixels low at the side of the frame where the hand rises."""
    from streamchar.data.character import SKIN
    from streamchar.data.motion import PoseTrack
    from streamchar.data.render import CharacterRenderer

    c = make_character(5)
    r = CharacterRenderer(c, 128, 128)
    pose = PoseTrack.neutral(1)
    rest = r.render(pose, 0).astype(int)
    pose.hand["right"] = np.ones(1, np.float32)
    raised = r.render(pose, 0).astype(int)
    changed = np.abs(raised - rest).sum(-1) > 30
    cols = np.nonzero(changed.any(axis=0))[0]
    assert changed.sum() > 100 and cols.mean() < 64, "the character's right hand is on the viewer's left"
    skin = np.array(SKIN[c.skin])
    assert (np.abs(raised - skin).sum(-1) < 12)[changed].sum() > 30


def test_reference_image_is_neutral_and_per_character(small_set):
    root, cfg = small_set
    from PIL import Image

    from streamchar.evaluation.synthtalk_checks import mouth_opening

    by_character = {}
    for r in records(root):
        ref = np.asarray(Image.open(r["_dir"] / "reference.png"))
        clip = read_mp4(r["_dir"] / r["files"]["video"]).frames
        assert mouth_opening(ref[None])[0] == 0 < mouth_opening(clip).max()  # closed in the reference, open as the clip speaks
        by_character.setdefault(r["character"]["seed"], ref)
        assert np.array_equal(by_character[r["character"]["seed"]], ref)  # one reference per character
    refs = list(by_character.values())
    assert len(refs) > 1 and all(not np.array_equal(a, b) for i, a in enumerate(refs) for b in refs[i + 1 :])


@pytest.mark.slow
def test_same_seed_same_data(small_set, tmp_path):
    root, cfg = small_set
    again = tmp_path / "again"
    synthesize_set(again, 6, 7, cfg, workers=1)
    for a, b in zip(records(root), records(again)):
        for f in ("clip.json", "audio.wav", "reference.png", "reference_voice.wav"):
            assert (a["_dir"] / f).read_bytes() == (b["_dir"] / f).read_bytes(), f


def test_resume_after_interruption_keeps_finished_clips(small_set, tmp_path):
    root, cfg = small_set
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    recs = records(copy)
    victim = recs[2]["_dir"]
    keep = recs[0]["_dir"] / "clip.mp4"
    mtime = keep.stat().st_mtime_ns
    # an interrupted run: one clip half-written in a temporary folder, one missing
    shutil.move(victim, victim.parent / f".tmp-{victim.name}-999")
    summary = synthesize_set(copy, 6, 7, cfg, workers=1)
    assert summary["made_now"] == 1 and summary["resumed_from"] == 5
    assert not list(copy.glob("shard-*/.tmp-*"))
    assert keep.stat().st_mtime_ns == mtime, "finished clips are not rewritten"
    assert (victim / "audio.wav").read_bytes() == (root / victim.relative_to(copy) / "audio.wav").read_bytes()
    assert (victim / "clip.json").read_text() == (root / victim.relative_to(copy) / "clip.json").read_text()


def test_other_settings_in_the_same_folder_are_refused(small_set, tmp_path):
    root, cfg = small_set
    copy = tmp_path / "copy2"
    shutil.copytree(root, copy)
    before = sorted(p.name for p in copy.rglob("*"))
    with pytest.raises(StreamcharError, match="other settings \\(seed differ\\)"):
        synthesize_set(copy, 6, 8, cfg, workers=1)
    assert sorted(p.name for p in copy.rglob("*")) == before


def test_one_writer_per_folder(small_set, tmp_path):
    import fcntl

    root, cfg = small_set
    copy = tmp_path / "locked"
    shutil.copytree(root, copy)
    with open(copy / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(StreamcharError, match="another `streamchar data synth` is writing"):
            synthesize_set(copy, 6, 7, cfg, workers=1)


def test_bad_requests(tmp_path, tiny_cfg):
    with pytest.raises(StreamcharError, match="positive number of clips, got 0"):
        synthesize_set(tmp_path / "a", 0, 0, tiny_cfg)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StreamcharError, match="cannot write to output folder"):
        synthesize_set(blocker / "sub", 1, 0, tiny_cfg)


@pytest.mark.slow
def test_parallel_workers_make_the_same_clips(small_set, tmp_path):
    root, cfg = small_set
    par = tmp_path / "par"
    synthesize_set(par, 6, 7, cfg, workers=2)
    for a, b in zip(records(root), records(par)):
        for f in ("clip.mp4", "clip.json", "audio.wav", "reference.png", "reference_voice.wav"):
            assert (a["_dir"] / f).read_bytes() == (b["_dir"] / f).read_bytes(), f


def test_mouth_follows_loudness(small_set):
    from streamchar.evaluation.synthtalk_checks import mouth_loudness_correlation

    root, _ = small_set
    corr = [mouth_loudness_correlation(r["_dir"], r) for r in records(root)]
    assert min(corr) > 0.3, corr
