"""Each training stage's recorded command, rerun for its first steps from the same init and seed on
the test set, gives the losses recorded in `tests/data/loss-baseline.json`, made by the training
code before it became one loop; the sync and identity networks' were made again after it, since
their learning rate is now the library's warm-up and cosine instead of a warm-up times a cosine
over the whole run. `STREAMCHAR_RECORD_LOSSES=1` writes that file instead.

The shipped models' commands are followed in everything but the data, the batch (smaller here, so
that the check stays minutes long) and the threads (one, so sums are taken in one order)."""

import json
import os
from pathlib import Path

import pytest
import torch

from streamchar.config import load_config
from streamchar.model.checkpoint import new_generator, save_generator

pytestmark = pytest.mark.slow  # training loops: the slow tier

BASELINE = Path(__file__).parent / "data" / "loss-baseline.json"
CONFIGS = Path(__file__).parent.parent / "configs"
STEPS = {"rollout": 20}  # each rollout step streams five chunks; the others run 50
RECORD = os.environ.get("STREAMCHAR_RECORD_LOSSES") == "1"


class _Stop(Exception):
    pass


def _recording(n, losses):
    """A progress callback that keeps each step's loss and stops the run after `n` steps."""

    def on_step(step, total, row):
        losses.append(row["loss"])
        if step >= n:
            raise _Stop

    return on_step


def _log(run):
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def _generator_stage(stage, config, run, cache, steps, init=None, **train):
    from streamchar.training.settings import load_train_config
    from streamchar.training.stages import generator_loop

    overrides = {"cache": str(cache), "log_every": 1, "save_every": 10_000, "validate_every": 0, "threads": 1, "init": init, **train}
    cfg, s = load_train_config(CONFIGS / config, overrides)
    generator_loop(stage, cfg, s, run).train(stop_after=steps)
    return _log(run)


def _random_generator(path):
    model, prompt = new_generator(load_config("tiny"), seed=0)
    save_generator(path, model, prompt, {"stage": "joint"})
    return str(path)


def _run(stage, cache, small_set, tmp_path, steps):
    run = tmp_path / "run"
    torch.set_num_threads(1)
    if stage in ("orchestrator", "joint"):
        return _generator_stage(stage, "tiny-teacher.yaml", run, cache, steps, batch=2)
    if stage in ("dmd", "rollout"):
        teacher = _random_generator(tmp_path / "teacher")
        return _generator_stage(stage, "tiny-student.yaml", run, cache, steps, init=teacher, batch=1, distill={"teacher": teacher})
    if stage == "durations":
        return _generator_stage(stage, "tiny-durations.yaml", run, cache, steps, init=_random_generator(tmp_path / "init"), batch=4)
    root, cfg = small_set
    losses = []
    try:
        if stage.startswith("codec"):
            from streamchar.training.codec_training import CodecSettings, train_codec

            kind = stage.split("-")[1]
            s = CodecSettings(steps=6000, batch=2, lr=1e-3, log_every=1, save_every=10_000, threads=1, max_clips=6)
            train_codec(kind, root, run, tmp_path / "out", cfg, s, on_step=_recording(steps, losses))
        else:
            from streamchar.evaluation.train_nets import train_identity, train_sync

            train = train_sync if stage == "sync" else train_identity
            train(root, run, tmp_path / "out", steps=1500, batch=4, on_step=_recording(steps, losses))
    except _Stop:
        pass
    return [{"loss": v} for v in losses]


STAGES = ["orchestrator", "joint", "dmd", "rollout", "durations", "codec-audio", "codec-video", "sync", "identity"]


@pytest.mark.parametrize("stage", STAGES)
def test_the_first_steps_of_each_stage_give_the_recorded_losses(stage, cache, small_set, tmp_path):
    steps = STEPS.get(stage, 50)
    log = _run(stage, cache, small_set, tmp_path, steps)
    losses = [row["loss"] for row in log][:steps]
    assert len(losses) == steps
    if RECORD:
        recorded = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
        recorded[stage] = losses
        BASELINE.write_text(json.dumps(recorded, indent=1) + "\n")
        return
    expected = json.loads(BASELINE.read_text())[stage]
    worst = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(losses, expected))
    print(f"{stage}: {steps} steps, largest relative difference from the recorded losses {worst:.1e}")  # shown with -s
    assert losses == pytest.approx(expected, rel=1e-4, abs=1e-6)
