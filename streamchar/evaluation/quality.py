"""Per-frame visual quality and the paper's Quality Drift (§5.3).

The paper scores frames with MUSIQ. MUSIQ's weights cannot be shipped here, so a user who
has them passes a TorchScript export (`--musiq FILE`: takes (B, 3, H, W) RGB in [0, 1],
returns one score per image on the KonIQ scale 0-100, which is divided by 100). Without it
the score is the project's documented no-reference "SCC" score, reported under that name:

    SCC = mean of tanh(G / 0.08), tanh(C / 0.25), tanh(M / 0.35)

with G the mean gradient magnitude of the luma (Sobel, luma in [0, 1]), C the luma's
standard deviation and M the Hasler-Süsstrunk colourfulness (on [0, 1] RGB). Sharpness,
contrast and colour are what blur, fading and colour drift take away from a long stream;
the scales put SynthTalk ground truth near the middle of each tanh so changes either way show.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from streamchar.evaluation.external import load_torchscript

SCC_SCALES = (0.08, 0.25, 0.35)


def scc_score(frame: np.ndarray) -> float:
    """One uint8 RGB frame (H, W, 3) -> quality in [0, 1)."""
    rgb = frame.astype(np.float32) / 255.0
    luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    gx = cv2.Sobel(luma, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(luma, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    g = float(np.sqrt(gx**2 + gy**2).mean())
    c = float(luma.std())
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    m = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    return float(np.mean([np.tanh(v / s) for v, s in zip((g, c, m), SCC_SCALES)]))


class FrameQuality:
    """Scores frames with MUSIQ (TorchScript file) when given, else with SCC."""

    def __init__(self, musiq: str | Path | None = None):
        self.model = None
        self.name = "SCC"
        if musiq is not None:
            self.model = load_torchscript(musiq, "MUSIQ model")
            self.name = "MUSIQ"

    @torch.no_grad()
    def __call__(self, frames: np.ndarray, batch: int = 32) -> np.ndarray:
        if self.model is None:
            return np.array([scc_score(f) for f in frames], np.float64)
        out = []
        for i in range(0, len(frames), batch):
            x = torch.from_numpy(np.ascontiguousarray(frames[i : i + batch])).permute(0, 3, 1, 2).float() / 255.0
            out.append(self.model(x).reshape(-1).double().numpy() / 100.0)
        return np.concatenate(out)


def quality_drift(scores: Sequence[float], fps: float, period: float = 30.0, window: float = 5.0) -> tuple[float | None, list[dict]]:
    """Paper §5.3: at every `period` seconds t, |mean quality over [t - window, t) - mean over
    the first `window` seconds|; the drift is the maximum. None for a video shorter than one period."""
    q = np.asarray(scores, dtype=np.float64)
    n_win = int(round(window * fps))
    if len(q) < n_win:
        return None, []
    base = float(q[:n_win].mean())
    points = []
    k = 1
    while int(round(k * period * fps)) <= len(q):
        end = int(round(k * period * fps))
        seg = float(q[end - n_win : end].mean())
        points.append({"time": k * period, "quality": seg, "drift": abs(seg - base)})
        k += 1
    if not points:
        return None, []
    return max(p["drift"] for p in points), points
