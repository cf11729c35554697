"""Plots people would rather see than read: training curves, how a decoded video moves."""

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


def plot_change_profile(results: dict[str, dict], out: Path) -> Path:
    """Frame-to-frame change by position in the chunk, for codec benches (`streamchar bench
    codec`) named by their decoders, against the ground truth: a decoder whose video moves in
    steps shows teeth at every latent's first frame (0, 1, 5, ..., 29)."""
    fig, ax = plt.subplots(figsize=(8, 3.4))
    first = next(iter(results.values()))
    ax.plot(first["change_by_chunk_position_ground_truth"], "k-", lw=2, label="ground truth")
    for name, r in results.items():
        ax.plot(r["change_by_chunk_position_reconstructed"], "o-", ms=3, lw=1, label=name)
    from streamchar.codecs.base import LATENT_STARTS

    for p in LATENT_STARTS:
        ax.axvline(p, color="0.85", lw=0.8, zorder=0)
    ax.set_xlabel("frame's position in its chunk (grey: a latent's first frame)")
    ax.set_ylabel("mean |frame change| (0-255)")
    ax.grid(alpha=0.3, axis="y")
    ax.set_ylim(0, ax.get_ylim()[1])
    # below the axes, two labels a row: long decoder names inside the axes covered the curves or ran over the y label
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out
