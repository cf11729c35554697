r"""Do a stream's chunks, and its video latents, join without a step? For each system's MP4s: the
mean frame-to-frame change across chunk boundaries (every 33 frames) over the mean change
elsewhere, per clip, then the mean over clips. About 1 when boundaries are invisible; SynthTalk's
ground truth is the floor to compare with (its speech and gestures do not know where chunks fall,
so its own ratio is what a seamless stream gives). The same at every latent's first frame (every four frames): the latent
step ratio.

    python benchmarks/chunk_seams.py --videos ground-truth=runs/render/codec-gt \
        --videos student=runs/render/student2-short --clips 40 --out chunk-seams.json
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamchar.data.mp4 import read_mp4
from streamchar.evaluation.bench_codec import motion
from streamchar.evaluation.items import per_system_script


def measure(name: str, clips: list[Path]) -> dict:
    moves = [motion(read_mp4(p).frames) for p in clips]
    ratios = [m["seam_ratio"] for m in moves]
    latent = [m["latent_step_ratio"] for m in moves]
    print(f"{name}: seam ratio {np.nanmean(ratios):.2f}, latent step ratio {np.nanmean(latent):.2f} over {len(clips)} clips")
    return {"clips": len(clips), "seam_ratio_mean": float(np.nanmean(ratios)), "latent_step_ratio_mean": float(np.nanmean(latent)),
            "per_clip": ratios, "latent_step_per_clip": latent}


if __name__ == "__main__":
    per_system_script(40, measure)
