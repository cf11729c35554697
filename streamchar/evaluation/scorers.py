"""The per-video scorers of the suite, each with the paper's network when the user gives its
weights and the project's named stand-in otherwise. Every scorer has a `name` that goes into
the report, so a number is never shown under a metric it is not."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from streamchar.errors import StreamcharError
from streamchar.evaluation.external import load_torchscript
from streamchar.evaluation.nets import HEAD_REGION, HEAD_SIZE, MOUTH_REGION, MOUTH_SIZE, crop_region, load_net
from streamchar.evaluation.syncnet import MFCC_WINDOW, VIDEO_WINDOW, SyncNetV2, SyncResult, load_syncnet_v2, mfcc_frames, sync_scores, window_starts

FVD_CLIP = 16


class SyncScorer:
    """Sync-C / Sync-D / offset with SyncNet v2 weights (`syncnet_v2.model`; frames used whole,
    so give face-cropped video as syncnet_python's pipeline does) or `synthtalk-sync`."""

    def __init__(self, syncnet_v2: str | Path | None = None, vshift: int = 15, batch: int = 64):
        self.model = load_syncnet_v2(syncnet_v2) if syncnet_v2 else load_net("synthtalk-sync")
        self.name = "SyncNet-v2" if syncnet_v2 else "synthtalk-sync"
        self.vshift, self.batch = vshift, batch

    @torch.no_grad()
    def __call__(self, frames: np.ndarray, audio: np.ndarray, sample_rate: int, fps: float) -> SyncResult:
        return sync_scores(*self.features(frames, audio, sample_rate, fps), self.vshift)

    @torch.no_grad()
    def features(self, frames: np.ndarray, audio: np.ndarray, sample_rate: int, fps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-window lip and audio features (N, D) of a clip, the windows SyncNet compares."""
        mfcc = mfcc_frames(audio, sample_rate)
        starts = window_starts(len(frames), mfcc.shape[1], fps)
        if not starts:
            raise StreamcharError(f"too short for lip sync: {len(frames)} frames, {mfcc.shape[1] / 100:.2f} s of audio")
        m = torch.from_numpy(mfcc)
        vf, af = [], []
        if isinstance(self.model, SyncNetV2):
            for b in range(0, len(starts), self.batch):
                idx = range(b, min(b + self.batch, len(starts)))
                vf.append(torch.cat([self.model.forward_lip(self.model.prepare_video(frames[i : i + VIDEO_WINDOW])) for i in idx]))
                af.append(self.model.forward_aud(torch.stack([m[:, starts[i] : starts[i] + MFCC_WINDOW] for i in idx])[:, None]))
        else:
            mouth = crop_region(frames, MOUTH_REGION, MOUTH_SIZE)
            for b in range(0, len(starts), self.batch):
                idx = range(b, min(b + self.batch, len(starts)))
                vf.append(self.model.forward_lip(torch.stack([mouth[i : i + VIDEO_WINDOW] for i in idx])))
                af.append(self.model.forward_aud(torch.stack([m[:, starts[i] : starts[i] + MFCC_WINDOW] for i in idx])))
        return torch.cat(vf), torch.cat(af)


class IdentityScorer:
    """VBench-2.0's identity protocol (per-frame cosine similarity, a frame is consistent when it
    reaches the threshold, the score is the share of consistent frames), anchored on the
    reference image as the paper's setting gives one. Embedding: a user's TorchScript model
    ((B, 3, H, W) RGB 0-255 -> (B, D); VBench-2.0 uses ArcFace with threshold 0.4 on detected
    faces) or `synthtalk-id` with its calibrated threshold."""

    def __init__(self, model: str | Path | None = None, threshold: float | None = None, stride: int = 2):
        if model:
            self.model, self.name = load_torchscript(model, "identity embedding"), Path(model).stem
            self.threshold = 0.4 if threshold is None else threshold
            self.external = True
        else:
            self.model, self.name = load_net("synthtalk-id"), "synthtalk-id"
            self.threshold = float(self.model.threshold) if threshold is None else threshold
            self.external = False
        self.stride = stride

    @torch.no_grad()
    def embed(self, frames: np.ndarray) -> torch.Tensor:
        if self.external:
            x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
            return F.normalize(self.model(x).float(), dim=1)
        return self.model(crop_region(frames, HEAD_REGION, HEAD_SIZE))

    def __call__(self, frames: np.ndarray, reference: np.ndarray) -> dict:
        ref = self.embed(reference[None])
        sims = []
        picked = frames[:: self.stride]
        for b in range(0, len(picked), 128):
            sims.append((self.embed(picked[b : b + 128]) @ ref.T)[:, 0])
        s = torch.cat(sims).numpy()
        return {"similarity": float(s.mean()), "consistent": float((s >= self.threshold).mean()), "per_frame": s}


class FrechetFeatures:
    """Features for FID / FVD (user TorchScript Inception / I3D) or, without them, `FD-tinyvae`:
    the shipped tiny video codec's encoder. A frame's feature is its latent (48 x 8 x 8 at
    128 px) average-pooled to 2 x 2 plus each channel's spatial standard deviation (240 values);
    a 16-frame clip's is the mean and the temporal standard deviation of its four latents' pooled
    maps (384 values), so both appearance and motion count."""

    def __init__(self, inception: str | Path | None = None, i3d: str | Path | None = None, frame_stride: int = 8):
        from streamchar.codecs.store import load_codec

        self.inception = load_torchscript(inception, "Inception network") if inception else None
        self.i3d = load_torchscript(i3d, "I3D network") if i3d else None
        self.codec = load_codec("tiny-video") if self.inception is None or self.i3d is None else None
        self.frame_name = "FID" if self.inception is not None else "FD-tinyvae"
        self.video_name = "FVD" if self.i3d is not None else "FD-tinyvae-video"
        self.frame_stride = frame_stride

    def _latents(self, frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        """Groups of four frames -> raw latents (N, z, h, w)."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1
        if x.shape[-2:] != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        n = len(x) // 4 * 4
        return self.codec.encode_groups(x[:n].reshape(n // 4, 12, *size))

    @staticmethod
    def _pooled(z: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.adaptive_avg_pool2d(z, 2).flatten(1), z.flatten(2).std(dim=2)], dim=1)

    @torch.no_grad()
    def frames(self, frames: np.ndarray, batch: int = 32) -> np.ndarray:
        """One feature per `frame_stride`-th frame, `batch` frames at a time: a half-hour stream's
        frames as floats at once, and the encoder's activations on them, would not fit in memory."""
        picked = frames[:: self.frame_stride]
        size = (self.codec.height, self.codec.width) if self.codec is not None else None
        out = []
        for b in range(0, len(picked), batch):
            part = picked[b : b + batch]
            if self.inception is not None:
                x = torch.from_numpy(np.ascontiguousarray(part)).permute(0, 3, 1, 2).float()
                out.append(self.inception(x, return_features=True))
            else:
                single = np.repeat(part, 4, axis=0)  # a single frame is coded as four copies, as a chunk's first latent
                out.append(self._pooled(self._latents(single, size)))
        if not out:
            raise StreamcharError("no frames to compute Fréchet features on")
        return torch.cat(out).numpy()

    @torch.no_grad()
    def clips(self, frames: np.ndarray, starts: list[int]) -> np.ndarray:
        """One feature per 16-frame clip starting at each of `starts`."""
        clips = [frames[s : s + FVD_CLIP] for s in starts if s + FVD_CLIP <= len(frames)]
        if not clips:
            return np.zeros((0, 400 if self.i3d is not None else 8 * self.codec.latent_channels))
        if self.i3d is not None:
            x = torch.from_numpy(np.stack(clips)).permute(0, 4, 1, 2, 3).float()  # (N, 3, 16, H, W), 0-255
            return self.i3d(x, rescale=True, resize=True, return_features=True).numpy()
        size = (self.codec.height, self.codec.width)
        out = []
        for c in clips:
            z = self._latents(c, size)
            grid = F.adaptive_avg_pool2d(z, 2).flatten(1)  # the four latents' 2 x 2 maps
            out.append(torch.cat([grid.mean(0), grid.std(0)]))
        return torch.stack(out).numpy()


def dynamic_degree(frames: np.ndarray, fps: float, raft: str | Path | None = None) -> dict:
    """VBench's dynamic degree: frames sampled every round(fps / 8); per pair, the mean of the top
    5 % optical-flow magnitudes; the video is dynamic when at least round(4 N / 16) pairs exceed
    6 * min(H, W) / 256 pixels (N sampled frames). Flow: RAFT (TorchScript, (1, 3, H, W) RGB
    0-255 pairs -> (1, 2, H, W)) when given, else OpenCV's Farnebäck."""
    model = load_torchscript(raft, "RAFT network") if raft else None
    step = max(1, round(fps / 8))
    sampled = frames[::step]
    h, w = frames.shape[1:3]
    threshold = 6.0 * min(h, w) / 256.0
    count_needed = round(4 * len(sampled) / 16)
    scores = []
    for a, b in zip(sampled, sampled[1:]):
        if model is not None:
            ta, tb = (torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float() for x in (a, b))
            with torch.no_grad():
                flow = model(ta, tb)[0].permute(1, 2, 0).numpy()
        else:
            ga, gb = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (a, b))
            flow = cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        mag = np.sqrt((flow**2).sum(-1)).ravel()
        k = max(1, int(len(mag) * 0.05))
        scores.append(float(np.sort(mag)[-k:].mean()))
    moving = sum(s > threshold for s in scores)
    return {"dynamic": bool(moving >= count_needed and scores), "moving_pairs": int(moving), "pairs": len(scores),
            "threshold_px": threshold, "flow": "RAFT" if model is not None else "Farneback", "scores": scores}


def read_reference(path: Path | None, frames: np.ndarray) -> np.ndarray:
    """The reference image at the video's size (the first frame when there is none)."""
    if path is None:
        return frames[0]
    h, w = frames.shape[1:3]
    img = Image.open(path).convert("RGB")
    if img.size != (w, h):
        img = img.resize((w, h), Image.BICUBIC)
    return np.asarray(img)
