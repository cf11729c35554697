"""What an evaluation runs on: videos with their transcripts and reference images.

Two sources, the same item:
- a SynthTalk set's split (ground truth), and
- a folder of MP4s, each with a JSON beside it (the layout `streamchar generate` writes and
  real clips use, see `streamchar.data.dataset`):

      DIR/<name>.mp4   video with its audio track
      DIR/<name>.json  {"transcript": "...", "reference_image": "<file next to the JSON>"}

An item that cannot be evaluated (unreadable file, no audio track, another frame rate, empty
transcript) is reported as failed with its reason; the rest of the run goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamchar.data.inspect import load_records
from streamchar.data.mp4 import read_mp4
from streamchar.errors import StreamcharError


@dataclass(frozen=True)
class EvalItem:
    name: str
    video: Path
    transcript: str
    reference_image: Path | None
    character_id: str | None = None


@dataclass
class LoadedItem:
    item: EvalItem
    frames: np.ndarray
    audio: np.ndarray
    sample_rate: int
    fps: float


def synthtalk_items(data: Path, split: str, limit: int | None = None) -> list[EvalItem]:
    records = [r for r in load_records(Path(data)) if r["split"] == split]
    if not records:
        raise StreamcharError(f"{data} has no clips in split {split!r}")
    items = [
        EvalItem(r["clip_id"], Path(r["_dir"]) / r["files"]["video"], r["transcript"],
                 Path(r["_dir"]) / r["files"]["reference_image"], r.get("character_id"))
        for r in records
    ]  # fmt: skip
    return items[:limit] if limit else items


def named_folders(specs: list[str], taken: tuple[str, ...] = ()) -> dict[str, Path]:
    """`NAME=FOLDER` options (`--videos`) as {name: folder}; names must be distinct and not in `taken`."""
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise StreamcharError(f"--videos takes NAME=FOLDER, got {spec!r}")
        if name in out or name in taken:
            raise StreamcharError(f"two systems are named {name!r}")
        out[name] = Path(folder)
    return out


def named_mp4s(specs: list[str], limit: int) -> dict[str, list[Path]]:
    """`NAME=FOLDER` options as {name: the folder's first `limit` MP4s}, for diagnostics that read
    rendered streams directly."""
    out = {}
    for name, folder in named_folders(specs).items():
        clips = sorted(folder.glob("*.mp4"))[:limit]
        if not clips:
            raise StreamcharError(f"{folder} is not a folder of MP4s")
        out[name] = clips
    return out


def per_system_script(default_clips: int, measure: Callable[[str, list[Path]], dict]) -> None:
    """The command line of a diagnostic over rendered streams (`benchmarks/*.py`): `--videos
    NAME=DIR` (repeatable), `--clips`, `--out`; `measure(name, mp4s)` gives each system's entry
    of the JSON report."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", action="append", required=True, help="NAME=DIR of MP4s (repeatable)")
    ap.add_argument("--clips", type=int, default=default_clips)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    try:
        systems = named_mp4s(a.videos, a.clips)
    except StreamcharError as e:
        raise SystemExit(str(e)) from None
    report = {name: measure(name, clips) for name, clips in systems.items()}
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report, indent=1))


def folder_items(folder: Path, limit: int | None = None) -> list[EvalItem]:
    folder = Path(folder)
    if not folder.is_dir():
        raise StreamcharError(f"{folder} is not a folder of MP4s")
    videos = sorted(folder.glob("*.mp4"))
    if not videos:
        raise StreamcharError(f"{folder} holds no .mp4 files")
    items = []
    for v in videos[:limit] if limit else videos:
        side = v.with_suffix(".json")
        transcript, ref, char = "", None, None
        if side.is_file():
            try:
                meta = json.loads(side.read_text())
            except json.JSONDecodeError:
                meta = {"_error": f"{side.name} is not valid JSON"}
            transcript = str(meta.get("transcript", ""))
            ref = side.parent / meta["reference_image"] if meta.get("reference_image") else None
            char = meta.get("character_id")
        items.append(EvalItem(v.stem, v, transcript, ref, char))
    return items


def load_item(item: EvalItem, fps: float) -> LoadedItem:
    """Decode an item, or raise StreamcharError with the reason it cannot be evaluated."""
    if not item.transcript.strip():
        raise StreamcharError("empty transcript (give one in the JSON beside the MP4)")
    if item.reference_image is not None and not item.reference_image.is_file():
        raise StreamcharError(f"reference image {item.reference_image} does not exist")
    dec = read_mp4(item.video)
    if dec.audio is None or len(dec.audio) == 0:
        raise StreamcharError("no audio track")
    if len(dec.frames) == 0:
        raise StreamcharError("no video frames")
    if abs(dec.fps - fps) > 0.01:
        raise StreamcharError(f"{dec.fps:g} fps; the protocol evaluates {fps:g} fps video")
    return LoadedItem(item, dec.frames, dec.audio, dec.sample_rate, dec.fps)
