"""The latent cache: a data set encoded once, so that training never runs the encoders.

Layout of a cache folder:
    latents.json                 how it was made (codecs, geometry) and every clip's record
    shard-00000.safetensors      per clip: "<clip_id>/video" (z, 9 * chunks, h, w),
                                 "<clip_id>/audio" (z, frames), "<clip_id>/reference" (z, 1, h, w),
                                 "<clip_id>/reference_voice" (z, n), all float16

Each clip record keeps its transcript, prompt, word and phoneme timings and frame count, so
a training window can be cut from the cache alone. Shards are written atomically; an
interrupted run resumes at the first missing shard.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

from streamchar.codecs.base import AudioCodec, VideoCodec
from streamchar.config import Config
from streamchar.data.dataset import ClipDataset, codec_frames
from streamchar.errors import StreamcharError
from streamchar.utils.files import atomic_save_file, atomic_write_text

MANIFEST = "latents.json"
PARTIAL = "latents.partial.json"  # the records of the shards written so far, while a cache is being made
KEEP = ("clip_id", "split", "character_id", "transcript", "prompt", "words", "phonemes")


def _audio_to_hops(audio: torch.Tensor, hop: int) -> torch.Tensor:
    n = -(-audio.shape[-1] // hop) * hop
    return torch.nn.functional.pad(audio, (0, n - audio.shape[-1]))


@torch.no_grad()
def encode_audio(codec: AudioCodec, samples: torch.Tensor) -> torch.Tensor:
    """(z_a, n) float16 latents of mono samples (padded to whole hops), on the CPU from a codec on any device."""
    return codec.encode(_audio_to_hops(samples[None].float(), codec.hop_length))[0].to("cpu", torch.float16)


@torch.no_grad()
def encode_item(item: dict, video: VideoCodec, audio: AudioCodec) -> dict[str, torch.Tensor]:
    frames = codec_frames(item)
    ref = item["reference_image"][:, None][None].float() / 127.5 - 1
    out = {"video": video.encode(frames)[0].to("cpu", torch.float16), "reference": video.encode(ref)[0, :, :1].to("cpu", torch.float16),
           "audio": encode_audio(audio, item["audio"])}  # fmt: skip
    if item["reference_voice"] is not None:
        out["reference_voice"] = encode_audio(audio, item["reference_voice"])
    return out


def encode_dataset(
    data: Path,
    out: Path,
    cfg: Config,
    video: VideoCodec,
    audio: AudioCodec,
    codec_names: dict[str, str],
    clips_per_shard: int = 64,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict:
    ds = ClipDataset(data, cfg)
    settings = {"data": str(Path(data).resolve()), "codecs": codec_names, "preset": cfg.preset, "clips": len(ds),
                "video": cfg.video.model_dump(), "audio": cfg.audio.model_dump(), "clips_per_shard": clips_per_shard}

    def load(i: int, encode: bool) -> tuple[dict, dict[str, torch.Tensor]]:
        item = ds[i]
        rec = {k: item[k] for k in KEEP} | {"frames": int(item["video"].shape[0])}
        if item.get("mouth_boxes") is not None:  # SynthTalk's: where the mouth-region loss weighs more
            rec["mouth_boxes"] = item["mouth_boxes"]
        return rec, (encode_item(item, video, audio) if encode else {})

    return write_cache(out, settings, len(ds), load, on_progress)


Load = Callable[[int, bool], "tuple[dict, dict[str, torch.Tensor]] | None"]


def write_cache(out: Path, settings: dict, count: int, load: Load, on_progress: Callable[[int, int], None] | None = None) -> dict:
    """`count` items in shards of `settings["clips_per_shard"]`, each written atomically with the
    records so far (`latents.partial.json`), so that a rerun keeps the shards done and their
    records; the manifest is written last. `load(i, encode)` gives item i's record and, when
    `encode`, its tensors, or None for an item left out (listed by the caller)."""
    out.mkdir(parents=True, exist_ok=True)
    manifest_path, partial_path = out / MANIFEST, out / PARTIAL
    for path in (manifest_path, partial_path):
        if path.exists() and json.loads(path.read_text()).get("settings") != settings:
            raise StreamcharError(f"{out} holds latents made with other settings; choose another --out or remove it")
    kept = json.loads(partial_path.read_text())["shards"] if partial_path.exists() else {}
    per = settings["clips_per_shard"]
    n_shards = -(-count // per)
    records: list[dict] = []
    for s in range(n_shards):
        idx = range(s * per, min(count, (s + 1) * per))
        path = out / f"shard-{s:05d}.safetensors"
        if path.exists() and path.name in kept:
            records += kept[path.name]
            if on_progress:
                on_progress(idx[-1] + 1, count)
            continue
        shard_records, tensors = [], {}
        for i in idx:
            loaded = load(i, not path.exists())
            if on_progress:
                on_progress(i + 1, count)
            if loaded is None:
                continue
            rec, encoded = loaded
            shard_records.append(rec | {"shard": path.name})
            tensors |= {f"{rec['clip_id']}/{name}": t for name, t in encoded.items()}
        if not path.exists():
            atomic_save_file(tensors, path)
        records += shard_records
        kept[path.name] = shard_records
        atomic_write_text(partial_path, json.dumps({"settings": settings, "shards": kept}))
    atomic_write_text(manifest_path, json.dumps({"settings": settings, "clips": records}))
    partial_path.unlink(missing_ok=True)
    return {"clips": len(records), "shards": n_shards, "out": str(out)}


class LatentCache:
    """Read access to a latent cache: records and their tensors (float32)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.exists():
            raise StreamcharError(f"{self.root} is not a latent cache (no {MANIFEST}); make one with `streamchar data encode`")
        meta = json.loads(path.read_text())
        self.settings, self.records = meta["settings"], meta["clips"]
        self._shards: dict[str, dict[str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.records)

    def tensors(self, i: int) -> dict[str, torch.Tensor]:
        rec = self.records[i]
        shard = self._shards.get(rec["shard"])
        if shard is None:
            shard = self._shards[rec["shard"]] = load_file(self.root / rec["shard"])
        prefix = rec["clip_id"] + "/"
        return {k[len(prefix) :]: v.float() for k, v in shard.items() if k.startswith(prefix)}

