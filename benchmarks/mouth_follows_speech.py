r"""Does a generated mouth follow its own speech? For each system's first N clips: the correlation
of mouth opening (SynthTalk's mouth-interior pixels) with audio loudness per frame, and the lag
where they correlate best. A diagnostic beside Sync-C that needs no trained network: a mouth that
moves as much as the data's but at random gives a correlation near 0 and lags spread over ±6.

    python benchmarks/mouth_follows_speech.py --videos codec=runs/render/codec-gt --videos teacher-v5=runs/render/teacher5-short \
        --clips 20 --out benchmarks/results/mouth-follows-speech.json
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamchar.evaluation.items import per_system_script
from streamchar.evaluation.synthtalk_checks import mouth_follows_speech


def measure(name: str, clips: list[Path]) -> dict:
    scores = [mouth_follows_speech(p) for p in clips]
    corr = [c for c, _ in scores]
    lags = [lag for _, lag in scores]
    print(f"{name}: correlation {np.mean(corr):.3f}, best lag within ±1 frame in {np.mean(np.abs(lags) <= 1):.0%} of {len(clips)} clips, lags {lags}")
    return {"clips": len(clips), "correlation_mean": float(np.mean(corr)), "lag_within_1": float(np.mean(np.abs(lags) <= 1)), "lags": lags}


if __name__ == "__main__":
    per_system_script(20, measure)
