"""Where a pipeline runs and in what precision: `--device`, `--dtype` and `--memory-mode`, read
in one place for every command that streams (generate, serve, eval render, bench stream), so
that a bad choice reads the same everywhere: one line naming what this machine has."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from streamchar.errors import StreamcharError
from streamchar.streaming.memory import MEMORY_MODES, apply_memory_mode
from streamchar.streaming.pipeline import Pipeline

DEVICES = "auto (CUDA where present), cpu, cuda or cuda:N"
DTYPES = ("auto", "float32", "bfloat16")


@dataclass(frozen=True)
class Placement:
    device: torch.device
    dtype: torch.dtype
    memory_mode: str = "resident"

    @classmethod
    def parse(cls, device: str = "auto", dtype: str = "auto", memory_mode: str = "resident") -> Placement:
        d = resolve_device(device)
        p = cls(d, resolve_dtype(dtype, d), memory_mode)
        if memory_mode not in MEMORY_MODES:
            raise StreamcharError(f"--memory-mode takes {', '.join(MEMORY_MODES)}; got {memory_mode!r}")
        if memory_mode != "resident" and p.dtype != torch.bfloat16:
            raise StreamcharError(f"--memory-mode {memory_mode} computes in bfloat16: give --dtype bfloat16 (auto is float32 on a CPU)")
        return p

    def apply(self, pipe: Pipeline) -> Pipeline:
        """`pipe` on the device, in the precision, as the memory mode keeps it. A mode that
        offloads keeps the prompt encoder on the CPU from the start (it would not fit beside the
        rest on a small GPU)."""
        dtype = None if self.dtype == torch.float32 else self.dtype
        offloaded = self.memory_mode != "resident"
        pipe.to(self.device, dtype, prompt_device="cpu" if offloaded else None)
        return apply_memory_mode(pipe, self.memory_mode, self.device) if offloaded else pipe


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise StreamcharError(f"--device takes {DEVICES}; got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise StreamcharError(f"--device takes {DEVICES}; got {name!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            built = "built without CUDA" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, but no GPU is visible"
            raise StreamcharError(f"--device {name}: no CUDA GPU here (torch {torch.__version__}, {built}); use --device cpu or auto")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise StreamcharError(f"--device {name}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """auto: bfloat16 on a GPU that has it, else float32 (a CPU's bfloat16 is emulated on many)."""
    if name not in DTYPES:
        raise StreamcharError(f"--dtype takes {', '.join(DTYPES)}; got {name!r}")
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    if name == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise StreamcharError(f"--dtype bfloat16: {torch.cuda.get_device_name(device)} has no bfloat16; use float32")
    return getattr(torch, name)


def load_placed(checkpoint: str | None = None, video_codec: str | None = None, audio_codec: str | None = None, config: str | None = None,
                device: str = "auto", dtype: str = "auto", memory_mode: str = "resident") -> Pipeline:  # fmt: skip
    """`Pipeline.load` where the placement says (checked first: a bad choice costs no loading)."""
    from pathlib import Path

    placement = Placement.parse(device, dtype, memory_mode)
    return placement.apply(Pipeline.load(checkpoint, video_codec, audio_codec, Path(config) if config else None))
