"""Lip sync: the SyncNet architecture and protocol (Chung & Zisserman 2016, `syncnet_v2`), and
a SyncNet-style model trained on SynthTalk for when those weights are absent.

Protocol, as syncnet_python's `evaluate`: 100 Hz MFCCs of 16 kHz audio; for every video
frame i a window of 5 frames and the matching 20 MFCC columns (0.2 s); features of both
streams; for each offset in -vshift..+vshift the mean L2 distance between video window i and
audio window i + offset (audio features zero-padded at the ends). Sync-D is the minimum of
these means, Sync-C the median minus the minimum, and the AV offset is vshift - argmin: a
positive offset means the audio leads the video by that many frames.

At 24 fps a video frame spans 100 / 24 MFCC columns; window i starts at column round(100 i / fps)
(syncnet_python assumes 25 fps, where that is 4 i).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamchar.data.audio import resample
from streamchar.errors import StreamcharError

MFCC_RATE = 100
MFCC_WINDOW = 20
VIDEO_WINDOW = 5


def mfcc_frames(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """(13, M) MFCCs at 100 Hz, computed exactly as syncnet_python does: python_speech_features
    defaults on 16 kHz int16-scaled samples."""
    from python_speech_features import mfcc

    pcm = resample(np.asarray(audio, np.float32), sample_rate, 16000)
    pcm16 = np.clip(pcm, -1, 1) * 32767.0
    return np.ascontiguousarray(mfcc(pcm16, 16000).T.astype(np.float32))


def window_starts(num_frames: int, num_mfcc: int, fps: float) -> list[int]:
    """MFCC start column of every 5-frame window that has both its frames and its audio."""
    starts = []
    for i in range(num_frames - VIDEO_WINDOW + 1):
        s = int(round(MFCC_RATE * i / fps))
        if s + MFCC_WINDOW > num_mfcc:
            break
        starts.append(s)
    return starts


@dataclass(frozen=True)
class SyncResult:
    offset: int  # frames; positive: audio leads video
    sync_d: float  # minimum over offsets of the mean distance
    sync_c: float  # median - minimum
    distances: tuple[float, ...]  # mean distance per offset, -vshift .. +vshift

    def summary(self) -> dict:
        return {"offset": self.offset, "sync_c": self.sync_c, "sync_d": self.sync_d}


def offset_distances(video_features: torch.Tensor, audio_features: torch.Tensor, vshift: int = 15) -> torch.Tensor:
    """(N, 2 vshift + 1): each window's feature distance with the audio shifted by -vshift .. +vshift."""
    if video_features.shape != audio_features.shape or video_features.ndim != 2 or len(video_features) == 0:
        raise StreamcharError(f"sync needs equal (windows, dim) features, got {tuple(video_features.shape)} and {tuple(audio_features.shape)}")
    n = len(video_features)
    padded = F.pad(audio_features, (0, 0, vshift, vshift))
    return torch.stack([F.pairwise_distance(video_features, padded[j : j + n]) for j in range(2 * vshift + 1)], dim=1)


def sync_scores(video_features: torch.Tensor, audio_features: torch.Tensor, vshift: int = 15) -> SyncResult:
    """The SyncNet protocol on per-window features (N, D) of both streams."""
    mdist = offset_distances(video_features, audio_features, vshift).mean(dim=0)
    minval, minidx = torch.min(mdist, dim=0)
    return SyncResult(
        offset=vshift - int(minidx),
        sync_d=float(minval),
        sync_c=float(torch.median(mdist) - minval),
        distances=tuple(float(v) for v in mdist),
    )


class SyncNetV2(nn.Module):
    """syncnet_python's `S` module, layer for layer, so that `syncnet_v2.model` loads by name.
    Audio: (N, 1, 13, 20) MFCC windows; video: (N, 3, 5, 224, 224) BGR frames in 0-255."""

    name = "syncnet_v2"

    def __init__(self, num_layers_in_fc_layers: int = 1024):
        super().__init__()

        def bn_relu2(c: int) -> list[nn.Module]:
            return [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]

        def bn_relu3(c: int) -> list[nn.Module]:
            return [nn.BatchNorm3d(c), nn.ReLU(inplace=True)]

        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, 3, 1, 1), *bn_relu2(64), nn.MaxPool2d(1, 1),
            nn.Conv2d(64, 192, 3, 1, 1), *bn_relu2(192), nn.MaxPool2d(3, (1, 2)),
            nn.Conv2d(192, 384, 3, 1, 1), *bn_relu2(384),
            nn.Conv2d(384, 256, 3, 1, 1), *bn_relu2(256),
            nn.Conv2d(256, 256, 3, 1, 1), *bn_relu2(256), nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 512, (5, 4), 1, 0), *bn_relu2(512),
        )  # fmt: skip
        self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, num_layers_in_fc_layers))
        self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, num_layers_in_fc_layers))
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, (5, 7, 7), (1, 2, 2), 0), *bn_relu3(96), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            nn.Conv3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), *bn_relu3(256), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            nn.Conv3d(256, 256, (1, 3, 3), 1, (0, 1, 1)), *bn_relu3(256),
            nn.Conv3d(256, 256, (1, 3, 3), 1, (0, 1, 1)), *bn_relu3(256),
            nn.Conv3d(256, 256, (1, 3, 3), 1, (0, 1, 1)), *bn_relu3(256), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            nn.Conv3d(256, 512, (1, 6, 6), 1, 0), *bn_relu3(512),
        )  # fmt: skip

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(x).flatten(1))

    def prepare_video(self, frames: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) RGB uint8 face crops -> (1, 3, T, 224, 224) BGR 0-255, as the original reads them."""
        x = torch.from_numpy(np.ascontiguousarray(frames[..., ::-1])).permute(3, 0, 1, 2).float()
        x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        return x[None]


def load_syncnet_v2(path: str | Path) -> SyncNetV2:
    """The original `syncnet_v2.model` (a torch state dict, read with the restricted
    `weights_only` unpickler, which builds tensors but runs no code) or a safetensors copy."""
    path = Path(path)
    if not path.is_file():
        raise StreamcharError(f"no SyncNet weights at {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure here means the file is not usable weights
        raise StreamcharError(f"{path} is not a SyncNet state dict: {e}") from None
    if not isinstance(state, dict):
        raise StreamcharError(f"{path} holds a {type(state).__name__}, expected a state dict of syncnet_python's S module")
    model = SyncNetV2()
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise StreamcharError(f"{path} does not match the SyncNet v2 layout: {str(e).splitlines()[-1].strip()}") from None
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise StreamcharError(f"{path} does not match the SyncNet v2 layout (missing {missing[:3]}, unexpected {list(unexpected)[:3]})")
    return model.eval()
