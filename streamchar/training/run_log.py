"""A training run's log: one JSON line per logged step in `<run>/train_log.jsonl` (what the
plots and model cards read) and the same numbers in TensorBoard under `<run>/tensorboard`; the
command that ran is appended to `<run>/commands.txt`. Only the first process writes."""

from __future__ import annotations

import json
from pathlib import Path


class RunLog:
    def __init__(self, run: Path, tag: str, command: str = "", enabled: bool = True):
        self.run, self.tag, self.enabled, self.writer = Path(run), tag, enabled, None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.run.mkdir(parents=True, exist_ok=True)
        if command:
            with open(self.run / "commands.txt", "a") as f:
                f.write(command + "\n")
        self.writer = SummaryWriter(str(self.run / "tensorboard"))

    def write(self, row: dict) -> None:
        """`row` holds the step and its numbers."""
        if not self.enabled:
            return
        with open(self.run / "train_log.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        for k, v in row.items():
            if k != "step" and self.writer is not None:
                self.writer.add_scalar(f"{self.tag}/{k}", v, row["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
