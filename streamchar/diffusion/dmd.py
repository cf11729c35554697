"""Distribution matching distillation (DMD, Yin et al. 2024) in the rectified-flow
parameterisation the models use (x_t = (1 - t) z + t eps, v = eps - z).

The student's sample z is pushed along the difference between two denoisers evaluated on a
re-noised copy of it: the frozen teacher's ("real score", with guidance) and a copy trained
online on the student's own samples ("fake score"). The loss is a mean squared error against a
detached target, so its gradient with respect to z is exactly that difference, normalised per
sample by the mean distance between z and the teacher's estimate (DMD's weighting).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def clean_estimate(x_t: torch.Tensor, velocity: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The data estimate z = x_t - t v that a velocity prediction implies."""
    return x_t - t.reshape(-1, *([1] * (x_t.ndim - 1))).to(x_t.dtype) * velocity


def dmd_loss(sample: torch.Tensor, real_estimate: torch.Tensor, fake_estimate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The generator's DMD loss on one modality and the raw gradient it applies (for logging).

    d loss / d sample = (fake - real) / w / numel, with w the per-sample mean |sample - real|.
    """
    dims = tuple(range(1, sample.ndim))
    with torch.no_grad():
        weight = (sample.float() - real_estimate.float()).abs().mean(dim=dims, keepdim=True).clamp(min=1e-6)
        grad = (fake_estimate.float() - real_estimate.float()) / weight
        target = sample.float() - grad
    return 0.5 * F.mse_loss(sample.float(), target, reduction="sum") / sample.numel(), grad.norm() / grad.numel() ** 0.5


def sample_score_times(b: int, low: float, high: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Where the scores are compared: uniform in [low, high] (DMD's 2%-98% range of the path)."""
    return low + (high - low) * torch.rand(b, generator=generator)
