"""Statistics of a SynthTalk set and a contact sheet of its characters and mouth shapes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from streamchar.data.clip import RECORD
from streamchar.data.mp4 import read_mp4
from streamchar.data.synth import INDEX, MANIFEST, SPLITS
from streamchar.data.visemes import viseme_for
from streamchar.errors import StreamcharError


def load_records(root: Path) -> list[dict]:
    if not (root / MANIFEST).exists():
        raise StreamcharError(f"{root} is not a SynthTalk set (no {MANIFEST}); make one with `streamchar data synth`")
    if not (root / INDEX).exists():
        raise StreamcharError(f"{root} has no {INDEX}; rerun `streamchar data synth` with the same settings to finish it")
    try:
        entries = json.loads((root / INDEX).read_text())["clips"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise StreamcharError(f"{root / INDEX} is damaged; rerun `streamchar data synth` with the same settings to rebuild it") from None
    if not entries:
        raise StreamcharError(f"{root} holds no finished clips yet")
    return [json.loads((root / e["path"] / RECORD).read_text()) | {"_dir": str(root / e["path"])} for e in entries]


def clip_engines(root: Path, voice: bool = False) -> dict[str, str]:
    """Each clip's speech engine (clip id -> espeak, festival or flite), or with `voice` its voice
    (engine:name, as synthtalk.held_out_voices names it); {} where `root` is not a finished
    SynthTalk set (real clips have no engine)."""
    try:
        records = load_records(Path(root))
    except StreamcharError:
        return {}
    voices = {r["clip_id"]: r.get("character", {}).get("voice", {}) for r in records}
    return {clip: f"{v.get('engine', 'espeak')}:{v.get('name')}" if voice else v.get("engine", "espeak") for clip, v in voices.items()}


def set_statistics(records: list[dict]) -> dict:
    durations = np.array([r["duration"] for r in records])
    words = np.array([len(r["words"]) for r in records])
    speech = np.array([r["words"][-1]["end"] - r["words"][0]["start"] for r in records])
    chars_by_split: dict[str, set[str]] = {s: set() for s in SPLITS}
    for r in records:
        chars_by_split[r["split"]].add(r["character_id"])
    seen = chars_by_split["train"]
    return {
        "clips": len(records),
        "clips_per_split": {s: sum(r["split"] == s for r in records) for s in SPLITS},
        "hours": float(durations.sum() / 3600),
        "duration_seconds": {"min": float(durations.min()), "mean": float(durations.mean()), "max": float(durations.max())},
        "sentences_per_clip": dict(sorted(Counter(len(r["sentences"]) for r in records).items())),
        "words": int(words.sum()),
        "words_per_minute": float(words.sum() / speech.sum() * 60),
        "characters": len({r["character_id"] for r in records}),
        "characters_per_split": {s: len(c) for s, c in chars_by_split.items()},
        "unseen_characters_in_train": len(chars_by_split["test-unseen"] & seen),
        "voices": dict(Counter(r["character"]["voice"]["name"] for r in records)),
        "clips_with_gestures": sum(bool(r["gestures"]) for r in records),
        "clips_with_nods": sum(bool(r["nods"]) for r in records),
    }


# one phoneme of each kind of mouth shape, for the sheet
_SHOWCASE = ("m", "a", "i:", "u:", "O:", "f", "S", "@", "E", "w")


def contact_sheet(records: list[dict], path: Path, max_characters: int = 16) -> Path:
    """Top rows: each character's reference image. Bottom row: the mouth in one clip at
    phonemes of different visemes, face enlarged and labelled."""
    by_char: dict[str, dict] = {}
    for r in records:
        by_char.setdefault(r["character_id"], r)
    refs = [np.asarray(Image.open(Path(r["_dir"]) / r["files"]["reference_image"]).convert("RGB")) for r in list(by_char.values())[:max_characters]]
    h, w = refs[0].shape[:2]
    cols = 8
    rows = (len(refs) + cols - 1) // cols
    tile = 2
    sheet = Image.new("RGB", (cols * w * tile, rows * h * tile + h * tile + 16), (255, 255, 255))
    for k, ref in enumerate(refs):
        sheet.paste(Image.fromarray(ref).resize((w * tile, h * tile), Image.NEAREST), ((k % cols) * w * tile, (k // cols) * h * tile))

    clip = max(records, key=lambda r: len(r["phonemes"]))
    frames = read_mp4(Path(clip["_dir"]) / clip["files"]["video"]).frames
    fps = clip["fps"]
    picked: list[tuple[str, int]] = []
    for want in _SHOWCASE:
        target = viseme_for(want)
        for p in clip["phonemes"]:
            if viseme_for(p["phoneme"]) == target and p["end"] - p["start"] > 0.05:
                picked.append((p["phoneme"], min(int((p["start"] + p["end"]) / 2 * fps), len(frames) - 1)))
                break
    draw = ImageDraw.Draw(sheet)
    y0 = rows * h * tile + 14
    face = (int(0.3 * w), int(0.34 * h), int(0.7 * w), int(0.74 * h))
    size = (w * tile * cols) // max(len(picked), 1)
    for k, (label, fi) in enumerate(picked):
        crop = Image.fromarray(frames[fi]).crop(face).resize((size, size), Image.BICUBIC)
        sheet.paste(crop, (k * size, y0))
        draw.text((k * size + 3, y0 + 2), f"/{label}/", fill=(255, 255, 0))
    draw.text((3, y0 - 13), f"mouth shapes of {clip['clip_id']} ({clip['character_id']})", fill=(0, 0, 0))
    sheet = sheet.crop((0, 0, sheet.width, y0 + (size if picked else 0)))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
