"""How a module kept in lower precision computes on the float32 tensors a stream holds."""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def computing_in(module: nn.Module, device: torch.device) -> contextlib.AbstractContextManager:
    """A module kept in bfloat16 (or stored lower, cast up layer by layer) computes in bfloat16 on
    float32 latents and conditions; a float32 module as it is, or as the caller's autocast has it
    (training's bf16 on CUDA)."""
    if next(module.parameters()).dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
