"""What the machine computes fast: read once, so that a setting of "auto" picks what pays here."""

from __future__ import annotations

import torch


def bf16_is_native(device: str = "cpu") -> bool:
    """Whether bfloat16 convolutions run natively on `device` (CUDA with bf16; a CPU whose oneDNN
    has bf16 instructions). Elsewhere bfloat16 is emulated and slower than float32."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN's probe
        return False
