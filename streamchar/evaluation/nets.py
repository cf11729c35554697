"""The project's own evaluation networks for SynthTalk, shipped under `assets/eval/<name>/`.

The paper's metric networks (SyncNet v2, ArcFace, Inception, I3D, MUSIQ) are trained on real
faces and cannot be shipped here; these stand in for them on SynthTalk, under their own names:

- `synthtalk-sync`: a SyncNet-style pair of encoders (5 frames of the mouth region, 20 MFCC
  columns) trained on ground-truth clips so that aligned windows are closer than windows of
  the same clip shifted by up to 15 frames. Evaluated with the SyncNet protocol.
- `synthtalk-id`: an embedding of the head region trained to tell the training characters
  apart (normalised softmax with a margin); identity is its cosine similarity to the reference.

Both read fixed regions of the frame: SynthTalk draws every character at the same place, and
the regions below hold the mouth and the head through all sway and nodding in the data set.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from streamchar.errors import StreamcharError
from streamchar.evaluation.syncnet import VIDEO_WINDOW
from streamchar.utils.shipped import shipped_dir

# (top, bottom, left, right) as fractions of the frame
MOUTH_REGION = (0.39, 0.64, 0.34, 0.66)
HEAD_REGION = (0.10, 0.66, 0.22, 0.78)
MOUTH_SIZE = (32, 40)
HEAD_SIZE = (48, 48)


def crop_region(frames: np.ndarray, region: tuple[float, float, float, float], size: tuple[int, int]) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, h, w) float in [-1, 1], the region resized to `size`."""
    t, h, w, _ = frames.shape
    y0, y1, x0, x1 = int(region[0] * h), int(region[1] * h), int(region[2] * w), int(region[3] * w)
    x = torch.from_numpy(np.ascontiguousarray(frames[:, y0:y1, x0:x1])).permute(0, 3, 1, 2).float() / 127.5 - 1
    if x.shape[-2:] != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x


def _conv(cin: int, cout: int, stride: int | tuple[int, int] = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SynthTalkSyncNet(nn.Module):
    name = "synthtalk-sync"

    def __init__(self, dim: int = 128):
        super().__init__()
        self.lip = nn.Sequential(
            *_conv(3 * VIDEO_WINDOW, 48), *_conv(48, 64, 2), *_conv(64, 96, 2), *_conv(96, 128, 2),
            nn.Flatten(), nn.Linear(128 * 4 * 5, 256), nn.ReLU(inplace=True), nn.Linear(256, dim),
        )  # fmt: skip
        self.aud = nn.Sequential(
            *_conv(1, 32), *_conv(32, 64, (1, 2)), *_conv(64, 96, 2), *_conv(96, 128, 2),
            nn.Flatten(), nn.Linear(128 * 4 * 3, 256), nn.ReLU(inplace=True), nn.Linear(256, dim),
        )  # fmt: skip
        self.register_buffer("mfcc_mean", torch.zeros(13))
        self.register_buffer("mfcc_std", torch.ones(13))

    def forward_lip(self, windows: torch.Tensor) -> torch.Tensor:
        """(N, 5, 3, 32, 40) mouth crops in [-1, 1] -> (N, dim)."""
        return self.lip(windows.flatten(1, 2))

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(N, 13, 20) MFCC windows -> (N, dim)."""
        x = (mfcc - self.mfcc_mean[:, None]) / self.mfcc_std[:, None]
        return self.aud(x[:, None])


class SynthTalkIdentityNet(nn.Module):
    name = "synthtalk-id"

    def __init__(self, dim: int = 128, classes: int = 48):
        super().__init__()
        self.body = nn.Sequential(
            *_conv(3, 32), *_conv(32, 64, 2), *_conv(64, 96, 2), *_conv(96, 128, 2), *_conv(128, 128, 2),
            nn.Flatten(), nn.Linear(128 * 3 * 3, dim),
        )  # fmt: skip
        self.classifier = nn.Parameter(torch.randn(classes, dim) * 0.01)  # training only
        self.register_buffer("threshold", torch.tensor(0.5))

    def forward(self, heads: torch.Tensor) -> torch.Tensor:
        """(N, 3, 48, 48) head crops in [-1, 1] -> unit embeddings (N, dim)."""
        return F.normalize(self.body(heads), dim=1)


NETS = {"synthtalk-sync": SynthTalkSyncNet, "synthtalk-id": SynthTalkIdentityNet}


def load_net(name_or_path: str | Path) -> nn.Module:
    """A shipped evaluation network by name or a directory written by `save_net`."""
    path = shipped_dir("eval", str(name_or_path)) if str(name_or_path) in NETS else Path(name_or_path)
    try:
        meta = json.loads((path / "config.json").read_text())
        model = NETS[meta["name"]](**meta.get("config", {}))
        state = load_file(path / "model.safetensors")
    except FileNotFoundError:
        raise StreamcharError(f"no evaluation network at {path}: expected config.json and model.safetensors "
                              f"(train one with `streamchar eval train-sync` or `eval train-identity`)") from None
    except (json.JSONDecodeError, KeyError, TypeError, SafetensorError, OSError) as e:
        raise StreamcharError(f"{path} is not a usable evaluation network: {e}") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise StreamcharError(f"{path / 'model.safetensors'} does not match its config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()
