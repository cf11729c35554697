"""Training the SynthTalk evaluation networks (`streamchar eval train-sync`, `eval train-identity`).

Both train in a few minutes on two cores from the train split's ground-truth clips, as objectives
of the one training loop (`training/loop.py`; resumable like the codecs); the log, its curves,
the command and the weights are written next to each other.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from streamchar.data.inspect import load_records
from streamchar.data.mp4 import read_mp4
from streamchar.errors import StreamcharError
from streamchar.evaluation.nets import (
    HEAD_REGION,
    HEAD_SIZE,
    MOUTH_REGION,
    MOUTH_SIZE,
    SynthTalkIdentityNet,
    SynthTalkSyncNet,
    crop_region,
)
from streamchar.evaluation.syncnet import mfcc_frames, window_starts
from streamchar.training.loop import LoopSettings, Objective, Part, Runtime, TrainLoop
from streamchar.training.records import export_training_record
from streamchar.utils.files import atomic_save_file, atomic_write_text

VSHIFT = 15


def _records(data: Path, split: str, max_clips: int) -> list[dict]:
    records = [r for r in load_records(Path(data)) if r["split"] == split][:max_clips]
    if not records:
        raise StreamcharError(f"{data} has no {split} clips")
    return records


def _save(model: torch.nn.Module, out: Path, config: dict, extra: dict, run: Path, title: str) -> None:
    atomic_save_file(model.state_dict(), out / "model.safetensors")
    atomic_write_text(out / "config.json", json.dumps({"name": model.name, "config": config, **extra}, indent=1))
    export_training_record(run, out, title)


class _NetStage(Objective):
    """What both networks share: AdamW (weight decay 1e-4), unclipped; their data drawn from one
    generator, kept in checkpoints."""

    def __init__(self, lr: float, seed: int):
        torch.manual_seed(seed)
        self.lr, self.rng = lr, np.random.default_rng(seed)


class _Contrast(nn.Module):
    """The sync network with the temperature of its contrast, trained together."""

    def __init__(self, net: SynthTalkSyncNet):
        super().__init__()
        self.net, self.scale = net, nn.Parameter(torch.tensor(2.0))


class SyncStage(_NetStage):
    """Contrastive over offsets: for a video window, the aligned audio window must be the nearest
    of the 31 windows at offsets -15..15 (cross-entropy over negative distances)."""

    tag = "sync"

    def __init__(self, data: Path, batch: int, lr: float, max_clips: int, seed: int):
        super().__init__(lr, seed)
        self.batch, self.clips = batch, []
        for r in _records(data, "train", max_clips):
            dec = read_mp4(Path(r["_dir"]) / r["files"]["video"])
            mfcc = mfcc_frames(dec.audio, dec.sample_rate)
            starts = window_starts(len(dec.frames), mfcc.shape[1], dec.fps)
            if len(starts) > 2 * VSHIFT + 1:
                self.clips.append((crop_region(dec.frames, MOUTH_REGION, MOUTH_SIZE).half(), mfcc, starts))
        if not self.clips:
            raise StreamcharError(f"no training clip in {data} is long enough for a ±{VSHIFT}-frame window")
        self.net = SynthTalkSyncNet()
        allm = np.concatenate([m for _, m, _ in self.clips], axis=1)
        self.net.mfcc_mean.copy_(torch.from_numpy(allm.mean(1)))
        self.net.mfcc_std.copy_(torch.from_numpy(allm.std(1) + 1e-3))
        self.module = _Contrast(self.net)

    def parts(self) -> dict[str, Part]:
        return {"model": Part(self.module, self.lr, weight_decay=1e-4)}

    def losses(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        vids, auds, rng = [], [], self.rng
        for _ in range(self.batch):
            mouth, mfcc, starts = self.clips[int(rng.integers(len(self.clips)))]
            i = int(rng.integers(VSHIFT, len(starts) - VSHIFT))
            vids.append(mouth[i : i + 5].float())
            auds += [torch.from_numpy(mfcc[:, s : s + 20]) for s in starts[i - VSHIFT : i + VSHIFT + 1]]
        v = self.net.forward_lip(torch.stack(vids))
        a = self.net.forward_aud(torch.stack(auds)).reshape(self.batch, 2 * VSHIFT + 1, -1)
        dist = (v[:, None] - a).norm(dim=-1)
        loss = F.cross_entropy(-dist * self.module.scale, torch.full((self.batch,), VSHIFT))
        return {"loss": loss, "top1": (dist.argmin(1) == VSHIFT).float().mean()}

    def export(self, loop: TrainLoop, out: Path, command: str = "") -> None:
        _save(self.net, out, {}, {"trained_steps": loop.s.steps, "train_clips": len(self.clips), "command": command}, loop.run,
              "SynthTalk sync network")


class IdentityStage(_NetStage):
    """CosFace-style classification of the training characters (scale 16, margin 0.2); the
    threshold for "same character" is then set on the val split (see `_calibrate`)."""

    tag = "identity"

    def __init__(self, data: Path, batch: int, lr: float, max_clips: int, seed: int):
        super().__init__(lr, seed)
        self.data, self.batch = data, batch
        records = _records(data, "train", max_clips)
        self.ids = sorted({r["character_id"] for r in records})
        heads, labels = [], []
        for r in records:
            frames = read_mp4(Path(r["_dir"]) / r["files"]["video"]).frames[::6]
            heads.append(_pad_heads(frames))
            labels.append(np.full(len(frames), self.ids.index(r["character_id"])))
        self.x_all, self.y_all = torch.cat(heads), torch.from_numpy(np.concatenate(labels))
        self.net = SynthTalkIdentityNet(classes=len(self.ids))

    def parts(self) -> dict[str, Part]:
        return {"model": Part(self.net, self.lr, weight_decay=1e-4)}

    def losses(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        h, w = HEAD_SIZE
        rng = self.rng
        idx = torch.from_numpy(rng.integers(len(self.x_all), size=self.batch))
        dy, dx = rng.integers(0, 7, size=2)  # the head moves a few pixels in generated video too
        x = self.x_all[idx, :, dy : dy + h, dx : dx + w].float()
        x = x * float(rng.uniform(0.9, 1.1)) + float(rng.uniform(-0.05, 0.05))
        cos = self.net(x) @ F.normalize(self.net.classifier, dim=1).T
        onehot = F.one_hot(self.y_all[idx], len(self.ids)).float()
        loss = F.cross_entropy(16 * (cos - 0.2 * onehot), self.y_all[idx])
        return {"loss": loss, "top1": (cos.argmax(1) == self.y_all[idx]).float().mean()}

    def export(self, loop: TrainLoop, out: Path, command: str = "") -> None:
        self.calibration = calib = _calibrate(self.net, _records(self.data, "val", 200))
        self.net.threshold.fill_(calib["threshold"])
        _save(self.net, out, {"classes": len(self.ids)},
              {"trained_steps": loop.s.steps, "train_characters": len(self.ids), "calibration": calib, "command": command},
              loop.run, "SynthTalk identity embedding")


def _train(stage: _NetStage, run: Path, out: Path, steps: int, on_step: Callable[[int, int, dict], None] | None, command: str) -> TrainLoop:
    loop = TrainLoop(stage, LoopSettings(steps=steps, warmup=100, log_every=20, save_every=500, keep_checkpoints=1), run,
                     Runtime.create(device="cpu"), command)  # fmt: skip
    loop.resume()
    loop.train(on_step=on_step)
    loop.export(out, command=command)
    return loop


def train_sync(data: Path, run: Path, out: Path, steps: int = 3000, batch: int = 16, lr: float = 1e-3, max_clips: int = 300,
               seed: int = 0, on_step: Callable[[int, int, dict], None] | None = None, command: str = "") -> dict:
    stage = SyncStage(data, batch, lr, max_clips, seed)
    _train(stage, run, out, steps, on_step, command)
    return {"steps": steps, "clips": len(stage.clips), "out": str(out)}


def train_identity(data: Path, run: Path, out: Path, steps: int = 2000, batch: int = 64, lr: float = 1e-3, max_clips: int = 400,
                   seed: int = 0, on_step: Callable[[int, int, dict], None] | None = None, command: str = "") -> dict:
    stage = IdentityStage(data, batch, lr, max_clips, seed)
    _train(stage, run, out, steps, on_step, command)
    return {"steps": steps, "characters": len(stage.ids), "calibration": stage.calibration, "out": str(out)}


def _pad_heads(frames: np.ndarray) -> torch.Tensor:
    """Head crops with 3 pixels of margin on each side for the random shifts of training."""
    h, w = HEAD_SIZE
    big = crop_region(frames, HEAD_REGION, (h + 6, w + 6))
    return big.half()


@torch.no_grad()
def _calibrate(model: SynthTalkIdentityNet, records: list[dict]) -> dict:
    """Threshold between the similarities of frames to their own reference image and to other
    characters' references (val split: seen characters, unseen sentences)."""
    refs, frames_emb, owners = {}, [], []
    for r in records:
        ref = np.asarray(Image.open(Path(r["_dir"]) / r["files"]["reference_image"]).convert("RGB"))[None]
        refs.setdefault(r["character_id"], model(crop_region(ref, HEAD_REGION, HEAD_SIZE))[0])
        f = read_mp4(Path(r["_dir"]) / r["files"]["video"]).frames[::12]
        frames_emb.append(model(crop_region(f, HEAD_REGION, HEAD_SIZE)))
        owners += [r["character_id"]] * len(f)
    emb = torch.cat(frames_emb)
    names = list(refs)
    sims = emb @ torch.stack([refs[n] for n in names]).T
    own = torch.tensor([names.index(o) for o in owners])
    same = sims[torch.arange(len(own)), own]
    mask = torch.ones_like(sims, dtype=torch.bool)
    mask[torch.arange(len(own)), own] = False
    other = sims[mask]
    lo, hi = float(torch.quantile(same, 0.02)), float(torch.quantile(other, 0.98))
    threshold = (lo + hi) / 2
    return {
        "threshold": threshold,
        "same_character_mean": float(same.mean()),
        "other_character_mean": float(other.mean()),
        "same_above_threshold": float((same >= threshold).float().mean()),
        "other_below_threshold": float((other < threshold).float().mean()),
        "val_clips": len(records),
    }
