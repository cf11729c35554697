"""A `torch.utils.data.Dataset` of aligned clips: SynthTalk sets and folders of real video.

Real-data folder layout (TalkVid-style), one pair of files per clip:

    DIR/<name>.mp4    video with its audio track (any size and rate; resampled/resized here)
    DIR/<name>.json   {"transcript": "...",
                       "words": [{"word": "The", "start": 0.21, "end": 0.35}, ...],   # seconds
                       "split": "train",                 # optional (train, val, test, test-unseen); default train
                       "prompt": "...",                  # optional
                       "reference_image": "<file>",      # optional, next to the JSON
                       "reference_voice": "<file.wav>"}  # optional, next to the JSON

Frames of another size are centre-cropped to the configured aspect ratio and resized;
audio is mixed to mono and resampled to the configured rate. Without a reference image
the first frame stands in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from streamchar.config import Config
from streamchar.data.audio import read_wav, resample
from streamchar.data.clip import RECORD
from streamchar.data.mp4 import read_mp4
from streamchar.data.synth import INDEX, MANIFEST, SPLITS
from streamchar.errors import StreamcharError


def fit_frame(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crop to the target aspect ratio, then resize (bilinear)."""
    h, w = frame.shape[:2]
    if (h, w) == (height, width):
        return frame
    target = width / height
    if w / h > target:
        cw = int(round(h * target))
        x0 = (w - cw) // 2
        frame = frame[:, x0 : x0 + cw]
    else:
        ch = int(round(w / target))
        y0 = (h - ch) // 2
        frame = frame[y0 : y0 + ch]
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.BILINEAR))


def _split(json_path: Path) -> str | None:
    """A folder clip's split: its JSON's `split`, else `train`."""
    try:
        return json.loads(json_path.read_text()).get("split", "train")
    except (json.JSONDecodeError, AttributeError, OSError):
        return None  # named as damaged when it is read


def codec_frames(item: dict[str, Any]) -> torch.Tensor:
    """An item's video as a video codec takes it: (1, 3, T, H, W) in [-1, 1]."""
    return item["video"].permute(1, 0, 2, 3)[None].float() / 127.5 - 1


class ClipDataset(Dataset):
    """Clips with video (T, 3, H, W) uint8, audio (T * samples_per_frame,) float32 and timings."""

    def __init__(self, root: str | Path, cfg: Config, split: str | None = None):
        self.root = Path(root)
        self.cfg = cfg
        if not self.root.is_dir():
            raise StreamcharError(f"data folder {self.root} does not exist")
        if (self.root / MANIFEST).exists():
            self.kind = "synthtalk"
            self.items = self._synthtalk_items(split)
        else:
            self.kind = "folder"
            if split is not None and split not in SPLITS:
                raise StreamcharError(f"unknown split {split!r}; accepted: {', '.join(SPLITS)}")
            self.items = [p for p in sorted(self.root.glob("*.json")) if p.with_suffix(".mp4").exists() and (split is None or _split(p) == split)]
        if not self.items:
            raise StreamcharError(
                f"no clips in {self.root}" + (f" for split {split!r}" if split else "")
                + "; expected a SynthTalk set (made by `streamchar data synth`) or <name>.mp4 + <name>.json pairs"
            )

    def _synthtalk_items(self, split: str | None) -> list[Path]:
        manifest = json.loads((self.root / MANIFEST).read_text())
        for key in ("video", "audio"):
            want = getattr(self.cfg, key).model_dump()
            have = {k: manifest[key][k] for k in ("height", "width", "sample_rate") if k in manifest[key]}
            mismatch = {k: (v, want[k]) for k, v in have.items() if want.get(k) != v}
            if mismatch:
                detail = ", ".join(f"{key}.{k} is {a} in the set but {b} in the config" for k, (a, b) in mismatch.items())
                raise StreamcharError(f"{self.root} was made for another preset: {detail}")
        if split is not None and split not in SPLITS:
            raise StreamcharError(f"unknown split {split!r}; accepted: {', '.join(SPLITS)}")
        index_path = self.root / INDEX
        if not index_path.exists():
            raise StreamcharError(f"{self.root} has no {INDEX}; rerun `streamchar data synth` to finish the set")
        try:
            entries = json.loads(index_path.read_text())["clips"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise StreamcharError(f"{index_path} is damaged; rerun `streamchar data synth` with the same settings to rebuild it") from None
        return [self.root / e["path"] / RECORD for e in entries if split is None or e["split"] == split]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self._load_synthtalk(self.items[i]) if self.kind == "synthtalk" else self._load_folder(self.items[i])

    def _finish(self, frames: np.ndarray, audio: np.ndarray, ref_image: np.ndarray, ref_voice: np.ndarray | None, meta: dict) -> dict[str, Any]:
        spf = self.cfg.samples_per_frame
        n = len(frames)
        aligned = np.zeros(n * spf, np.float32)
        m = min(len(audio), len(aligned))
        aligned[:m] = audio[:m]
        return {
            **meta,
            "video": torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2),
            "audio": torch.from_numpy(aligned),
            "reference_image": torch.from_numpy(np.array(ref_image)).permute(2, 0, 1),
            "reference_voice": None if ref_voice is None else torch.from_numpy(ref_voice.astype(np.float32)),
            "fps": self.cfg.stream.fps,
            "sample_rate": self.cfg.audio.sample_rate,
        }

    def _load_synthtalk(self, record_path: Path) -> dict[str, Any]:
        rec = json.loads(record_path.read_text())
        d = record_path.parent
        files = rec["files"]
        frames = read_mp4(d / files["video"], with_video=True).frames
        audio, rate = read_wav(d / files["audio"])
        voice, vrate = read_wav(d / files["reference_voice"])
        sr = self.cfg.audio.sample_rate
        meta = {k: rec[k] for k in ("clip_id", "split", "character_id", "transcript", "prompt", "words", "phonemes")}
        meta["mouth_boxes"] = rec.get("mouth_boxes")
        ref = np.asarray(Image.open(d / files["reference_image"]).convert("RGB"))
        return self._finish(frames, resample(audio, rate, sr), ref, resample(voice, vrate, sr), meta)

    def _load_folder(self, json_path: Path) -> dict[str, Any]:
        try:
            rec = json.loads(json_path.read_text())
        except json.JSONDecodeError as e:
            raise StreamcharError(f"{json_path} is not valid JSON: {e}") from None
        for key in ("transcript", "words"):
            if key not in rec:
                raise StreamcharError(f"{json_path} lacks {key!r}; see the folder layout in streamchar.data.dataset")
        h, w = self.cfg.video.height, self.cfg.video.width
        dec = read_mp4(json_path.with_suffix(".mp4"), sample_rate=self.cfg.audio.sample_rate)
        if abs(dec.fps - self.cfg.stream.fps) > 0.01:
            raise StreamcharError(f"{json_path.with_suffix('.mp4')} runs at {dec.fps:g} fps; clips must be {self.cfg.stream.fps} fps")
        frames = np.stack([fit_frame(f, h, w) for f in dec.frames])
        ref = frames[0]
        if rec.get("reference_image"):
            ref_path = json_path.parent / rec["reference_image"]
            try:
                ref = fit_frame(np.asarray(Image.open(ref_path).convert("RGB")), h, w)
            except OSError as e:
                raise StreamcharError(f"{json_path}: cannot read its reference image {ref_path}: {e}") from None
        voice = None
        if rec.get("reference_voice"):
            v, vr = read_wav(json_path.parent / rec["reference_voice"])
            voice = resample(v, vr, self.cfg.audio.sample_rate)
        meta = {
            "clip_id": json_path.stem,
            "split": rec.get("split", "train"),
            "character_id": rec.get("character_id"),
            "transcript": rec["transcript"],
            "prompt": rec.get("prompt", ""),
            "words": rec["words"],
            "phonemes": rec.get("phonemes", []),
            "mouth_boxes": rec.get("mouth_boxes"),
        }
        return self._finish(frames, dec.audio, ref, voice, meta)
