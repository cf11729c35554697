"""A trained model's record beside its weights: the training log, its curves and the commands
that made it, and the records of the model it was trained from, so that a shipped folder tells
how it was made from the start. Generator, evaluation-network and codec training all write it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from streamchar.utils.files import atomic_write_text

RECORD_FILES = ("train_log.jsonl", "commands.txt", "training_curves.png")


def export_training_record(run: Path, out: Path, title: str) -> None:
    """The training log and its curves go next to the weights."""
    from streamchar.utils.plots import plot_training_log

    log = run / "train_log.jsonl"
    atomic_write_text(out / "train_log.jsonl", log.read_text())
    if (run / "commands.txt").exists():
        atomic_write_text(out / "commands.txt", (run / "commands.txt").read_text())
    plot_training_log(log, out / "training_curves.png", title)


def _stage_prefix(init: Path) -> str:
    """`init`'s stage (from its config, `init` if it names none), numbered when records of that
    stage were carried already: `joint`, then `joint2`, ..."""
    meta = json.loads((init / "config.json").read_text()) if (init / "config.json").is_file() else {}
    stage = str(meta.get("stage", "init"))
    carried = {p.name.split("-", 1)[0] for p in init.glob("*-train_log.jsonl")}
    prefix, n = stage, 1
    while prefix in carried:
        n += 1
        prefix = f"{stage}{n}"
    return prefix


def carry_training_record(init: Path, out: Path) -> None:
    """A model trained from another keeps that one's record too, prefixed with its stage
    (`orchestrator-train_log.jsonl`, ...; a second run of a stage already carried is `joint2-`),
    and the records that one carried from its own start."""
    prefix = _stage_prefix(init)
    for name in RECORD_FILES:
        for src in sorted(init.glob(f"*{name}")):
            target = f"{prefix}-{name}" if src.name == name else src.name
            tmp = out / f".{target}.tmp"
            tmp.write_bytes(src.read_bytes())
            os.replace(tmp, out / target)
