"""Training data of the tiny codecs: SynthTalk's training clips in memory, sampled as groups of
four frames (with what a stream decodes around them) for the video codec and as waveform
segments for the audio codec; for the paper preset's audio VAE, speech (SynthTalk's or a folder of
WAV/FLAC files) resampled to its rate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from streamchar.data.audio import read_wav, resample
from streamchar.data.inspect import load_records
from streamchar.data.mp4 import read_mp4
from streamchar.data.speech_corpus import SPEECH_FILES, read_speech_file, speech_files
from streamchar.data.synth import MANIFEST
from streamchar.errors import StreamcharError

IMAGES = ("groups", "masks", "references", "before", "before2", "after")  # VideoBatch's images, in a sample's order
FLAGS = ("has_before", "has_before2", "first", "before_blends_back", "has_after")  # VideoBatch's per-sample values


def train_records(data: Path, max_clips: int) -> list[dict]:
    records = [r for r in load_records(data) if r["split"] == "train"]
    if not records:
        raise StreamcharError(f"{data} has no training clips")
    return records[:max_clips]


@dataclass
class VideoBatch:
    """Groups of four frames (n, 12, H, W) with their mouth masks and their clips' reference
    images; with `previous`, the groups before them and whether there is one; with
    `decode_before`, also the groups before those (to decode the groups before as a stream does)
    and the index of each group's first frame that a stream shows (3 for a chunk's single-frame
    latent, else 0) and whether the group before blends its last frame toward this one's first (in
    a stream, whether neither is a chunk's single-frame latent); with `decode_after`, the groups
    after them in the same chunk and whether there is one."""

    groups: torch.Tensor
    masks: torch.Tensor
    references: torch.Tensor
    before: torch.Tensor | None = None
    has_before: torch.Tensor | None = None
    before2: torch.Tensor | None = None
    has_before2: torch.Tensor | None = None
    first: torch.Tensor | None = None
    before_blends_back: torch.Tensor | None = None
    after: torch.Tensor | None = None
    has_after: torch.Tensor | None = None


class VideoGroups:
    """Frames of the training clips in memory; samples groups of four frames (and single frames
    repeated, as the first latent of each chunk codes) with their mouth boxes."""

    def __init__(self, records: list[dict], rng: np.random.Generator, crop: int | None = None, grid: int = 16, mouth_crops: float = 0.0,
                 previous: bool = False, decode_before: bool = False, decode_after: bool = False):
        if (decode_before or decode_after) and not previous:
            raise StreamcharError("decoding the groups around each one needs the previous latent")
        self.previous, self.decode_before, self.decode_after = previous, decode_before, decode_after
        self.frames = [read_mp4(Path(r["_dir"]) / r["files"]["video"]).frames for r in records]
        self.references = [np.array(Image.open(Path(r["_dir"]) / r["files"]["reference_image"]).convert("RGB")) for r in records]
        self.boxes = [np.array(r["mouth_boxes"]) for r in records]
        self.rng = rng
        self.crop, self.grid, self.mouth_crops = crop, grid, mouth_crops
        if crop is not None and (crop % grid or crop > min(self.frames[0].shape[1:3])):
            raise StreamcharError(f"crop {crop} must be a multiple of {grid} and fit in the frames")

    def _previous(self, idx: list[int]) -> list[int] | None:
        """The frames of the latent before a group, as a stream lays them out: four frames before
        it; after a chunk's single-frame latent (one time in eight), that frame four times; none
        before a clip's start or, one time in twenty, as at a stream's start."""
        i = idx[0]
        if self.rng.random() < 0.05:
            return None
        if idx[1] != i and i >= 1 and self.rng.random() < 0.125:
            return [i - 1] * 4
        return list(range(i - 4, i)) if i >= 4 else None

    def _next(self, idx: list[int], length: int) -> list[int] | None:
        """The frames of the latent after a group in the same chunk; none for a chunk's
        single-frame latent (its frame is not blended toward the next, see
        TinyVideoCodec.blend_back), past a clip's end or, one time in eight, as after a chunk's
        last latent."""
        if idx[1] == idx[0] or idx[0] + 7 >= length or self.rng.random() < 0.125:
            return None
        return list(range(idx[0] + 4, idx[0] + 8))

    def _frames(self, f: np.ndarray, idx: list[int] | None, like: torch.Tensor) -> torch.Tensor:
        """Frames idx of a clip as one group (12, H, W); zeros for no group."""
        if idx is None:
            return torch.zeros_like(like)
        return (torch.from_numpy(f[idx]).permute(0, 3, 1, 2).float() / 127.5 - 1).reshape(12, *like.shape[-2:])

    def _group(self, length: int) -> list[int]:
        """Four frames in a row, or (a chunk's first latent) one frame four times."""
        if self.rng.random() < 0.15:
            return [int(self.rng.integers(length))] * 4
        i = int(self.rng.integers(max(1, length - 3)))
        return [min(i + j, length - 1) for j in range(4)]

    def _masks(self, k: int, idx: list[int], size: tuple[int, ...]) -> torch.Tensor:
        """The mouth boxes of a group's frames, as a (12, H, W) mask."""
        m = torch.zeros(4, 1, *size)
        for j, fi in enumerate(idx):
            x0, y0, x1, y1 = self.boxes[k][fi]
            m[j, :, y0:y1, x0:x1] = 1
        return m.expand(4, 3, *size).reshape(12, *size)

    def _neighbours(self, f: np.ndarray, idx: list[int], images: dict[str, torch.Tensor], flags: dict[str, list]) -> None:
        """The groups a stream decodes around this one, zeros where there is none, into `images`
        and `flags`."""
        g = images["groups"]
        prev = self._previous(idx)
        flags["has_before"].append(prev is not None)
        images["before"] = self._frames(f, prev, g)
        if self.decode_before:
            prev2 = self._previous(prev) if prev is not None else None
            flags["has_before2"].append(prev2 is not None)
            images["before2"] = self._frames(f, prev2, g)
            flags["first"].append(3 if idx[1] == idx[0] else 0)
            flags["before_blends_back"].append(prev is not None and prev[1] != prev[0] and idx[1] != idx[0])
        if self.decode_after:
            after = self._next(idx, len(f))
            flags["has_after"].append(after is not None)
            images["after"] = self._frames(f, after, g)

    def _crop(self, images: dict[str, torch.Tensor], k: int, idx: list[int]) -> dict[str, torch.Tensor]:
        """Crops start on the latent grid, so a crop is coded exactly as that part of a whole frame
        would be, away from the frame's edges; every image of a sample is cropped at the same place."""
        assert self.crop is not None
        h, w = images["groups"].shape[-2:]
        y = int(self.rng.integers((h - self.crop) // self.grid + 1)) * self.grid
        x = int(self.rng.integers((w - self.crop) // self.grid + 1)) * self.grid
        if self.rng.random() < self.mouth_crops:  # the grid-aligned crop nearest to centring the mouth
            x0, y0, x1, y1 = self.boxes[k][idx[0]]
            y = int(np.clip(round(((y0 + y1) / 2 - self.crop / 2) / self.grid), 0, (h - self.crop) // self.grid)) * self.grid
            x = int(np.clip(round(((x0 + x1) / 2 - self.crop / 2) / self.grid), 0, (w - self.crop) // self.grid)) * self.grid
        return {key: t[:, y : y + self.crop, x : x + self.crop] for key, t in images.items()}

    def batch(self, n: int, crop: bool = True) -> VideoBatch:
        """`n` samples, cropped when the source crops and `crop` asks for it."""
        stacks: dict[str, list[torch.Tensor]] = {key: [] for key in IMAGES}
        flags: dict[str, list] = {key: [] for key in FLAGS}
        for _ in range(n):
            k = int(self.rng.integers(len(self.frames)))
            f = self.frames[k]
            idx = self._group(len(f))
            g = self._frames(f, idx, torch.empty(12, *f.shape[1:3]))
            reference = torch.from_numpy(self.references[k]).permute(2, 0, 1).float() / 127.5 - 1
            images = {"groups": g, "masks": self._masks(k, idx, g.shape[-2:]), "references": reference}
            if self.previous:
                self._neighbours(f, idx, images, flags)
            if crop and self.crop is not None:
                images = self._crop(images, k, idx)
            for key, t in images.items():
                stacks[key].append(t)
        return VideoBatch(**{key: torch.stack(v) for key, v in stacks.items() if v}, **{key: torch.tensor(v) for key, v in flags.items() if v})


class AudioSegments:
    """Waveforms in memory (mono float32 at one rate), sampled as segments starting on the hop."""

    def __init__(self, audio: list[np.ndarray], rng: np.random.Generator):
        self.audio, self.rng = audio, rng

    @classmethod
    def from_records(cls, records: list[dict], sample_rate: int, rng: np.random.Generator) -> AudioSegments:
        """The clips' audio, which must be at `sample_rate` already (the tiny codecs code SynthTalk's own rate)."""
        audio = []
        for r in records:
            a, rate = read_wav(Path(r["_dir"]) / r["files"]["audio"])
            if rate != sample_rate:
                raise StreamcharError(f"{r['clip_id']}: audio at {rate} Hz, the codec codes {sample_rate} Hz")
            audio.append(a)
        return cls(audio, rng)

    def batch(self, n: int, length: int, hop: int) -> torch.Tensor:
        """`n` segments of `length` samples starting on the hop, zero-padded past a clip's end."""
        out = np.zeros((n, length), np.float32)
        for b in range(n):
            a = self.audio[int(self.rng.integers(len(self.audio)))]
            hops = max(1, (len(a) - length) // hop)
            s = int(self.rng.integers(hops)) * hop
            seg = a[s : s + length]
            out[b, : len(seg)] = seg
        return torch.from_numpy(out)


def speech_audio(data: Path, sample_rate: int, max_clips: int) -> tuple[list[np.ndarray], dict]:
    """Speech for an audio VAE at `sample_rate`: a SynthTalk set's training clips (its audio), or
    every WAV/FLAC file under a folder (sorted by path, the first `max_clips`), each resampled to
    `sample_rate`; with what was read (source, files, seconds, the rates found)."""
    data = Path(data)
    if (data / MANIFEST).exists():
        paths, source = [Path(r["_dir"]) / r["files"]["audio"] for r in train_records(data, max_clips)], "SynthTalk training clips"
    elif data.is_dir():
        paths, source = speech_files(data)[:max_clips], "audio files"
    else:
        raise StreamcharError(f"{data} is neither a SynthTalk set nor a folder")
    if not paths:
        raise StreamcharError(f"{data} holds no {', '.join(SPEECH_FILES)} files (nor a SynthTalk set's {MANIFEST})")
    audio, rates = [], set()
    for path in paths:
        a, rate = read_wav(path) if path.suffix.lower() == ".wav" and _is_pcm16(path) else read_speech_file(path)
        rates.add(rate)
        audio.append(resample(a, rate, sample_rate))
    seconds = sum(len(a) for a in audio) / sample_rate
    return audio, {"source": source, "data": str(data), "files": len(audio), "seconds": round(seconds, 1), "source_rates": sorted(rates)}


def _is_pcm16(path: Path) -> bool:
    import wave

    try:
        with wave.open(str(path), "rb") as w:
            return w.getsampwidth() == 2
    except (OSError, EOFError, wave.Error):
        return False
