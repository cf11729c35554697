"""Ground-truth long streams for the long protocol (`streamchar data long`).

The paper's long protocol runs 50 five-minute streams from transcripts of more than 300 words.
SynthTalk clips are at most 20 s, so a long ground-truth stream is stitched from consecutive
clips of one unseen character speaking a split's sentences in order (test, or the open split's
held-out source; a fresh shuffle of the pool per stream, cycled when a stream needs more). Speech and lips stay aligned throughout;
the pose restarts at each joint, which a generated stream does not have to imitate.
Written in the folder layout the evaluation reads: `<name>.mp4`, `<name>.json`, `<name>.png`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from streamchar.config import Config
from streamchar.data.clip import ClipPlan, build_clip
from streamchar.data.mp4 import write_mp4
from streamchar.data.synth import character_seeds, text_pool
from streamchar.errors import StreamcharError
from streamchar.utils.files import atomic_write_text


def build_long_stream(index: int, seconds: float, seed: int, cfg: Config, split: str = "test") -> dict:
    rng = np.random.default_rng([seed, 0x10A6, index])
    _, unseen = character_seeds(seed, cfg)
    character_seed = unseen[index % len(unseen)]
    pool = text_pool(split, cfg)
    order = list(rng.permutation(len(pool)))
    frames, audio, sentences, ref, char_id = [], [], [], None, None
    total, k = 0.0, 0
    while total < seconds:
        part = [pool[order[(k + j) % len(order)]] for j in range(3)]
        k += 3
        plan = ClipPlan(f"long-{index:03d}-{k:03d}", k, "test-unseen", character_seed, part, [pool[order[-1]]], int(rng.integers(2**31 - 1)))
        clip = build_clip(plan, cfg)
        frames.append(clip["frames"])
        audio.append(clip["audio"])
        sentences += clip["record"]["sentences"]
        total += clip["record"]["duration"]
        if ref is None:
            ref, char_id = clip["reference"], clip["record"]["character_id"]
    return {"frames": np.concatenate(frames), "audio": np.concatenate(audio), "transcript": " ".join(sentences),
            "reference": ref, "character_id": char_id, "seconds": total}


def write_long_streams(out: Path, streams: int, seconds: float, seed: int, cfg: Config, split: str = "test",
                       on_progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Resumable: a stream whose MP4 and JSON are both there is kept."""
    if streams <= 0 or seconds <= 0:
        raise StreamcharError(f"a long stream set needs at least one stream of some length, got {streams} streams of {seconds:g} s")
    if split not in ("test", "open") or not text_pool(split, cfg):
        raise StreamcharError(f"long streams speak the test split or the open one (whose source, chatterbot, synthtalk.text "
                              f"must name); got {split!r} with text {cfg.synthtalk.text}")  # fmt: skip
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(streams):
        name = f"long-{i:03d}"
        mp4, side = out / f"{name}.mp4", out / f"{name}.json"
        if not (mp4.exists() and side.exists()):
            s = build_long_stream(i, seconds, seed, cfg, split)
            Image.fromarray(s["reference"]).save(out / f"{name}.png")
            tmp = out / f".{name}.tmp.mp4"
            write_mp4(tmp, s["frames"], cfg.stream.fps, s["audio"], cfg.audio.sample_rate)
            tmp.replace(mp4)
            meta = {"transcript": s["transcript"], "reference_image": f"{name}.png", "character_id": s["character_id"],
                    "seconds": s["seconds"], "words": len(s["transcript"].split()), "kind": "stitched SynthTalk ground truth",
                    "engines": list(cfg.synthtalk.engines), "split": split}
            atomic_write_text(side, json.dumps(meta, indent=1))
        paths.append(mp4)
        if on_progress:
            on_progress(i + 1, streams)
    return paths


def stream_engines(folder: Path) -> dict[str, str] | None:
    """Each long stream's speech engine (name -> engine), from its character and the engines its
    set drew voices from; None for streams made before they were recorded."""
    from streamchar.data.character import make_character

    out = {}
    for side in sorted(Path(folder).glob("*.json")):
        meta = json.loads(side.read_text())
        char = str(meta.get("character_id", ""))
        if "engines" not in meta or not char.startswith("char"):
            return None
        out[side.stem] = make_character(int(char[4:]), tuple(meta["engines"])).voice.engine
    return out or None
