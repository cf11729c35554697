"""Fréchet distance between two Gaussians fitted to feature sets (FID, FVD and FD-<name>).

d² = |mu1 - mu2|² + Tr(S1 + S2 - 2 (S1 S2)^½), the formula of Heusel et al. (2017); the
matrix square root is scipy's, with the usual small diagonal offset when the product is
singular (few samples) and its imaginary round-off dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

from streamchar.errors import StreamcharError


@dataclass(frozen=True)
class GaussianStats:
    mean: np.ndarray
    cov: np.ndarray
    count: int

    @classmethod
    def of(cls, features: np.ndarray) -> GaussianStats:
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[0] < 2:
            raise StreamcharError(f"a Fréchet distance needs at least two feature vectors, got shape {f.shape}")
        return cls(f.mean(axis=0), np.cov(f, rowvar=False), f.shape[0])


def frechet_distance(a: GaussianStats, b: GaussianStats, eps: float = 1e-6) -> float:
    if a.mean.shape != b.mean.shape:
        raise StreamcharError(f"feature sizes differ: {a.mean.shape[0]} and {b.mean.shape[0]}")
    diff = a.mean - b.mean
    covmean = linalg.sqrtm(a.cov @ b.cov)
    if not np.isfinite(covmean).all():
        offset = np.eye(a.cov.shape[0]) * eps
        covmean = linalg.sqrtm((a.cov + offset) @ (b.cov + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2 * np.trace(covmean))
