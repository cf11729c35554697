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
KEEP = ("clip_id", "split", "character_id", "transcript", "prompt", "words", "phonemes")


def _audio_to_hops(audio: torch.Tensor, hop: int) -> torch.Tensor:
    n = -(-audio.shape[-1] // hop) * hop
    return torch.nn.functional.pad(audio, (0, n - audio.shape[-1]))


@torch.no_grad()
def encode_item(item: dict, video: VideoCodec, audio: AudioCodec) -> dict[str, torch.Tensor]:
    frames = codec_frames(item)
    ref = item["reference_image"][:, None][None].float() / 127.5 - 1
    out = {
        "video": video.encode(frames)[0],
        "reference": video.encode(ref)[0, :, :1],
        "audio": audio.encode(_audio_to_hops(item["audio"][None], audio.hop_length))[0],
    }
    if item["reference_voice"] is not None:
        out["reference_voice"] = audio.encode(_audio_to_hops(item["reference_voice"][None], audio.hop_length))[0]
    return {k: v.to("cpu", torch.float16) for k, v in out.items()}  # from codecs on any device


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
    out.mkdir(parents=True, exist_ok=True)
    settings = {"data": str(Path(data).resolve()), "codecs": codec_names, "preset": cfg.preset, "clips": len(ds),
                "video": cfg.video.model_dump(), "audio": cfg.audio.model_dump(), "clips_per_shard": clips_per_shard}
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old.get("settings") != settings:
            raise StreamcharError(f"{out} holds latents made with other settings; choose another --out or remove it")
    n_shards = -(-len(ds) // clips_per_shard)
    records: list[dict] = []
    done = 0
    for s in range(n_shards):
        idx = range(s * clips_per_shard, min(len(ds), (s + 1) * clips_per_shard))
        path = out / f"shard-{s:05d}.safetensors"
        shard_records = []
        tensors: dict[str, torch.Tensor] = {}
        exists = path.exists()
        for i in idx:
            item = ds[i]
            rec = {k: item[k] for k in KEEP} | {"shard": path.name, "frames": int(item["video"].shape[0])}
            if item.get("mouth_boxes") is not None:  # SynthTalk's: where the mouth-region loss weighs more
                rec["mouth_boxes"] = item["mouth_boxes"]
            if not exists:
                for name, t in encode_item(item, video, audio).items():
                    tensors[f"{item['clip_id']}/{name}"] = t
            shard_records.append(rec)
            done += 1
            if on_progress:
                on_progress(done, len(ds))
        if not exists:
            atomic_save_file(tensors, path)
        records.extend(shard_records)
    atomic_write_text(manifest_path, json.dumps({"settings": settings, "clips": records}))
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

