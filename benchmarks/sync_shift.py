"""Does the lip-sync scorer find a deliberate audio shift? For held-out ground-truth clips, the
audio is shifted by +5 and -5 frames (positive: audio earlier, i.e. leading) and by 2 s (well
outside the ±15-frame search); the offsets found and Sync-C are recorded.

    python benchmarks/sync_shift.py --data runs/synthtalk --clips 24 --out benchmarks/results/sync-shift.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from streamchar.data.mp4 import read_mp4
from streamchar.evaluation.items import synthtalk_items
from streamchar.evaluation.scorers import SyncScorer


def shift(audio: np.ndarray, frames: int, rate: int, fps: float) -> np.ndarray:
    n = int(round(abs(frames) * rate / fps))
    if frames > 0:
        return np.concatenate([audio[n:], np.zeros(n, audio.dtype)])
    return np.concatenate([np.zeros(n, audio.dtype), audio[:-n]])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="test-unseen")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(2)
    scorer = SyncScorer()
    rows = []
    for item in synthtalk_items(args.data, args.split, args.clips):
        d = read_mp4(item.video)
        r = {k: scorer(d.frames, shift(d.audio, k, d.sample_rate, d.fps) if k else d.audio, d.sample_rate, d.fps) for k in (0, 5, -5, 48)}
        rows.append({"clip": item.name, **{f"offset_{k}": v.offset for k, v in r.items()}, **{f"sync_c_{k}": v.sync_c for k, v in r.items()}})
    summary = {
        "clips": len(rows), "scorer": scorer.name,
        "found_plus_5": float(np.mean([r["offset_5"] == 5 for r in rows])),
        "found_minus_5": float(np.mean([r["offset_-5"] == -5 for r in rows])),
        "unshifted_within_1": float(np.mean([abs(r["offset_0"]) <= 1 for r in rows])),
        "sync_c_unshifted": float(np.mean([r["sync_c_0"] for r in rows])),
        "sync_c_shifted_5": float(np.mean([r["sync_c_5"] for r in rows])),
        "sync_c_shifted_2s": float(np.mean([r["sync_c_48"] for r in rows])),
    }  # fmt: skip
    result = {"summary": summary, "clips": rows}
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
