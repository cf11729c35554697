"""`streamchar train orchestrator|joint`: the pretraining stages."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from streamchar.cli.common import console, invoked_command, step_progress
from streamchar.errors import StreamcharError

train_app = typer.Typer(help="Training: pretraining (orchestrator, joint), distillation (dmd, rollout) and the word-duration head (durations).",
                        no_args_is_help=True)


def _train(stage: str, config: Path, run: Path, out: Optional[Path], resume: bool, steps: Optional[int], init: Optional[str],
           data: Optional[Path]) -> None:
    import torch.distributed as dist

    from streamchar.training.records import carry_training_record, export_training_record
    from streamchar.training.settings import load_train_config
    from streamchar.training.stages import generator_loop

    if data is not None:
        from streamchar.data.latents import LatentCache

        LatentCache(data)  # refused here, before a model is built, if it is not a latent cache
    overrides = {k: v for k, v in {"steps": steps, "init": init, "cache": None if data is None else str(data)}.items() if v is not None}
    cfg, settings = load_train_config(config, overrides)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        import torch

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    found = sorted((run / "checkpoints").glob("step-*"))
    if found and not resume:
        raise StreamcharError(f"{run} already holds checkpoints (newest {found[-1].name}); pass --resume to continue, or choose another --run")
    loop = generator_loop(stage, cfg, settings, run, command=invoked_command())
    if resume:
        start = loop.resume()
        console.print(f"resumed at step {start}" if start else "no checkpoint to resume; starting at step 0")
    with step_progress(f"{stage} stage", settings.steps) as on_step:
        last = loop.train(on_step=on_step)
    if out is not None:
        loop.export(out)
        if loop.rt.rank == 0:
            export_training_record(run, out, f"{stage} stage")
            if init is not None:
                from streamchar.model.checkpoint import resolve_generator_path

                start = resolve_generator_path(init)  # a shipped model by name too
                if start.is_dir():
                    carry_training_record(start, out)
    console.print(json.dumps({"stage": stage, "last": last, "out": str(out) if out else None}))


ConfigArg = typer.Option(..., "--config", help="YAML with preset:, model: (overrides) and train: sections")
RunArg = typer.Option(..., "--run", help="folder for checkpoints, TensorBoard, the log and validation streams")
OutArg = typer.Option(None, "--out", help="write the trained generator (EMA weights) here at the end")
ResumeArg = typer.Option(False, "--resume", help="continue from the newest checkpoint in --run")
StepsArg = typer.Option(None, "--steps", help="override train.steps")
InitArg = typer.Option(None, "--init", help="override train.init: start from this generator checkpoint")
DataArg = typer.Option(None, "--data", help="override train.cache: the latent cache to train on (`streamchar data encode`)")


STAGE_HELP = {
    "orchestrator": "Stage 1: speech only (the DiT's audio path without video tokens), orchestrator and pointer.",
    "joint": "Stage 2: orchestrator and DiT together on audio-video windows.",
    "dmd": "Distillation Stage I: DMD from the teacher (--init) to a few-step student on single chunks.",
    "rollout": "Distillation Stage II: online multi-chunk rollouts of the student (--init) with sink and pointer truncation.",
    "durations": "The orchestrator's word-duration head on the data's word timings, every other weight of --init frozen.",
}


def _stage_command(stage: str):  # noqa: ANN202 - a typer command
    def command(config: Path = ConfigArg, run: Path = RunArg, out: Optional[Path] = OutArg, resume: bool = ResumeArg,
                steps: Optional[int] = StepsArg, init: Optional[str] = InitArg, data: Optional[Path] = DataArg) -> None:
        _train(stage, config, run, out, resume, steps, init, data)

    command.__doc__ = STAGE_HELP[stage]
    return command


for _stage in STAGE_HELP:
    train_app.command(_stage)(_stage_command(_stage))
