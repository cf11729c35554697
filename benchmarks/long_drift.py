r"""Quality Drift and identity over streams longer than `streamchar eval long` can hold: frames are
read one at a time, scored by SCC (the long protocol's per-frame quality), and one frame a second
is kept for identity against the reference image. Drift as the long protocol defines it
(`evaluation.quality.quality_drift`: the largest gap between a 30-second point and the first 5
seconds), over the whole stream and over its first five minutes, with per-minute means.

    python benchmarks/long_drift.py --reference runs/long-gt-30min/long-000.png \
        --videos gt=runs/long-gt-30min/long-000.mp4 --videos sink=DIR/long-000.mp4 --out FILE.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import av
import numpy as np
import torch

from streamchar.evaluation.quality import quality_drift, scc_score
from streamchar.evaluation.scorers import IdentityScorer, read_reference


def score_stream(path: Path, reference: Path, identity: IdentityScorer) -> dict:
    quality, kept = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        step = max(1, round(fps))  # one frame kept a second
        for i, frame in enumerate(container.decode(stream)):
            rgb = frame.to_ndarray(format="rgb24")
            quality.append(scc_score(rgb))
            if i % step == 0:
                kept.append(rgb)
    frames = np.stack(kept)
    sims = identity(frames, read_reference(reference, frames))["per_frame"]
    minute = 60 * step  # frames in a minute, counted in kept frames' steps so both slices agree
    minutes = int(np.ceil(len(quality) / minute))
    return {"seconds": len(quality) / fps, "quality": float(np.mean(quality)), "quality_drift": quality_drift(quality, fps)[0],
            "quality_drift_first_5_min": quality_drift(quality[: 5 * minute], fps)[0], "identity": float(sims.mean()),
            "quality_per_minute": [float(np.mean(quality[k * minute : (k + 1) * minute])) for k in range(minutes)],
            "identity_per_minute": [float(sims[k * 60 : (k + 1) * 60].mean()) for k in range(minutes)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, required=True, help="the stream's reference image")
    ap.add_argument("--videos", action="append", required=True, help="NAME=MP4")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(2)
    identity = IdentityScorer(stride=1)  # the frames kept are one a second already
    out = {}
    for spec in args.videos:
        name, _, path = spec.partition("=")
        if not path or not Path(path).is_file():
            raise SystemExit(f"--videos wants NAME=MP4 with an existing file, got {spec!r}")
        out[name] = r = score_stream(Path(path), args.reference, identity)
        print(f"{name}: {r['seconds']:.0f} s, drift {r['quality_drift']:.4f} (first 5 min {r['quality_drift_first_5_min']:.4f}), "
              f"quality {r['quality']:.4f}, identity {r['identity']:.3f}, "
              f"quality by minute {min(r['quality_per_minute']):.4f}-{max(r['quality_per_minute']):.4f}, "
              f"identity by minute {min(r['identity_per_minute']):.3f}-{max(r['identity_per_minute']):.3f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"benchmark": "long-drift", "reference": str(args.reference), "systems": out}, indent=1))


if __name__ == "__main__":
    main()
