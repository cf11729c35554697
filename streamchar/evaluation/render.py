"""A model's answers to an evaluation set: for every ground-truth item, the same transcript,
reference image, reference voice and prompt streamed through the engine into the folder layout
the protocols read (`<name>.mp4` + `<name>.json` + `<name>.png`).

Items already rendered (their JSON is written last) are skipped, so an interrupted render
continues where it stopped.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from streamchar.data.audio import read_wav
from streamchar.data.inspect import load_records
from streamchar.errors import StreamcharError
from streamchar.streaming.engine import SessionSettings
from streamchar.streaming.inputs import StreamRequest, character_request, check_transcript, check_voice
from streamchar.streaming.pipeline import Pipeline
from streamchar.utils.files import atomic_write_text


@dataclass(frozen=True)
class RenderItem:
    name: str
    request: Callable[[], StreamRequest]  # built when rendered: a character's voice takes espeak-ng time
    reference_image: Path | None
    character_id: str | None


def synthtalk_render_items(data: Path, split: str, pipe: Pipeline, limit: int | None = None) -> list[RenderItem]:
    """A SynthTalk split: each clip's own reference image, reference voice, prompt and transcript."""
    records = [r for r in load_records(Path(data)) if r["split"] == split]
    if not records:
        raise StreamcharError(f"{data} has no clips in split {split!r}")
    cfg = pipe.cfg

    def request(r: dict) -> Callable[[], StreamRequest]:
        def build() -> StreamRequest:
            d = Path(r["_dir"])
            image = np.asarray(Image.open(d / r["files"]["reference_image"]).convert("RGB"))
            voice, rate = read_wav(d / r["files"]["reference_voice"])
            if rate != cfg.audio.sample_rate:
                raise StreamcharError(f"{d / r['files']['reference_voice']} is {rate} Hz; the model takes {cfg.audio.sample_rate} Hz")
            return StreamRequest(check_transcript(r["transcript"]), image, check_voice(voice, cfg), r["prompt"])

        return build

    items = [RenderItem(r["clip_id"], request(r), Path(r["_dir"]) / r["files"]["reference_image"], r.get("character_id")) for r in records]
    return items[:limit] if limit else items


def long_render_items(folder: Path, pipe: Pipeline, limit: int | None = None) -> list[RenderItem]:
    """Long ground-truth streams (`streamchar data long`): the transcript of each, spoken by its
    SynthTalk character (`character_id` char<seed>: image, voice and prompt from the seed)."""
    sides = sorted(Path(folder).glob("*.json"))
    if not sides:
        raise StreamcharError(f"{folder} holds no <name>.json ground-truth descriptions")
    items = []
    for side in sides[:limit] if limit else sides:
        meta = json.loads(side.read_text())
        char = str(meta.get("character_id", ""))
        if not char.startswith("char"):
            raise StreamcharError(f"{side} names no SynthTalk character (character_id char<seed>), so its voice cannot be made")
        transcript = str(meta.get("transcript", ""))
        ref = side.parent / meta["reference_image"] if meta.get("reference_image") else None
        # the character's voice from the engines its set drew from (older streams: espeak-ng's)
        cfg = pipe.cfg.model_copy(update={"synthtalk": pipe.cfg.synthtalk.model_copy(update={"engines": meta.get("engines", ["espeak"])})})
        items.append(RenderItem(side.stem, lambda t=transcript, c=char, cfg=cfg: character_request(c[4:], t, cfg), ref, char))
    return items


def render_items(pipe: Pipeline, items: list[RenderItem], out: Path, settings: SessionSettings,
                 on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Stream every item into `out`; returns a summary with each stream's accounting."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done, rendered, skipped = [], 0, 0
    for k, item in enumerate(items):
        side = out / f"{item.name}.json"
        if side.is_file() and (out / f"{item.name}.mp4").is_file():
            skipped += 1
            done.append(json.loads(side.read_text())["stream"])
        else:
            request = item.request()
            report = pipe.stream_to_mp4(request, settings, out / f"{item.name}.mp4")
            ref_name = None
            if item.reference_image is not None:
                ref_name = f"{item.name}.png"
                shutil.copyfile(item.reference_image, out / ref_name)
            s = report.summary()
            meta = {"transcript": request.transcript, "reference_image": ref_name, "character_id": item.character_id,
                    "prompt": request.prompt, "steps": settings.steps, "sink": settings.sink, "seed": settings.seed, "guidance": settings.guidance,
                    "text_guidance": settings.text_guidance, "checkpoint": pipe.meta.get("name"), "stream": s,
                    "reading": [[c.words_spoken, c.pointer_words] for c in report.chunks]}  # fmt: skip
            atomic_write_text(side, json.dumps(meta, indent=1))
            rendered += 1
            done.append(s)
        if on_progress:
            on_progress(k + 1, len(items))
    rtf = [d["real_time_factor_mean"] for d in done]
    return {"items": len(items), "rendered": rendered, "already_there": skipped, "steps": settings.steps, "sink": settings.sink,
            "stream_seconds": float(sum(d["seconds"] for d in done)), "real_time_factor_mean": float(np.mean(rtf)) if rtf else None}
