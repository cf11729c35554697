"""Where the stream thinks its speech is, against where it is: at each chunk's end, the words
the reader counted spoken and the pointer's own reading, beside the words forced alignment
finds finished by then in the stream's own audio (`streamchar bench pointer`).

It reads a folder `streamchar eval render` wrote (each `<name>.json` keeps every chunk's count
and pointer reading) and aligns each `<name>.mp4`'s audio to its transcript. A stream whose
speech the aligner cannot follow (words it does not find in order) is counted apart, not scored.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from streamchar.config.schema import AUDIO_LATENT_RATE, CHUNK_AUDIO_LATENTS
from streamchar.data.align import align_words
from streamchar.data.mp4 import read_mp4
from streamchar.errors import StreamcharError

CHUNK_SECONDS = CHUNK_AUDIO_LATENTS / AUDIO_LATENT_RATE


def stream_errors(side: dict, audio: np.ndarray, rate: int) -> dict:
    """Per chunk of one rendered stream: the words alignment finds finished by its end, the
    reader's count and the pointer's reading."""
    words = align_words(side["transcript"], audio, rate)
    ends = np.array([w.end for w in words])
    rows = []
    for k, (counted, reading) in enumerate(side["reading"]):
        heard = float(np.sum(ends <= (k + 1) * CHUNK_SECONDS + 1e-6))
        rows.append({"aligned": heard, "counted": float(counted), "pointer": float(reading)})
    return {"chunks": rows, "words": len(words)}


def bench_pointer(videos: Path, engines: dict[str, str] | None = None, limit: int | None = None,
                  on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Mean absolute error in words at chunk ends, of the pointer's reading and of the reader's
    count, over every stream and by engine (`engines`: stream name -> engine)."""
    sides = [s for s in sorted(Path(videos).glob("*.json")) if s.with_suffix(".mp4").is_file()][:limit]
    if not sides:
        raise StreamcharError(f"{videos} holds no rendered streams (<name>.mp4 with its <name>.json from `streamchar eval render`)")
    per: dict[str, list] = {}
    unaligned = []
    for n, side_path in enumerate(sides):
        side = json.loads(side_path.read_text())
        if "reading" not in side:
            raise StreamcharError(f"{side_path} keeps no per-chunk reading; render it again with this version of `streamchar eval render`")
        decoded = read_mp4(side_path.with_suffix(".mp4"), with_video=False)
        try:
            result = stream_errors(side, decoded.audio, decoded.sample_rate)
        except StreamcharError:
            unaligned.append(side_path.stem)
        else:
            per[side_path.stem] = result["chunks"]
        if on_progress:
            on_progress(n + 1, len(sides))
    groups = {"all": list(per)}
    for name in per:
        groups.setdefault((engines or {}).get(name, "unknown"), []).append(name)
    out = {}
    for group, names in sorted(groups.items()):
        rows = [r for name in names for r in per[name]]
        if not rows:
            continue
        aligned = np.array([r["aligned"] for r in rows])
        out[group] = {"streams": len(names), "chunk_ends": len(rows),
                      "pointer_error_words": float(np.mean(np.abs(np.array([r["pointer"] for r in rows]) - aligned))),
                      "pointer_bias_words": float(np.mean(np.array([r["pointer"] for r in rows]) - aligned)),
                      "counted_error_words": float(np.mean(np.abs(np.array([r["counted"] for r in rows]) - aligned)))}
    return {"benchmark": "pointer", "videos": str(videos), "streams": len(sides), "unaligned": unaligned, "by_group": out}
