"""Where in a clip the lips sync: SyncNet confidence per window (the median distance over the
±15-frame offsets minus the distance at the clip's best offset, the per-window share of
Sync-C) averaged over each clip's first chunk, its middle and its last chunk (33 frames each).

    python benchmarks/sync_by_part.py --videos teacher=runs/render/teacher-pace-short --videos codec=runs/render/codec-gt-v5 --clips 20
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from streamchar.data.mp4 import read_mp4
from streamchar.evaluation.scorers import SyncScorer
from streamchar.evaluation.syncnet import offset_distances

CHUNK = 33


def window_confidence(scorer: SyncScorer, path: Path) -> np.ndarray:
    """Per window: median over offsets of the distance minus the distance at the clip's best offset."""
    v = read_mp4(path)
    d = offset_distances(*scorer.features(v.frames, v.audio, v.sample_rate, 24), scorer.vshift)
    best = int(d.mean(dim=0).argmin())
    return (d.median(dim=1).values - d[:, best]).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", action="append", required=True, help="NAME=DIR of rendered MP4s")
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    scorer = SyncScorer()
    result = {}
    for spec in args.videos:
        name, _, folder = spec.partition("=")
        parts: dict[str, list[float]] = {"first chunk": [], "middle": [], "last chunk": []}
        for p in sorted(Path(folder).glob("*.mp4"))[: args.clips]:
            c = window_confidence(scorer, p)
            parts["first chunk"] += c[:CHUNK].tolist()
            parts["middle"] += c[CHUNK:-CHUNK].tolist()
            parts["last chunk"] += c[-CHUNK:].tolist()
        result[name] = {k: float(np.mean(v)) if v else None for k, v in parts.items()}
        print(name, "  ".join(f"{k} {v:.2f}" for k, v in result[name].items() if v is not None), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"clips": args.clips, "confidence": result}, indent=1))


if __name__ == "__main__":
    main()
