"""Building blocks of the tiny codecs: residual convolutions, causal 1-D convolutions that
can run chunk by chunk with a carried state (giving exactly the output of one long call), and
the video decoder's reference and blend-gate layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResBlock2d(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class CausalConv1d(nn.Conv1d):
    """Conv1d that sees only the past. `forward(x, state)` returns (y, new_state), where the
    state is the last (kernel - 1) * dilation inputs; zeros stand in before the start."""

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int = 1):
        super().__init__(cin, cout, kernel, dilation=dilation)
        self.context = (kernel - 1) * dilation

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        if self.context == 0:
            return super().forward(x), x[:, :, :0]
        if state is None:
            state = x.new_zeros(x.shape[0], x.shape[1], self.context)
        full = torch.cat([state, x], dim=2)
        return super().forward(full), full[:, :, -self.context :]


class CausalResBlock1d(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv1 = CausalConv1d(channels, channels, 3, dilation)
        self.conv2 = CausalConv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        h, state = self.conv1(F.silu(x), state)
        h, _ = self.conv2(F.silu(h))
        return x + h, state


class ResBlock1d(nn.Module):
    """Non-causal residual block (encoders run offline on whole clips)."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 3, dilation=dilation, padding=dilation)
        self.conv2 = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class ReferenceFuse(nn.Module):
    """One decoder level reads the reference image's features at the same resolution. The
    output convolution starts at zero, so a decoder given this path starts as it was."""

    def __init__(self, channels: int, reference: int):
        super().__init__()
        self.mix = nn.Conv2d(channels + reference, channels, 3, padding=1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        ref = ref.expand(h.shape[0], *ref.shape[1:]) if ref.shape[0] == 1 else ref
        return h + self.out(F.silu(self.mix(torch.cat([h, ref], dim=1))))


def gate_logits(head: nn.Sequential, features: torch.Tensor, *images: torch.Tensor) -> torch.Tensor:
    """A gate head's first layer is a 1x1 convolution over a decoder's features (at half
    resolution) and full-resolution images taken space-to-depth by 2; it runs as a 1x1 convolution
    on the features and 2x2 stride-2 ones on the images, the same sums without building the
    space-to-depth copies."""
    first, c = head[0], features.shape[1]
    h = F.conv2d(features, first.weight[:, :c], first.bias)
    for image in images:
        k = 4 * image.shape[1]
        h = h + F.conv2d(image, first.weight[:, c : c + k].reshape(-1, image.shape[1], 2, 2), stride=2)
        c += k
    return head[1:](h)
