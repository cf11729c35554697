"""Training the SynthTalk evaluation networks (`streamchar eval train-sync`, `eval train-identity`).

Both train in a few minutes on two cores from the train split's ground-truth clips; the log,
its curves, the command and the weights are written next to each other, like the codecs'.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

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


class _Logger:
    def __init__(self, run: Path, tag: str, command: str):
        from torch.utils.tensorboard import SummaryWriter

        run.mkdir(parents=True, exist_ok=True)
        (run / "train_log.jsonl").write_text("")
        if command:
            (run / "commands.txt").write_text(command + "\n")
        self.run, self.tag, self.writer, self.t0 = run, tag, SummaryWriter(str(run / "tensorboard")), time.perf_counter()

    def log(self, step: int, values: dict) -> None:
        row = {"step": step, **values, "steps_per_s": step / (time.perf_counter() - self.t0)}
        with open(self.run / "train_log.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        for k, v in values.items():
            self.writer.add_scalar(f"{self.tag}/{k}", v, step)

    def close(self) -> None:
        self.writer.close()


def train_sync(data: Path, run: Path, out: Path, steps: int = 3000, batch: int = 16, lr: float = 1e-3, max_clips: int = 300,
               seed: int = 0, on_step: Callable[[int, int, float], None] | None = None, command: str = "") -> dict:
    """Contrastive over offsets: for a video window, the aligned audio window must be the nearest
    of the 31 windows at offsets -15..15 (cross-entropy over negative distances)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    clips = []
    for r in _records(data, "train", max_clips):
        dec = read_mp4(Path(r["_dir"]) / r["files"]["video"])
        mfcc = mfcc_frames(dec.audio, dec.sample_rate)
        starts = window_starts(len(dec.frames), mfcc.shape[1], dec.fps)
        if len(starts) > 2 * VSHIFT + 1:
            clips.append((crop_region(dec.frames, MOUTH_REGION, MOUTH_SIZE).half(), mfcc, starts))
    if not clips:
        raise StreamcharError(f"no training clip in {data} is long enough for a ±{VSHIFT}-frame window")
    model = SynthTalkSyncNet()
    allm = np.concatenate([m for _, m, _ in clips], axis=1)
    model.mfcc_mean.copy_(torch.from_numpy(allm.mean(1)))
    model.mfcc_std.copy_(torch.from_numpy(allm.std(1) + 1e-3))
    scale = torch.nn.Parameter(torch.tensor(2.0))
    opt = torch.optim.AdamW([*model.parameters(), scale], lr=lr, weight_decay=1e-4)
    log = _Logger(run, "sync", command)
    model.train()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + np.cos(np.pi * step / steps))
        vids, auds = [], []
        for _ in range(batch):
            mouth, mfcc, starts = clips[int(rng.integers(len(clips)))]
            i = int(rng.integers(VSHIFT, len(starts) - VSHIFT))
            vids.append(mouth[i : i + 5].float())
            auds += [torch.from_numpy(mfcc[:, s : s + 20]) for s in starts[i - VSHIFT : i + VSHIFT + 1]]
        v = model.forward_lip(torch.stack(vids))
        a = model.forward_aud(torch.stack(auds)).reshape(batch, 2 * VSHIFT + 1, -1)
        dist = (v[:, None] - a).norm(dim=-1)
        loss = F.cross_entropy(-dist * scale, torch.full((batch,), VSHIFT))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 20 == 0 or step + 1 == steps:
            acc = (dist.argmin(1) == VSHIFT).float().mean().item()
            log.log(step + 1, {"loss": loss.item(), "top1": acc})
        if on_step:
            on_step(step + 1, steps, loss.item())
    log.close()
    model.eval()
    _save(model, out, {}, {"trained_steps": steps, "train_clips": len(clips), "command": command}, run, "SynthTalk sync network")
    return {"steps": steps, "clips": len(clips), "out": str(out)}


def train_identity(data: Path, run: Path, out: Path, steps: int = 2000, batch: int = 64, lr: float = 1e-3, max_clips: int = 400,
                   seed: int = 0, on_step: Callable[[int, int, float], None] | None = None, command: str = "") -> dict:
    """CosFace-style classification of the training characters (scale 16, margin 0.2); the
    threshold for "same character" is then set on the val split (see `_calibrate`)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    records = _records(data, "train", max_clips)
    ids = sorted({r["character_id"] for r in records})
    heads, labels = [], []
    for r in records:
        frames = read_mp4(Path(r["_dir"]) / r["files"]["video"]).frames[::6]
        heads.append(_pad_heads(frames))
        labels.append(np.full(len(frames), ids.index(r["character_id"])))
    x_all, y_all = torch.cat(heads), torch.from_numpy(np.concatenate(labels))
    model = SynthTalkIdentityNet(classes=len(ids))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    log = _Logger(run, "identity", command)
    model.train()
    h, w = HEAD_SIZE
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + np.cos(np.pi * step / steps))
        idx = torch.from_numpy(rng.integers(len(x_all), size=batch))
        dy, dx = rng.integers(0, 7, size=2)  # the head moves a few pixels in generated video too
        x = x_all[idx, :, dy : dy + h, dx : dx + w].float()
        x = x * float(rng.uniform(0.9, 1.1)) + float(rng.uniform(-0.05, 0.05))
        emb = model(x)
        cos = emb @ F.normalize(model.classifier, dim=1).T
        onehot = F.one_hot(y_all[idx], len(ids)).float()
        loss = F.cross_entropy(16 * (cos - 0.2 * onehot), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 20 == 0 or step + 1 == steps:
            log.log(step + 1, {"loss": loss.item(), "top1": (cos.argmax(1) == y_all[idx]).float().mean().item()})
        if on_step:
            on_step(step + 1, steps, loss.item())
    log.close()
    model.eval()
    calib = _calibrate(model, _records(data, "val", 200))
    model.threshold.fill_(calib["threshold"])
    _save(model, out, {"classes": len(ids)}, {"trained_steps": steps, "train_characters": len(ids), "calibration": calib, "command": command},
          run, "SynthTalk identity embedding")
    return {"steps": steps, "characters": len(ids), "calibration": calib, "out": str(out)}


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
