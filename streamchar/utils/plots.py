"""Training curves: one panel per logged quantity, for every training loop."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_training_log(log: Path, out: Path, title: str) -> Path:
    """One panel per logged quantity (loss, PSNR, STFT loss, ...) against the step."""
    rows = [json.loads(line) for line in Path(log).read_text().splitlines() if line.strip()]
    keys = [k for k in rows[0] if k not in ("step", "lr", "steps_per_s")]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.2), squeeze=False)
    steps = [r["step"] for r in rows]
    for ax, k in zip(axes[0], keys):
        ax.plot(steps, [r[k] for r in rows], lw=1)
        ax.set_xlabel("step")
        ax.set_title(k)
        ax.grid(alpha=0.3)
        if k in ("loss", "stft", "l1"):
            ax.set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
