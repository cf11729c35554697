"""Modality-aware RoPE (paper §3.3; docs/architecture.md, "Stream geometry").

Wan2.2's 3-axis rotary embedding (head dim split into time, height, width; `theta` 10000),
evaluated at arbitrary positions instead of 0..n-1 so that:

- motion latents sit at negative times (-9..-1) and the chunk being denoised starts at 0;
- the sink chunk and the reference frame sit before the motion latents (fixed offsets, since
  the sink's true time grows without bound in a long stream);
- audio tokens use the time frequencies scaled by 1/4: audio latent i (at i/24 s) and video
  latent j (at j/6 s) share a phase when i = 4j. Their height/width positions are 0.

At integer video positions 0..n-1 this is exactly diffusers' `WanRotaryPosEmbed`.
"""

from __future__ import annotations

import torch
from diffusers.models.embeddings import get_1d_rotary_pos_embed
from torch import nn

AUDIO_TIME_SCALE = 0.25  # audio latents per second (24) / video latents per second (6), inverted
REFERENCE_TIME = -19.0  # one latent frame before the sink
SINK_START = -18.0  # nine latent frames before the motion latents
MOTION_START = -9.0


class ModalityRoPE(nn.Module):
    def __init__(self, head_dim: int, theta: float = 10000.0):
        super().__init__()
        self.h_dim = self.w_dim = 2 * (head_dim // 6)
        self.t_dim = head_dim - self.h_dim - self.w_dim
        self.theta = theta

    def _axis(self, dim: int, pos: torch.Tensor, linear_factor: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        return get_1d_rotary_pos_embed(dim, pos.double(), self.theta, use_real=True, repeat_interleave_real=True,
                                       freqs_dtype=torch.float64, linear_factor=linear_factor)  # fmt: skip

    def video(self, times: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens of latent frames at `times` (F,), each a height x width grid, frame-major:
        (1, F * height * width, 1, head_dim) cos and sin."""
        f = len(times)
        parts = [
            (self._axis(self.t_dim, times), (f, 1, 1)),
            (self._axis(self.h_dim, torch.arange(height)), (1, height, 1)),
            (self._axis(self.w_dim, torch.arange(width)), (1, 1, width)),
        ]
        cos = torch.cat([c.view(*shape, -1).expand(f, height, width, -1) for (c, _), shape in parts], dim=-1)
        sin = torch.cat([s.view(*shape, -1).expand(f, height, width, -1) for (_, s), shape in parts], dim=-1)
        return cos.reshape(1, -1, 1, cos.shape[-1]).float(), sin.reshape(1, -1, 1, sin.shape[-1]).float()

    def audio(self, times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio latents at `times` (in audio-latent units): time frequencies scaled by 1/4, no
        spatial rotation. (1, N, 1, head_dim)."""
        cos_t, sin_t = self._axis(self.t_dim, times, linear_factor=1 / AUDIO_TIME_SCALE)
        n = len(times)
        ones, zeros = torch.ones(n, self.h_dim + self.w_dim, dtype=cos_t.dtype), torch.zeros(n, self.h_dim + self.w_dim, dtype=sin_t.dtype)
        cos, sin = torch.cat([cos_t, ones], dim=-1), torch.cat([sin_t, zeros], dim=-1)
        return cos.reshape(1, n, 1, -1).float(), sin.reshape(1, n, 1, -1).float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of (B, L, heads, head_dim), as Wan does."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos[..., 0::2], sin[..., 1::2]
    out = torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1).flatten(-2)
    return out.type_as(x)
