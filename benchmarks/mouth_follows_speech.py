"""Does a generated mouth follow its own speech? For each system's first N clips: the correlation
of mouth opening (SynthTalk's mouth-interior pixels) with audio loudness per frame, and the lag
where they correlate best. A diagnostic beside Sync-C that needs no trained network: a mouth that
moves as much as the data's but at random gives a correlation near 0 and lags spread over ±6.

    python benchmarks/mouth_follows_speech.py --videos codec=runs/render/codec-gt --videos teacher-v5=runs/render/teacher5-short --clips 20 --out benchmarks/results/mouth-follows-speech.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from streamchar.errors import StreamcharError
from streamchar.evaluation.items import named_folders
from streamchar.evaluation.synthtalk_checks import mouth_follows_speech


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", action="append", required=True, help="NAME=DIR of MP4s (repeatable)")
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    report = {}
    try:
        systems = named_folders(a.videos)
    except StreamcharError as e:
        raise SystemExit(str(e)) from None
    for name, folder in systems.items():
        clips = sorted(folder.glob("*.mp4"))[: a.clips]
        if not clips:
            raise SystemExit(f"{folder} is not a folder of MP4s")
        scores = [mouth_follows_speech(p) for p in clips]
        corr = [c for c, _ in scores]
        lags = [lag for _, lag in scores]
        report[name] = {"clips": len(clips), "correlation_mean": float(np.mean(corr)), "lag_within_1": float(np.mean(np.abs(lags) <= 1)), "lags": lags}
        print(f"{name}: correlation {np.mean(corr):.3f}, best lag within ±1 frame in {np.mean(np.abs(lags) <= 1):.0%} of {len(clips)} clips, lags {lags}")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
