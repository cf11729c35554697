"""Files written beside their target and renamed over it, so that a crash never leaves half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file


def atomic_save_file(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """A safetensors file written beside its target, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; weights are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def in_folder(directory: str, folder: Path | None, what: str, field: str) -> Path:
    """A part a checkpoint names by `field`: the path as given when absolute, else inside
    `folder` (the checkpoint's)."""
    from streamchar.errors import StreamcharError

    path = Path(directory)
    if path.is_absolute():
        return path
    if folder is None:
        raise StreamcharError(f"{what} is at {path} inside a checkpoint's folder, and none is given here: load a checkpoint, "
                              f"or set {field} to its absolute path")  # fmt: skip
    return Path(folder) / path
