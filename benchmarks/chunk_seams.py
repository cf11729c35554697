"""Do a stream's chunks join without a step? For each system's MP4s: the mean frame-to-frame
change across chunk boundaries (every 33 frames) over the mean change elsewhere, per clip, then
the mean over clips. About 1 when boundaries are invisible; SynthTalk's ground truth gives 1.2
(its speech and gestures do not know where chunks fall, so this is the floor to compare with).

    python benchmarks/chunk_seams.py --videos ground-truth=runs/render/codec-gt --videos student=runs/render/student2-short --clips 40 --out benchmarks/results/chunk-seams.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from streamchar.data.mp4 import read_mp4
from streamchar.errors import StreamcharError
from streamchar.evaluation.bench_codec import seam_ratio
from streamchar.evaluation.items import named_folders


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", action="append", required=True, help="NAME=DIR of MP4s (repeatable)")
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    try:
        systems = named_folders(a.videos)
    except StreamcharError as e:
        raise SystemExit(str(e)) from None
    report = {}
    for name, folder in systems.items():
        clips = sorted(folder.glob("*.mp4"))[: a.clips]
        if not clips:
            raise SystemExit(f"{folder} is not a folder of MP4s")
        ratios = [seam_ratio(read_mp4(p).frames) for p in clips]
        report[name] = {"clips": len(clips), "seam_ratio_mean": float(np.nanmean(ratios)), "per_clip": ratios}
        print(f"{name}: seam ratio {report[name]['seam_ratio_mean']:.2f} over {len(clips)} clips")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
