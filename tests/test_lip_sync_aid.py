"""The tiny preset's lip-sync aids: each noisy video token gets the audio tokens of its own
frames, and a mouth head names each video latent's mouth shape in training. Alignment of the
pooling and of the targets, checkpoints from before the aids going on unchanged, the aids learning;
and the flow loss's mouth-region term, over the latent cells the clips' mouth boxes cover."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from streamchar.config import load_config
from streamchar.data.latents import LatentCache
from streamchar.errors import StreamcharError
from streamchar.model.checkpoint import load_generator, new_generator, save_generator
from streamchar.model.dit import AudioInput, VideoInput, frame_audio_pooling
from streamchar.model.tokenizer import CharacterTokenizer
from streamchar.training.batch import collate, pretraining_loss, region_loss
from streamchar.training.phonemes import latent_mouth_cells, latent_mouth_shapes
from streamchar.training.windows import WindowSource


def test_each_video_latent_reads_the_audio_of_its_own_frames():
    pool = frame_audio_pooling(9, 33)
    assert pool[0].tolist() == [1.0] + [0.0] * 32  # the causal VAE's first latent is frame 0 alone
    for j in range(1, 9):  # later latents cover 4 frames each; frame n is audio latent n (both 24 per second)
        assert torch.nonzero(pool[j]).flatten().tolist() == list(range(4 * j - 3, 4 * j + 1))
        assert torch.equal(pool[j, 4 * j - 3 : 4 * j + 1], torch.full((4,), 0.25))  # an even mean of its frames' audio
    assert frame_audio_pooling(3, 5)[2].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]  # frames past the audio take its last latent
    assert torch.nonzero(frame_audio_pooling(3, 5)[2]).flatten().tolist() == [4]  # frames past the audio take its last latent


def _inputs(b: int = 2):
    g = torch.Generator().manual_seed(0)
    video = torch.randn(b, 48, 3, 4, 4, generator=g)
    audio = torch.randn(b, 64, 9, generator=g)
    condition = torch.randn(b, 9, 128, generator=g)
    return VideoInput(video), torch.tensor([700.0, 100.0][:b]), torch.randn(b, 3, 128, generator=g), AudioInput(audio, condition)


def test_a_checkpoint_without_the_aid_goes_on_unchanged_and_the_aid_learns(tmp_path):
    before = load_config("tiny", {"dit": {"audio_to_video": False, "mouth_head": False}})
    model, prompt = new_generator(before, seed=0)
    save_generator(tmp_path / "old", model, prompt)
    old, _, _ = load_generator(tmp_path / "old")
    assert old.dit.audio_to_video is None and old.dit.mouth_head is None
    grown, _, _ = load_generator(tmp_path / "old", config=load_config("tiny"))  # a run switching the aids on
    assert grown.dit.audio_to_video is not None and grown.dit.mouth_head is not None
    video, t, text, audio = _inputs()
    with torch.no_grad():
        a, b = old.dit(video, t, text, audio), grown.dit(video, t, text, audio)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # zero-initialised: the same model

    grown.train()
    dv, _ = grown.dit(video, t, text, audio)
    dv.square().mean().backward()
    assert grown.dit.audio_to_video.weight.grad.abs().sum() > 0  # and it is trained from the first step

    with torch.no_grad():
        grown.dit.audio_to_video.weight.normal_(0, 0.1)
        assert not torch.allclose(grown.dit(video, t, text, audio)[0], b[0])  # once trained, it changes the video


def test_a_checkpoint_with_the_aid_refuses_a_config_without_it(tmp_path):
    model, prompt = new_generator(load_config("tiny"), seed=0)
    save_generator(tmp_path / "new", model, prompt)
    with pytest.raises(StreamcharError, match="dit.audio_to_video"):
        load_generator(tmp_path / "new", config=load_config("tiny", {"dit": {"audio_to_video": False}}))
    with pytest.raises(StreamcharError, match="temporal patch"):
        new_generator(load_config("tiny", {"dit": {"patch_size": (3, 2, 2)}}))


def test_mouth_targets_follow_the_phonemes():
    phonemes = [{"phoneme": "m", "start": 0.30, "end": 0.42}, {"phoneme": "aa", "start": 0.42, "end": 0.70}]
    shapes = latent_mouth_shapes(phonemes, 0.0, 9, 24, 4)
    assert shapes.shape == (9, 3)
    # latent j covers frames 4j-3..4j, at (n + 0.5) / 24 s: the lips close on "m" (latent 2), open wide on "aa" (latent 4)
    assert shapes[4, 0] > 0.6 and shapes[2, 0] < shapes[4, 0] - 0.3
    assert shapes[0, 0] < 0.05 and shapes[8, 0] < 0.05  # rest before and after
    later = latent_mouth_shapes(phonemes, 0.30, 9, 24, 4)  # a chunk starting later sees the same speech sooner
    assert later[0, 0] < later[2, 0] and later[2, 0] > 0.6


def test_windows_carry_mouth_targets_and_the_loss_reaches_the_aids(cache):
    cfg = load_config("tiny")
    src = WindowSource(LatentCache(cache), cfg, CharacterTokenizer(96))
    later = [k for k, (_, c) in enumerate(src.index) if c >= 1][:2]
    windows = [src.window(k) for k in later]
    i, c = src.index[later[0]]
    from streamchar.data.speech import Timed
    from streamchar.data.visemes import mouth_track

    timed = [Timed(str(p["phoneme"]), float(p["start"]), float(p["end"])) for p in src.cache.records[i]["phonemes"]]
    track = torch.from_numpy(mouth_track(timed, c * 1.375 + (np.arange(33) + 0.5) / 24)).float()  # the chunk's 33 frames
    want = torch.stack([track[0]] + [track[4 * j - 3 : 4 * j + 1].mean(0) for j in range(1, 9)])  # latent 0: frame 0; then 4 frames each
    assert torch.allclose(windows[0].mouth.float(), want, atol=1e-6)
    batch = collate(windows)
    assert batch.mouth.shape == (2, 9, 3)
    model, prompt = new_generator(cfg, seed=0)
    without = pretraining_loss(model, prompt, batch, torch.Generator().manual_seed(1))
    out = pretraining_loss(model, prompt, batch, torch.Generator().manual_seed(1), mouth_weight=5.0)
    assert "mouth" not in without and torch.isclose(out["loss"], without["loss"] + 5.0 * out["mouth"])
    out["mouth"].backward()
    assert model.dit.mouth_head.weight.grad.abs().sum() > 0
    assert model.dit.audio_to_video.weight.grad.abs().sum() > 0  # the head asks the video tokens for their frames' audio
    plain = load_config("tiny", {"dit": {"mouth_head": False}})
    assert WindowSource(LatentCache(cache), plain, CharacterTokenizer(96)).window(later[0]).mouth is None


def test_mouth_follows_speech_finds_a_shifted_mouth(tmp_path):
    from streamchar.data.mp4 import write_mp4
    from streamchar.evaluation.synthtalk_checks import mouth_follows_speech

    rng = np.random.default_rng(0)
    n, rate = 72, 24000
    loud = np.repeat(rng.random(n // 4) > 0.5, 4).astype(np.float32)  # speech on and off in 4-frame runs
    audio = (np.sin(np.arange(n * 1000) * 0.2) * np.repeat(0.05 + 0.5 * loud, 1000)).astype(np.float32)
    for lag in (0, 2):
        frames = np.full((n, 64, 64, 3), 200, np.uint8)
        opened = np.roll(loud, lag) > 0  # the mouth opens `lag` frames after the sound
        frames[opened, 24:40, 20:44] = (60, 15, 20)  # the renderer's mouth-interior colour
        write_mp4(tmp_path / f"lag{lag}.mp4", frames, 24, audio, rate)
        corr, found = mouth_follows_speech(tmp_path / f"lag{lag}.mp4")
        assert found == lag
        if lag == 0:
            assert corr > 0.8
    with pytest.raises(StreamcharError, match="cannot read"):
        mouth_follows_speech(tmp_path / "missing.mp4")


def test_mouth_cells_cover_the_boxes_of_each_latents_frames():
    boxes = [[57, 56, 74, 74]] * 5 + [[90, 20, 100, 30]] * 2  # the mouth jumps at frame 5; 7 frames
    cells = latent_mouth_cells(boxes, 0, 3, 4, 16, (8, 8))
    assert cells.shape == (3, 8, 8)
    assert np.argwhere(cells[0]).tolist() == [[3, 3], [3, 4], [4, 3], [4, 4]]  # x 57..74 and y 56..74 touch cells 3 and 4
    assert np.array_equal(cells[1], cells[0])  # frames 1..4
    assert np.argwhere(cells[2]).tolist() == [[1, 5], [1, 6]]  # frames 5..8: the new box, and past the boxes the last one
    assert latent_mouth_cells(boxes, 4, 2, 4, 16, (8, 8))[0].sum() == 4  # a later chunk starts at its own frame
    assert latent_mouth_cells([], 0, 2, 4, 16, (8, 8)).sum() == 0


def test_region_loss_is_the_error_over_the_marked_cells_only():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 4, 3, 8, 8, generator=g)
    cells = torch.zeros(2, 1, 3, 8, 8)
    cells[:, :, :, 3:5, 3:5] = 1
    pred = target + 10 * (1 - cells)  # wrong everywhere but the mouth
    assert region_loss(pred, target, cells) == 0
    pred = target + cells  # off by one on the mouth alone
    assert torch.isclose(region_loss(pred, target, cells), torch.tensor(1.0))


def test_windows_mark_the_mouth_and_the_loss_weighs_it(cache, tmp_path):
    import json
    import shutil

    cfg = load_config("tiny")
    src = WindowSource(LatentCache(cache), cfg, CharacterTokenizer(96), mouth_cells=True)
    later = [k for k, (_, c) in enumerate(src.index) if c >= 1][:2]
    windows = [src.window(k) for k in later]
    i, c = src.index[later[0]]
    boxes = src.cache.records[i]["mouth_boxes"]
    x0, y0, x1, y1 = boxes[33 * c]  # the chunk's first frame, the first latent's only one
    marked = np.argwhere(windows[0].mouth_cells[0].numpy())
    assert {(y, x) for y, x in marked} == {(y, x) for y in range(y0 // 16, -(-y1 // 16)) for x in range(x0 // 16, -(-x1 // 16))}
    batch = collate(windows)
    assert batch.mouth_cells.shape == (2, 1, 9, 8, 8)
    model, prompt = new_generator(cfg, seed=0)
    without = pretraining_loss(model, prompt, batch, torch.Generator().manual_seed(1))
    out = pretraining_loss(model, prompt, batch, torch.Generator().manual_seed(1), mouth_region_weight=0.5)
    assert "mouth_region" not in without and not torch.isclose(out["mouth_region"], out["video"])
    everywhere = pretraining_loss(model, prompt, replace(batch, mouth_cells=torch.ones_like(batch.mouth_cells)), torch.Generator().manual_seed(1),
                                  mouth_region_weight=0.5)
    assert torch.isclose(everywhere["mouth_region"], everywhere["video"])  # over every cell the region's loss is the video loss
    assert WindowSource(LatentCache(cache), cfg, CharacterTokenizer(96)).window(later[0]).mouth_cells is None

    old = tmp_path / "old-cache"  # a cache encoded before the records kept the boxes
    shutil.copytree(cache, old)
    manifest = json.loads((old / "latents.json").read_text())
    for rec in manifest["clips"]:
        rec.pop("mouth_boxes")
    (old / "latents.json").write_text(json.dumps(manifest))
    with pytest.raises(StreamcharError, match="mouth boxes.*streamchar data encode"):
        WindowSource(LatentCache(old), cfg, CharacterTokenizer(96), mouth_cells=True)
