"""Pretraining: windows from the latent cache, exact resume, damaged checkpoints, bad input."""

import json

import numpy as np
import pytest
import torch
import two_ranks
import yaml
from safetensors.torch import load_file

from streamchar.codecs.tiny import TinyVideoCodec, TinyVideoConfig
from streamchar.config import load_config
from streamchar.data.latents import LatentCache
from streamchar.data.mp4 import read_mp4
from streamchar.errors import StreamcharError
from streamchar.model.streamchar_model import build_model
from streamchar.model.tokenizer import CharacterTokenizer
from streamchar.training.generator import check_memory
from streamchar.training.settings import TrainSettings, load_train_config
from streamchar.training.stages import generator_loop
from streamchar.training.windows import WindowSource, word_end_times

pytestmark = pytest.mark.slow  # training loops and several processes: the slow tier


def test_windows_follow_the_stream_layout(cache):
    cfg = load_config("tiny")
    src = WindowSource(LatentCache(cache), cfg, CharacterTokenizer(96))
    later = next(k for k, (_, c) in enumerate(src.index) if c >= 1)
    w = src.window(later)
    i, c = src.index[later]
    t = LatentCache(cache).tensors(i)
    assert torch.equal(w.motion, t["video"][:, (c - 1) * 9 : c * 9]) and torch.equal(w.sink, t["video"][:, :9])
    assert torch.equal(w.video, t["video"][:, c * 9 : (c + 1) * 9]) and w.audio.shape[1] == 33
    assert w.history.shape[1] == min(c, cfg.stream.history_chunks) * 33
    rec = LatentCache(cache).records[i]
    ends = word_end_times(rec)
    assert w.spoken == sum(e <= (c + 1) * 1.375 + 1e-6 for e in ends)  # no cut inside the first 10 chunks
    whole = [src.window(k) for k, (j, _) in enumerate(src.index) if j == i]
    spoken = [x.spoken for x in whole]
    assert spoken == sorted(spoken) and spoken[0] < spoken[-1] <= len(ends)  # speech goes on and never back
    first = src.window(next(k for k, (_, c) in enumerate(src.index) if c == 0))
    assert first.motion is None and first.sink is None and first.history.shape[1] == 0


def _config(tmp_path, cache, **train):
    path = tmp_path / "train.yaml"
    body = {"cache": str(cache), "steps": 4, "batch": 2, "lr": 1e-3, "warmup": 1, "save_every": 2, "log_every": 1, "seed": 3, **train}
    path.write_text(yaml.safe_dump({"preset": "tiny", "train": body}))
    return path


@pytest.mark.parametrize("stage", ["joint", "orchestrator"])
def test_resume_repeats_the_uninterrupted_run(cache, tmp_path, stage):
    cfg, s = load_train_config(_config(tmp_path, cache))
    torch.set_num_threads(2)
    straight = generator_loop(stage, cfg, s, tmp_path / "a")
    straight.train()
    broken = generator_loop(stage, cfg, s, tmp_path / "b")
    broken.train(stop_after=2)
    resumed = generator_loop(stage, cfg, s, tmp_path / "b")
    assert resumed.resume() == 2
    resumed.train()
    log_a = [json.loads(line) for line in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    log_b = [json.loads(line) for line in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log_b] == [1, 2, 3, 4]
    for ra, rb in zip(log_a, log_b):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-5, abs=1e-6), (ra, rb)
    a = load_file(tmp_path / "a" / "checkpoints" / "step-0000004" / "model.safetensors")
    b = load_file(tmp_path / "b" / "checkpoints" / "step-0000004" / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert set(p.name for p in (tmp_path / "a" / "checkpoints").iterdir()) == {"step-0000002", "step-0000004"}


def test_speech_only_stage_trains_the_audio_path(cache, tmp_path):
    cfg, s = load_train_config(_config(tmp_path, cache, steps=1, ema_decay=0))
    t = generator_loop("orchestrator", cfg, s, tmp_path / "o")
    out = t.objective.losses(0, 0)
    assert "video" not in out and out["audio"] > 0 and out["pointer"] >= 0
    out["loss"].backward()
    assert t.objective.model.dit.patch_embedding.weight.grad is None and t.objective.model.dit.blocks[0].ffn_audio.net[0].proj.weight.grad is not None


def test_validation_renders_a_stream_through_the_engine(cache, tmp_path, monkeypatch):
    small = TinyVideoCodec(TinyVideoConfig(encoder_channels=(8, 8, 8, 8), decoder_channels=(8, 8, 8, 8))).eval()
    monkeypatch.setattr("streamchar.streaming.pipeline.load_video_codec", lambda cfg, path: small)
    cfg, s = load_train_config(_config(tmp_path, cache, steps=1))
    out = generator_loop("joint", cfg, s, tmp_path / "v").validate()
    video = read_mp4(out)
    frames = len(video.frames)  # whole chunks, the last one cut where the word pace ends the stream
    assert out.parent == tmp_path / "v" / "validation" and frames > 33
    assert abs(len(video.audio) / video.sample_rate - frames / 24) < 0.1  # AAC pads to its 1024-sample frames


def test_a_damaged_checkpoint_is_named_with_the_previous_one(cache, tmp_path):
    cfg, s = load_train_config(_config(tmp_path, cache))
    generator_loop("joint", cfg, s, tmp_path / "r").train()
    newest = tmp_path / "r" / "checkpoints" / "step-0000004" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:1000])
    with pytest.raises(StreamcharError, match=r"step-0000004 is damaged.*previous one is .*step-0000002"):
        generator_loop("joint", cfg, s, tmp_path / "r").resume()


def test_bad_input_is_refused_before_training(cache, tmp_path):
    cfg = load_config("tiny")
    meta = json.loads((cache / "latents.json").read_text())
    empty = tmp_path / "empty"
    empty.mkdir()
    for r in meta["clips"]:
        r["frames"] = 20  # shorter than one chunk
    (empty / "latents.json").write_text(json.dumps(meta))
    with pytest.raises(StreamcharError, match="shorter than one chunk"):
        WindowSource(LatentCache(empty), cfg, CharacterTokenizer(96))
    with pytest.raises(StreamcharError, match="not a latent cache"):
        LatentCache(tmp_path / "nothing")
    paper = build_model(load_config("paper"), "meta")
    with pytest.raises(StreamcharError, match=r"needs about \d+\.\d GiB per process"):
        check_memory(paper, TrainSettings(cache="x", steps=1), torch.device("cpu"), 1)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"train": {"cache": "x", "steps": 0}}))
    with pytest.raises(StreamcharError, match="train.steps"):
        load_train_config(bad)
    tiny, cpu = build_model(cfg), torch.device("cpu")
    one, eight = (check_memory(tiny, TrainSettings(cache="x", steps=1, batch=b), cpu, 1) for b in (1, 8))
    shared = check_memory(tiny, TrainSettings(cache="x", steps=1, batch=8), cpu, 2)
    assert one["estimated_gib"] * 2**30 >= 16 * one["parameters"] > 0  # fp32 weights, gradients and both Adam moments at least
    assert one["estimated_gib"] < eight["estimated_gib"]  # activations grow with the batch
    assert eight["estimated_gib"] / 2 < shared["estimated_gib"] < eight["estimated_gib"]  # two processes share the state, not the activations


def _fsdp_worker(rank, world, port, cache, run):
    two_ranks.join(rank, world, port)
    cfg = load_config("tiny")
    s = TrainSettings(cache=str(cache), steps=2, batch=1, lr=1e-3, warmup=1, save_every=1, log_every=1, seed=3)
    t = generator_loop("joint", cfg, s, run)
    t.train(stop_after=1)
    t2 = generator_loop("joint", cfg, s, run)
    assert t2.resume() == 1
    t2.train()
    two_ranks.leave()


def test_two_process_fsdp_training_saves_and_resumes(cache, tmp_path, monkeypatch):
    two_ranks.spawn_two(monkeypatch, _fsdp_worker, str(cache), out=str(tmp_path / "fsdp"))
    log = [json.loads(line) for line in (tmp_path / "fsdp" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(np.isfinite(r["loss"]) for r in log)
    saved = load_file(tmp_path / "fsdp" / "checkpoints" / "step-0000002" / "model.safetensors")
    assert saved["dit.blocks.0.attn1.to_q.weight"].shape == (128, 128)  # whole tensors, gathered from the shards


def test_cli_stages_chain_and_keep_both_training_records(cache, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from streamchar.cli.main import app
    from streamchar.model.checkpoint import load_generator

    config = _config(tmp_path, cache, steps=2, save_every=2)
    runner = CliRunner()
    first = runner.invoke(app, ["train", "orchestrator", "--config", str(config), "--run", str(tmp_path / "s1"), "--out", str(tmp_path / "m1")])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["train", "joint", "--config", str(config), "--run", str(tmp_path / "s2"), "--init", str(tmp_path / "m1"),
                                 "--out", str(tmp_path / "m2")])  # fmt: skip
    assert second.exit_code == 0, second.output
    names = {p.name for p in (tmp_path / "m2").iterdir()}
    assert {"model.safetensors", "train_log.jsonl", "training_curves.png",
            "orchestrator-train_log.jsonl", "orchestrator-training_curves.png"} <= names
    assert load_generator(tmp_path / "m2")[2]["stage"] == "joint"
    again = runner.invoke(app, ["train", "joint", "--config", str(config), "--run", str(tmp_path / "s2")])
    assert again.exit_code != 0 and "--resume" in str(again.exception)
    # a shipped model named by --init carries its record too
    monkeypatch.setattr("streamchar.model.checkpoint.SHIPPED_GENERATORS", ("shipped-name",))
    monkeypatch.setattr("streamchar.model.checkpoint.shipped_dir", lambda kind, name: tmp_path / "m1")
    third = runner.invoke(app, ["train", "joint", "--config", str(config), "--run", str(tmp_path / "s3"), "--init", "shipped-name",
                                "--out", str(tmp_path / "m3")])  # fmt: skip
    assert third.exit_code == 0, third.output
    assert (tmp_path / "m3" / "orchestrator-train_log.jsonl").is_file()


def test_a_model_keeps_the_records_of_the_stages_before_it(tmp_path):
    from streamchar.training.records import carry_training_record

    init, out = tmp_path / "init", tmp_path / "out"
    init.mkdir()
    out.mkdir()
    (init / "config.json").write_text(json.dumps({"stage": "joint"}))
    (init / "train_log.jsonl").write_text('{"step": 2}\n')
    (init / "orchestrator-train_log.jsonl").write_text('{"step": 1}\n')  # carried into init from its own start
    (init / "orchestrator-commands.txt").write_text("stage 1\n")
    carry_training_record(init, out)
    assert sorted(p.name for p in out.iterdir()) == ["joint-train_log.jsonl", "orchestrator-commands.txt", "orchestrator-train_log.jsonl"]
    assert (out / "joint-train_log.jsonl").read_text() == '{"step": 2}\n'
    (out / "config.json").write_text(json.dumps({"stage": "joint"}))
    (out / "train_log.jsonl").write_text('{"step": 3}\n')  # a second joint run from the first
    again = tmp_path / "again"
    again.mkdir()
    carry_training_record(out, again)
    assert (again / "joint-train_log.jsonl").read_text() == '{"step": 2}\n' and (again / "joint2-train_log.jsonl").read_text() == '{"step": 3}\n'


def test_varied_history_starts_mid_clip_and_cuts_the_text_there(cache):
    cfg = load_config("tiny")
    plain = WindowSource(LatentCache(cache), cfg, CharacterTokenizer(96))
    varied = WindowSource(LatentCache(cache), cfg, CharacterTokenizer(96), vary_history=True)
    later = [k for k, (_, c) in enumerate(plain.index) if c >= 1]
    shorter = 0
    for k in later:
        c = plain.index[k][1]
        w, full = varied.window(k), plain.window(k)
        n = w.history.shape[1] // 33
        assert 1 <= n <= min(c, cfg.stream.history_chunks) and torch.equal(w.history, full.history[:, full.history.shape[1] - n * 33 :])
        assert torch.equal(w.audio, full.audio) and w.text_positions.shape == (n * 33 + 33,)
        assert torch.equal(varied.window(k).history, w.history)  # drawn once per window: resumable
        cut = full.words - w.words if full.words < 48 else None
        if n < min(c, cfg.stream.history_chunks):
            shorter += 1
            ends = np.array(word_end_times(LatentCache(cache).records[plain.index[k][0]]))
            assert cut is None or cut == int(np.sum(ends <= (c - n) * 1.375 + 1e-6))  # words finished before the history are cut
            assert w.spoken == full.spoken - (cut or 0)
    assert shorter > 0
    assert all(varied.window(k).history.shape[1] == 0 for k, (_, c) in enumerate(plain.index) if c == 0)


def test_a_config_overrides_its_base_key_by_key(tmp_path):
    base = {"preset": "tiny", "train": {"cache": "c", "steps": 5, "lr": 1e-3, "distill": {"sink": True, "score_chunks": 3}}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "abl").mkdir()
    (tmp_path / "abl" / "one.yaml").write_text(yaml.safe_dump({"base": "../base.yaml", "train": {"distill": {"score_chunks": 1}}}))
    cfg, s = load_train_config(tmp_path / "abl" / "one.yaml")
    assert cfg.preset == "tiny" and s.lr == 1e-3 and s.cache == "c"
    assert s.distill.score_chunks == 1 and s.distill.sink is True  # nested sections merge, not replace
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump({"base": "loop.yaml", "train": {}}))
    with pytest.raises(StreamcharError, match="bases loop"):
        load_train_config(tmp_path / "loop.yaml")
    (tmp_path / "lost.yaml").write_text(yaml.safe_dump({"base": "nowhere.yaml", "train": {}}))
    with pytest.raises(StreamcharError, match="the base .*nowhere.yaml named by"):
        load_train_config(tmp_path / "lost.yaml")
