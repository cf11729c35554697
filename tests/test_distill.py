"""Distillation: the DMD gradient, Stage I on cached chunks, Stage II rollouts, resume, ablation switches."""

import json
import math

import pytest
import torch
import two_ranks
import yaml

from streamchar.config import load_config
from streamchar.diffusion.dmd import clean_estimate, dmd_loss
from streamchar.errors import StreamcharError
from streamchar.model.checkpoint import load_generator, new_generator, save_generator
from streamchar.training.distill import DistillObjective
from streamchar.training.loop import Runtime
from streamchar.training.settings import load_train_config
from streamchar.training.stages import generator_loop

pytestmark = pytest.mark.slow  # training loops and several processes: the slow tier


def test_dmd_gradient_is_the_normalised_score_difference():
    torch.manual_seed(0)
    sample = torch.randn(2, 3, 4, requires_grad=True)
    real, fake = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    loss, _ = dmd_loss(sample, real, fake)
    loss.backward()
    w = (sample.detach() - real).abs().mean(dim=(1, 2), keepdim=True)
    assert torch.allclose(sample.grad, (fake - real) / w / sample.numel(), atol=1e-7)
    same, _ = dmd_loss(sample, real, real)  # the fake score agrees with the real one: nothing to move
    assert same.item() == 0.0
    x_t, v, t = torch.randn(2, 5), torch.randn(2, 5), torch.tensor([0.25, 0.5])
    z = clean_estimate(x_t, v, t)
    assert torch.allclose((1 - t[:, None]) * z + t[:, None] * (v + z), x_t, atol=1e-6)  # x_t = (1 - t) z + t eps, eps = v + z


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    torch.manual_seed(0)
    model, prompt = new_generator(load_config("tiny"), seed=0)
    d = tmp_path_factory.mktemp("teacher") / "t"
    save_generator(d, model, prompt, {"stage": "joint"})
    return d


def _config(tmp_path, cache, teacher, **distill):
    path = tmp_path / "distill.yaml"
    body = {"cache": str(cache), "steps": 2, "batch": 2, "lr": 1e-3, "warmup": 1, "save_every": 1, "log_every": 1, "seed": 3,
            "init": str(teacher), "ema_decay": 0, "distill": {"fake_lr": 1e-3, "guidance": 2.0, "rollout_chunks": 3, "score_chunks": 2, **distill}}
    path.write_text(yaml.safe_dump({"preset": "tiny", "train": body}))
    return path


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("stage", ["dmd", "rollout"])
def test_a_step_moves_student_and_fake_score_but_not_the_teacher(cache, teacher, tmp_path, stage):
    torch.set_num_threads(2)
    cfg, s = load_train_config(_config(tmp_path, cache, teacher))
    t = generator_loop(stage, cfg, s, tmp_path / "run")
    o = t.objective
    before = {"student": _params(o.model), "fake": _params(o.fake), "teacher": _params(o.teacher)}
    parts = o.train_step(0, t)
    assert all(torch.isfinite(torch.tensor(v)) for v in parts.values()) and parts["dmd_video"] > 0 and parts["fake_flow"] > 0
    assert ("pointer" in parts) == (stage == "dmd")
    moved = {k: max((p.detach() - before[k][n]).abs().max().item() for n, p in m.named_parameters())
             for k, m in (("student", o.model), ("fake", o.fake), ("teacher", o.teacher))}  # fmt: skip
    assert moved["student"] > 0 and moved["fake"] > 0 and moved["teacher"] == 0


def test_text_guidance_asks_the_teacher_again_without_the_orchestrators_condition(cache, teacher, tmp_path, monkeypatch):
    cfg, s = load_train_config(_config(tmp_path, cache, teacher, text_guidance=2.0))
    t = generator_loop("dmd", cfg, s, tmp_path / "run")
    o = t.objective
    keeps = []
    original = o.teacher.forward

    def watched(*args, **kwargs):
        keeps.append(kwargs.get("condition_keep"))
        return original(*args, **kwargs)

    monkeypatch.setattr(o.teacher, "forward", watched)
    parts = o.train_step(0, t)
    assert all(torch.isfinite(torch.tensor(v)) for v in parts.values())
    assert len(keeps) == 3 and keeps[0] is None and keeps[1] is None  # conditional, then prompt-free (guidance 2.0)
    assert keeps[2] is not None and torch.count_nonzero(keeps[2]) == 0  # then condition-free


def test_rollout_scores_the_last_chunks_from_the_first_scored_chunks_context(cache, teacher, tmp_path):
    cfg, s = load_train_config(_config(tmp_path, cache, teacher))
    t = generator_loop("rollout", cfg, s, tmp_path / "run")
    sample = t.objective._rollout_sample(0, 0)
    assert sample.video.shape[2] == 2 * 9 and sample.audio.shape[2] == 2 * 33 and sample.video.requires_grad
    c = sample.context
    assert c.history.shape[2] == 33 and c.conditions.motion is not None and c.conditions.sink is not None  # one chunk before the span
    cfg, s = load_train_config(_config(tmp_path, cache, teacher, sink=False, score_chunks=1))
    ablation = generator_loop("rollout", cfg, s, tmp_path / "ab").objective._rollout_sample(0, 0)
    assert ablation.video.shape[2] == 9 and ablation.context.conditions.sink is None and ablation.context.history.shape[2] == 66


def test_rollout_cuts_the_scored_transcript_where_the_pointer_says_the_speech_is(cache, teacher, tmp_path, monkeypatch):
    """Figs. 2-3: the scored span's transcript ends at the pointer's ŝ, which moves on chunk by chunk."""
    cfg, s = load_train_config(_config(tmp_path, cache, teacher, rollout_chunks=4, score_chunks=2))
    objective = generator_loop("rollout", cfg, s, tmp_path / "run").objective
    calls = []

    def scripted(condition, text_hidden, word_numbers, text_mask, word_counts, clamp=True):  # half a word more at every call
        calls.append(1)
        return torch.minimum(torch.full_like(word_counts, 0.5 * len(calls)), word_counts)

    monkeypatch.setattr(objective.model.orchestrator.pointer, "forward", scripted)
    sample = objective._rollout_sample(0, 0)
    ends, c = sample.pointer_ends, sample.context
    assert len(ends) == 4 and all(b > a for a, b in zip(ends, ends[1:]))  # the cut moves over the rollout
    assert c.cut == 0  # 4 chunks fit the tiny history window: nothing is cut at the start
    words = int(c.word_counts.item())
    assert words == math.ceil(ends[-1])
    assert int(c.word_numbers.max().item()) == words  # the text ends with the last word spoken, the lookahead gone
    assert c.text_positions is None or float(c.text_positions.max()) <= c.text_ids.shape[1] - 1
    calls.clear()
    cfg, s = load_train_config(_config(tmp_path, cache, teacher, rollout_chunks=4, score_chunks=2, truncate_at_pointer=False))
    plain = generator_loop("rollout", cfg, s, tmp_path / "plain").objective
    monkeypatch.setattr(plain.model.orchestrator.pointer, "forward", scripted)
    assert int(plain._rollout_sample(0, 0).context.word_counts.item()) > words  # the lookahead window: words not yet spoken


def test_distillation_resumes_exactly_and_exports_a_four_step_student(cache, teacher, tmp_path):
    cfg, s = load_train_config(_config(tmp_path, cache, teacher))
    straight = generator_loop("dmd", cfg, s, tmp_path / "a")
    straight.train()
    broken = generator_loop("dmd", cfg, s, tmp_path / "b")
    broken.train(stop_after=1)
    resumed = generator_loop("dmd", cfg, s, tmp_path / "b")
    assert resumed.resume() == 1
    resumed.train()
    log_a = [json.loads(x) for x in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    for ra, rb in zip(log_a, log_b):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-5) and ra["fake_flow"] == pytest.approx(rb["fake_flow"], rel=1e-5)
    assert (tmp_path / "b" / "checkpoints" / "step-0000002" / "fake.safetensors").is_file()
    resumed.export(tmp_path / "student")
    meta = load_generator(tmp_path / "student")[2]
    assert meta["stage"] == "dmd" and meta["sampling_steps"] == 4
    from streamchar.streaming.pipeline import default_steps

    assert default_steps({"stage": "dmd"}) == 4 and default_steps({"stage": "joint"}) == 50  # checkpoints that name no sampler


def test_distillation_refuses_bad_settings(cache, teacher, tmp_path):
    cfg, s = load_train_config(_config(tmp_path, cache, teacher))
    with pytest.raises(StreamcharError, match="--init"):
        generator_loop("dmd", cfg, s.model_copy(update={"init": None}), tmp_path / "x")
    with pytest.raises(StreamcharError, match="score_chunks"):
        load_train_config(_config(tmp_path, cache, teacher, score_chunks=4))
    with pytest.raises(StreamcharError, match="unknown stage"):
        DistillObjective("joint", cfg, s, Runtime.create())


def _fsdp_worker(rank, world, port, stage, config, run):
    two_ranks.join(rank, world, port)
    cfg, s = load_train_config(config)
    t = generator_loop(stage, cfg, s, run)
    t.train(stop_after=1)
    two_ranks.leave()


@pytest.mark.parametrize("stage", ["dmd", "rollout"])
def test_two_process_fsdp_distillation_trains_and_saves(cache, teacher, tmp_path, stage, monkeypatch):
    """Sharded student and fake score; Stage II streams through the engine's chunk loop, and
    every rank runs the same number of sampler steps."""
    from safetensors.torch import load_file

    two_ranks.spawn_two(monkeypatch, _fsdp_worker, stage, str(_config(tmp_path, cache, teacher)), out=str(tmp_path / "run"))
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1] and all(torch.isfinite(torch.tensor(r["dmd_video"])) for r in log)
    step = tmp_path / "run" / "checkpoints" / "step-0000001"
    student, start = load_file(step / "model.safetensors"), load_file(teacher / "model.safetensors")
    assert any(not torch.equal(v, start[f"model.{k}"]) for k, v in student.items() if f"model.{k}" in start)  # the student moved
    assert (step / "fake.safetensors").is_file()
