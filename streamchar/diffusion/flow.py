"""Rectified flow (paper eq. 1-2): x_t = (1 - t) z + t eps, target velocity v = eps - z, one t per
sample shared by both modalities. The DiT takes t scaled to Wan's timestep range [0, 1000]."""

from __future__ import annotations

import torch
import torch.nn.functional as F

TIMESTEP_SCALE = 1000.0


def noisy(z: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    tt = t.reshape(-1, *([1] * (z.ndim - 1))).to(z.dtype)
    return (1 - tt) * z + tt * eps


def velocity_target(z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return eps - z


def flow_loss(pred_video: torch.Tensor, target_video: torch.Tensor, pred_audio: torch.Tensor | None = None,
              target_audio: torch.Tensor | None = None, audio_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Mean squared velocity error per modality and their weighted sum (eq. 2)."""
    out = {"video": F.mse_loss(pred_video.float(), target_video.float())}
    out["loss"] = out["video"]
    if pred_audio is not None and target_audio is not None:
        out["audio"] = F.mse_loss(pred_audio.float(), target_audio.float())
        out["loss"] = out["loss"] + audio_weight * out["audio"]
    return out


def sample_times(steps: int, shift: float = 1.0) -> list[float]:
    """t from 1 (noise) to 0 (data) in `steps` Euler steps; `shift` > 1 spends more steps at high noise."""
    if steps <= 0:
        raise ValueError("steps must be positive")
    ts = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    ts = shift * ts / (1 + (shift - 1) * ts)
    return [float(t) for t in ts]


def guided(conditional: torch.Tensor, unconditional: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: scale 1 is the conditional prediction, 0 the unconditional."""
    return unconditional + scale * (conditional - unconditional)


def with_guidance(guided_so_far: torch.Tensor, conditional: torch.Tensor, unconditional: torch.Tensor, scale: float) -> torch.Tensor:
    """One more condition's guidance added to a prediction already guided on others: each adds
    its own (scale - 1) x (conditional - unconditional), the conditional prediction being shared."""
    return guided_so_far + (scale - 1.0) * (conditional - unconditional)
