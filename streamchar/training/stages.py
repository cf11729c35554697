"""The generator's training stages by name, each an objective of the one loop."""

from __future__ import annotations

from pathlib import Path

from streamchar.config import Config
from streamchar.errors import StreamcharError
from streamchar.training.distill import DistillObjective
from streamchar.training.durations import DurationObjective
from streamchar.training.generator import GeneratorObjective, loop_settings
from streamchar.training.loop import Runtime, TrainLoop
from streamchar.training.pretrain import PretrainObjective
from streamchar.training.settings import TrainSettings

OBJECTIVES: dict[str, type[GeneratorObjective]] = {"orchestrator": PretrainObjective, "joint": PretrainObjective, "dmd": DistillObjective,
                                                   "rollout": DistillObjective, "durations": DurationObjective}  # fmt: skip
STAGES = tuple(OBJECTIVES)


def generator_loop(stage: str, cfg: Config, s: TrainSettings, run: Path, command: str = "") -> TrainLoop:
    """The loop that trains `stage` into the folder `run` (not yet started or resumed)."""
    if stage not in OBJECTIVES:
        raise StreamcharError(f"unknown stage {stage!r}; accepted: {', '.join(STAGES)}")
    rt = Runtime.create(s.precision, s.threads)
    settings = loop_settings(s, rt.world)  # refuses a global batch that does not split, before the model is built
    return TrainLoop(OBJECTIVES[stage](stage, cfg, s, rt), settings, run, rt, command)
