"""Benchmark of SynthTalk generation: speed, speech intelligibility, lip motion vs loudness."""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from streamchar.config import Config
from streamchar.data.inspect import load_records
from streamchar.data.synth import synthesize_set
from streamchar.evaluation.synthtalk_checks import mouth_loudness_correlation, speech_wer


def bench_synthtalk(
    cfg: Config,
    clips: int = 16,
    seconds: float = 10.0,
    workers: int | None = None,
    seed: int = 0,
    out: Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Make `clips` clips of about `seconds` each in a fresh folder, timed; then measure
    pocketsphinx WER and mouth/loudness correlation over all of them."""
    with tempfile.TemporaryDirectory(prefix="streamchar-bench-") as tmp:
        root = Path(out) if out is not None else Path(tmp) / "set"
        t0 = time.perf_counter()
        summary = synthesize_set(root, clips, seed, cfg, workers=workers, target_seconds=seconds, on_progress=on_progress)
        wall = time.perf_counter() - t0
        records = load_records(root)
        durations = np.array([r["duration"] for r in records])
        wer = speech_wer(records)
        corr = np.array([mouth_loudness_correlation(Path(r["_dir"]), r) for r in records])
    return {
        "preset": cfg.preset,
        "resolution": f"{cfg.video.width}x{cfg.video.height}",
        "sample_rate": cfg.audio.sample_rate,
        "clips": clips,
        "workers": summary["workers"],
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "wall_seconds": wall,
        "clips_per_second": clips / wall,
        "clip_seconds_mean": float(durations.mean()),
        "clip_seconds_min": float(durations.min()),
        "clip_seconds_max": float(durations.max()),
        "video_seconds_per_second": float(durations.sum() / wall),
        "ten_second_clips_per_second": float(durations.sum() / 10.0 / wall),
        "asr": wer,
        "mouth_loudness_correlation_mean": float(corr.mean()),
        "mouth_loudness_correlation_min": float(corr.min()),
    }
