"""Metric networks the user brings (Inception for FID, I3D for FVD, MUSIQ, RAFT, ArcFace-style
embeddings). They are loaded as TorchScript files, the form the reference implementations
distribute them in (StyleGAN2-ADA's and clean-fid's `inception-2015-12-05.pt`, StyleGAN-V's
`i3d_torchscript.pt`) or can export them to; nothing is downloaded."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from streamchar.errors import StreamcharError


def load_torchscript(path: str | Path, what: str) -> torch.jit.ScriptModule:
    path = Path(path)
    if not path.is_file():
        raise StreamcharError(f"no {what} file at {path}")
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated, but it is the form these networks are published in
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu").eval()
    except (RuntimeError, ValueError) as e:
        raise StreamcharError(f"{path} is not a TorchScript {what}: {str(e).splitlines()[0]}") from None
