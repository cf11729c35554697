"""Training the tiny codecs on SynthTalk (`streamchar codec train --kind video|audio`).

Resumable: a checkpoint (model, optimizer, step, RNG) is written atomically every
`save_every` steps to `<run>/checkpoint/`; rerunning the same command continues from it.
At the end, per-channel latent statistics are measured on training data and stored with
the weights, and the codec is written to `--out`.

`decoder_only` (with `init`) trains the decoder alone: the encoder's weights and latent
statistics stay bit for bit those of `init`, so a latent cache and every model trained on it
stay valid while the decoder gets better at turning the same latents into frames or samples.
`anchor` (with `init`, the encoder training too) lets the encoder move only as far as a
penalty on its latents' distance from `init`'s allows, and keeps `init`'s latent statistics:
the encoder may code more detail while models trained on `init`'s latents still read its own.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from streamchar.codecs.base import per_channel
from streamchar.codecs.store import save_codec
from streamchar.utils.files import atomic_save_file, atomic_write_text
from streamchar.codecs.tiny import TinyAudioCodec, TinyAudioConfig, TinyVideoCodec, TinyVideoConfig
from streamchar.config import Config
from streamchar.data.audio import read_wav
from streamchar.data.inspect import load_records
from streamchar.data.mp4 import read_mp4
from streamchar.errors import StreamcharError


@dataclass
class TrainSettings:
    steps: int
    batch: int
    lr: float
    seed: int = 0
    save_every: int = 200
    log_every: int = 20
    max_clips: int = 400
    latent_noise: float = 0.05
    crop: int | None = 64  # video: train on square crops this size, aligned to the latent grid
    mouth_crops: float = 0.0  # video: share of crops placed over the mouth (the detail a small crop rarely holds whole)
    threads: int | None = None
    init: str | None = None  # start from this codec's weights (a shipped name or a directory)
    decoder_only: bool = False  # train the decoder alone; the encoder and latent statistics stay init's
    reference: bool = False  # video: the decoder reads the reference image too (see TinyVideoCodec)
    previous_latent: bool = False  # video: the decoder reads the latent before each one too
    seam_loss: float = 0.0  # video, with previous_latent: weight of the loss on the decoded frame-to-frame change (temporal_loss)
    frame_blend: bool = False  # video, with previous_latent: the decoder blends each latent's frames toward the frame before (TinyVideoCodec.blend)
    blend_next: bool = False  # video, onto a codec that blends: each latent's last frame blends toward the next one's first (TinyVideoCodec.blend_back)
    reblend: bool = False  # video, with frame_blend onto a codec that blends next: the first frames blend again (TinyVideoCodec reblend_first_frames)
    anchor: float = 0.0  # with init, encoder trained: weight of a loss on the latents' move from init's (in init's latent std); statistics stay init's


REFERENCE_CHANNELS = (32, 64, 128)  # H/2, H/4, H/8: fine detail; the latents hold H/16 (and the codec stays under 10 MB)


def _cosine(step: int, total: int, warmup: int, lr: float) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


def _train_records(data: Path, max_clips: int) -> list[dict]:
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

    def batch(self, n: int, crop: bool = True) -> VideoBatch:
        """Crops (when set and `crop`) start on the latent grid, so a crop is coded exactly as
        that part of a whole frame would be, away from the frame's edges; the reference and the
        groups before are cropped at the same place."""
        images: dict[str, list[torch.Tensor]] = {"groups": [], "masks": [], "refs": [], "before": [], "before2": [], "after": []}
        has, has2, first, back, has_after = [], [], [], [], []
        for _ in range(n):
            k = int(self.rng.integers(len(self.frames)))
            f = self.frames[k]
            if self.rng.random() < 0.15:
                i = int(self.rng.integers(len(f)))
                idx = [i] * 4
            else:
                i = int(self.rng.integers(max(1, len(f) - 3)))
                idx = [min(i + j, len(f) - 1) for j in range(4)]
            g = self._frames(f, idx, torch.empty(12, *f.shape[1:3]))  # (12, H, W)
            m = torch.zeros(4, 1, *g.shape[-2:])
            for j, fi in enumerate(idx):
                x0, y0, x1, y1 = self.boxes[k][fi]
                m[j, :, y0:y1, x0:x1] = 1
            m = m.expand(4, 3, *g.shape[-2:]).reshape(12, *g.shape[-2:])
            r = torch.from_numpy(self.references[k]).permute(2, 0, 1).float() / 127.5 - 1
            named = {"groups": g, "masks": m, "refs": r}  # every image of one sample, cropped alike
            if self.previous:  # the group before, zeros where there is none
                prev = self._previous(idx)
                has.append(prev is not None)
                named["before"] = self._frames(f, prev, g)
                if self.decode_before:
                    prev2 = self._previous(prev) if prev is not None else None
                    has2.append(prev2 is not None)
                    named["before2"] = self._frames(f, prev2, g)
                    first.append(3 if idx[1] == idx[0] else 0)
                    back.append(prev is not None and prev[1] != prev[0] and idx[1] != idx[0])
                if self.decode_after:
                    after = self._next(idx, len(f))
                    has_after.append(after is not None)
                    named["after"] = self._frames(f, after, g)
            if crop and self.crop is not None:
                h, w = g.shape[-2:]
                y = int(self.rng.integers((h - self.crop) // self.grid + 1)) * self.grid
                x = int(self.rng.integers((w - self.crop) // self.grid + 1)) * self.grid
                if self.rng.random() < self.mouth_crops:  # the grid-aligned crop nearest to centring the mouth
                    x0, y0, x1, y1 = self.boxes[k][idx[0]]
                    y = int(np.clip(round(((y0 + y1) / 2 - self.crop / 2) / self.grid), 0, (h - self.crop) // self.grid)) * self.grid
                    x = int(np.clip(round(((x0 + x1) / 2 - self.crop / 2) / self.grid), 0, (w - self.crop) // self.grid)) * self.grid
                named = {key: t[:, y : y + self.crop, x : x + self.crop] for key, t in named.items()}
            for key, t in named.items():
                images[key].append(t)
        out = VideoBatch(torch.stack(images["groups"]), torch.stack(images["masks"]), torch.stack(images["refs"]))
        if self.previous:
            out.before, out.has_before = torch.stack(images["before"]), torch.tensor(has)
        if self.decode_before:
            out.before2, out.has_before2, out.first = torch.stack(images["before2"]), torch.tensor(has2), torch.tensor(first)
            out.before_blends_back = torch.tensor(back)
        if self.decode_after:
            out.after, out.has_after = torch.stack(images["after"]), torch.tensor(has_after)
        return out


class AudioSegments:
    def __init__(self, records: list[dict], sample_rate: int, rng: np.random.Generator):
        self.audio = []
        for r in records:
            a, rate = read_wav(Path(r["_dir"]) / r["files"]["audio"])
            if rate != sample_rate:
                raise StreamcharError(f"{r['clip_id']}: audio at {rate} Hz, the codec codes {sample_rate} Hz")
            self.audio.append(a)
        self.rng = rng

    def batch(self, n: int, length: int, hop: int) -> torch.Tensor:
        out = np.zeros((n, length), np.float32)
        for b in range(n):
            a = self.audio[int(self.rng.integers(len(self.audio)))]
            hops = max(1, (len(a) - length) // hop)
            s = int(self.rng.integers(hops)) * hop
            seg = a[s : s + length]
            out[b, : len(seg)] = seg
        return torch.from_numpy(out)


def stft_loss(pred: torch.Tensor, target: torch.Tensor, sizes: tuple[int, ...] = (256, 512, 1024, 2048)) -> torch.Tensor:
    """Multi-resolution STFT loss: spectral convergence + log-magnitude L1.

    The magnitude floor (1e-2, about -75 dB below a full-scale tone's peak bin at n = 1024)
    keeps SynthTalk's digital silence from dominating the log term."""
    loss = pred.new_zeros(())
    for n in sizes:
        win = torch.hann_window(n, device=pred.device)
        P = torch.stft(pred, n, n // 4, window=win, return_complex=True).abs() + 1e-2
        T = torch.stft(target, n, n // 4, window=win, return_complex=True).abs() + 1e-2
        loss = loss + torch.linalg.norm(P - T) / torch.linalg.norm(T) + (P.log() - T.log()).abs().mean()
    return loss / len(sizes)


def _neighbour_latents(model: TinyVideoCodec, groups: torch.Tensor, has: torch.Tensor, noise: float) -> torch.Tensor:
    """Raw latents of the groups before or after, as noisy as the current ones; the mean latent where there is none."""
    with torch.no_grad():
        raw = model.encode_groups(groups)
    raw = raw + noise * raw.std() * torch.randn_like(raw)
    return torch.where(has.view(-1, 1, 1, 1), raw, model.mean_latent(raw))


def _anchored(model: torch.nn.Module, target: torch.Tensor, raw: torch.Tensor, weight: float, parts: dict) -> torch.Tensor:
    """`weight` times the mean squared move of the raw latents from `target` (the anchor
    encoder's), per channel in the latent std: what a model trained on the anchor's normalised
    latents sees move. The move's root mean square is logged as `drift`."""
    drift = ((raw - target) / per_channel(model.latents_std, raw)).square().mean()  # type: ignore[arg-type]
    parts["drift"] = drift.sqrt().item()
    return weight * drift


def temporal_loss(y: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, first: torch.Tensor, shown_before: torch.Tensor,
                  true_before: torch.Tensor, has_before: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Decoded frame-to-frame change against the true change, squared: between the frames of a
    group, and from the frame shown before it (`shown_before`, (n, 3, H, W), decoded as a stream
    decodes it) to the group's first shown frame. A loss on each frame alone leaves the error of
    one latent's frames free to differ from its neighbour's, so a stream steps at every latent (six
    times a second); this asks neighbouring errors to agree. Squared, because an absolute error
    is least for no change wherever the change is uncertain (a still picture that jumps). Weighted
    like the reconstruction: the whole crop, and the mouth four times over."""
    n, _, h, w = y.shape
    y4, x4, m4 = (t.reshape(n, 4, 3, h, w) for t in (y, x, mask))
    rows = torch.arange(n)
    inside = ((y4[:, 1:] - y4[:, :-1]) - (x4[:, 1:] - x4[:, :-1])).square()  # (n, 3, 3, H, W)
    step = ((y4[rows, first] - shown_before) - (x4[rows, first] - true_before)).square()
    err = torch.cat([inside, step[:, None]], dim=1)  # (n, 4, 3, H, W)
    valid = torch.cat([torch.ones(n, 3), has_before.float()[:, None]], dim=1).view(n, 4, 1, 1, 1).expand_as(err)
    mouth = torch.cat([m4[:, 1:], m4[rows, first][:, None]], dim=1) * valid
    loss = (err * valid).sum() / valid.sum() + 4 * (err * mouth).sum() / mouth.sum().clamp(min=1)
    parts = {"change_inside": inside.mean().item(),
             "change_step": ((step.mean(dim=(1, 2, 3)) * has_before).sum() / has_before.sum().clamp(min=1)).item()}
    return loss, parts


def _save_checkpoint(run: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int, rng: np.random.Generator) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for i, st in opt.state_dict()["state"].items():
        for name, v in st.items():
            tensors[f"opt.{i}.{name}"] = v if torch.is_tensor(v) else torch.tensor(v)
    atomic_save_file(tensors, run / "checkpoint" / "state.safetensors")
    atomic_write_text(run / "checkpoint" / "progress.json", json.dumps({"step": step, "rng": rng.bit_generator.state}, default=int))


def _load_checkpoint(run: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, rng: np.random.Generator) -> int:
    path = run / "checkpoint" / "state.safetensors"
    prog = run / "checkpoint" / "progress.json"
    if not path.exists() or not prog.exists():
        return 0
    try:
        tensors = load_file(path)
        progress = json.loads(prog.read_text())
    except Exception as e:  # noqa: BLE001 - any damage means the same thing to the user
        raise StreamcharError(f"checkpoint in {run / 'checkpoint'} is damaged ({e}); delete it to start over") from None
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state = opt.state_dict()
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            state["state"].setdefault(int(i), {})[name] = v
    opt.load_state_dict(state)
    rng.bit_generator.state = progress["rng"]
    return int(progress["step"])


def train_codec(
    kind: str,
    data: Path,
    run: Path,
    out: Path,
    cfg: Config,
    settings: TrainSettings,
    on_step: Callable[[int, int, float], None] | None = None,
    command: str = "",
) -> dict:
    """Train (or resume training) a tiny codec; returns a summary. `command` is recorded beside
    the weights so that the shipped codec says how it was made."""
    from torch.utils.tensorboard import SummaryWriter

    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    records = _train_records(Path(data), settings.max_clips)
    if kind not in ("video", "audio"):
        raise StreamcharError(f"unknown codec kind {kind!r}; accepted: video, audio")
    if (settings.reference or settings.previous_latent or settings.seam_loss or settings.frame_blend or settings.blend_next) and kind != "video":
        raise StreamcharError("--reference, --previous-latent, --seam-loss, --frame-blend and --blend-next are for the video codec")
    if settings.seam_loss < 0:
        raise StreamcharError(f"--seam-loss is a weight, at least 0; got {settings.seam_loss}")
    if (settings.seam_loss or settings.frame_blend or settings.blend_next) and not settings.previous_latent:
        raise StreamcharError("--seam-loss, --frame-blend and --blend-next decode the latents around each one as a stream does: "
                              "give --previous-latent too")
    if settings.reblend and not settings.frame_blend:
        raise StreamcharError("--reblend blends the first frames again with the forward gates, which it trains for that: give --frame-blend too")
    if (settings.frame_blend or settings.blend_next) and not settings.decoder_only:
        raise StreamcharError("--frame-blend and --blend-next train blend gates onto --init's decoder and keep the rest: give --decoder-only --init too")
    init = None
    if settings.init is not None:
        from streamchar.codecs.store import load_codec

        init = load_codec(settings.init)
        if init.kind != f"tiny-{kind}":
            raise StreamcharError(f"--init {settings.init} is a {init.kind} codec, not a tiny {kind} codec")
    elif settings.decoder_only:
        raise StreamcharError("decoder-only training keeps an existing codec's encoder: give --init (tiny-video, tiny-audio or a directory)")
    if settings.anchor < 0:
        raise StreamcharError(f"--anchor is a weight, at least 0; got {settings.anchor}")
    if settings.anchor and (init is None or settings.decoder_only):
        raise StreamcharError("--anchor holds a training encoder near --init's: give --init, without --decoder-only")
    if kind == "video":
        vc = init.config if init is not None else TinyVideoConfig(cfg.video.height, cfg.video.width, cfg.video.latent_channels)
        if settings.reference and vc.reference_channels is None:  # type: ignore[union-attr]
            vc = replace(vc, reference_channels=REFERENCE_CHANNELS)  # type: ignore[type-var]
        if settings.previous_latent:
            vc = replace(vc, previous_latent=True)  # type: ignore[type-var]
        if settings.frame_blend:
            vc = replace(vc, blend_previous_frame=True)  # type: ignore[type-var]
        if settings.blend_next:
            if not vc.blend_previous_frame:  # type: ignore[union-attr]
                raise StreamcharError("--blend-next blends toward the next latent's first frame, which blends toward the frame before: "
                                      "give a codec trained with --frame-blend as --init, or --frame-blend too")
            vc = replace(vc, blend_next_frame=True)  # type: ignore[type-var]
        if settings.reblend:
            if not vc.blend_next_frame:  # type: ignore[union-attr]
                raise StreamcharError("--reblend blends the first frames again toward the frame before once it has blended toward them: "
                                      "give a codec trained with --blend-next as --init, or --blend-next too")
            vc = replace(vc, reblend_first_frames=True)  # type: ignore[type-var]
        model: torch.nn.Module = TinyVideoCodec(vc)  # type: ignore[arg-type]
    else:
        model = TinyAudioCodec(init.config if init is not None else TinyAudioConfig(cfg.audio.sample_rate, cfg.audio.hop_length, cfg.audio.latent_channels))  # type: ignore[arg-type]
    if init is not None:
        missing, unexpected = model.load_state_dict(init.state_dict(), strict=False)
        if unexpected or any(not k.startswith(("ref_", "prev_in.", "blend_gates.", "blend_back_gates.")) for k in missing):  # only new decoder inputs start untrained
            raise StreamcharError(f"--init {settings.init} does not fit (missing {missing[:3]}, unexpected {unexpected[:3]})")
    if settings.decoder_only:
        model.enc.requires_grad_(False)  # type: ignore[union-attr]
    anchor = copy.deepcopy(model).requires_grad_(False) if settings.anchor else None  # init's codec, frozen
    # the gates alone: trained with a blend, the decoder learned to overshoot frames to make up for it
    gates = [name for name, on in (("blend_gates", settings.frame_blend), ("blend_back_gates", settings.blend_next)) if on]
    if gates:
        model.requires_grad_(False)
        for name in gates:
            getattr(model, name).requires_grad_(True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr, weight_decay=0.0)
    run.mkdir(parents=True, exist_ok=True)
    if command:
        with open(run / "commands.txt", "a") as f:
            f.write(command + "\n")
    start = _load_checkpoint(run, model, opt, rng)
    source = (VideoGroups(records, rng, settings.crop, mouth_crops=settings.mouth_crops, previous=settings.previous_latent,
                          decode_before=settings.seam_loss > 0 or settings.frame_blend or settings.blend_next,
                          decode_after=settings.blend_next) if kind == "video"
              else AudioSegments(records, cfg.audio.sample_rate, rng))
    writer = SummaryWriter(str(run / "tensorboard"))
    log_path = run / "train_log.jsonl"
    model.train()
    t0, last = time.perf_counter(), {}
    for step in range(start, settings.steps):
        lr = _cosine(step, settings.steps, min(200, settings.steps // 10 + 1), settings.lr)
        for g in opt.param_groups:
            g["lr"] = lr
        if kind == "video":
            b = source.batch(settings.batch)  # type: ignore[union-attr]
            x, mask = b.groups, b.masks
            raw = model.encode_groups(x)  # type: ignore[operator]
            noisy = raw + settings.latent_noise * raw.detach().std() * torch.randn_like(raw)
            prev = _neighbour_latents(model, b.before, b.has_before, settings.latent_noise) if b.before is not None else None  # type: ignore[arg-type]
            ref = model.reference_features(b.references) if model.needs_reference else None  # type: ignore[operator]
            y, features = model.decode_groups(noisy, ref, prev)  # type: ignore[operator]
            if b.before2 is not None:  # the frame a stream shows before each group; at a stream's start its own
                prev2 = _neighbour_latents(model, b.before2, b.has_before2, settings.latent_noise)  # type: ignore[arg-type]
                with torch.no_grad():  # the group before, decoded as a stream decodes it (a single-frame one left unblended)
                    y_before, f_before = model.decode_groups(prev, ref, prev2)  # type: ignore[operator]
                shown_before = torch.where(b.has_before.view(-1, 1, 1, 1), y_before[:, 9:12], y[:, 9:12].detach()).clamp(-1, 1)  # type: ignore[union-attr]
                if features is not None and model.reblends:  # the frame before as shown: blended toward this group's first blend
                    with torch.no_grad():
                        once = model.blend(y, features, shown_before, b.first == 3)[:, 0:3].clamp(-1, 1)  # type: ignore[operator]
                        blended = model.blend_back(y_before, f_before, once)[:, 9:12].clamp(-1, 1)  # type: ignore[operator]
                    shown_before = torch.where(b.before_blends_back.view(-1, 1, 1, 1), blended, shown_before)  # type: ignore[union-attr]
                if features is not None:
                    y = model.blend(y, features, shown_before, b.first == 3)  # type: ignore[operator]
                if b.after is not None:  # the group's last frame toward the next group's first, blended as a stream blends it
                    with torch.no_grad():
                        raw_after = _neighbour_latents(model, b.after, b.has_after, settings.latent_noise)  # type: ignore[arg-type]
                        y_after, f_after = model.decode_groups(raw_after, ref, noisy)  # type: ignore[operator]
                        none = torch.zeros(len(y_after), dtype=torch.bool)
                        following = model.blend(y_after, f_after, y[:, 9:12].clamp(-1, 1), none)[:, 0:3].clamp(-1, 1)  # type: ignore[operator]
                    y = torch.where(b.has_after.view(-1, 1, 1, 1), model.blend_back(y, features, following), y)  # type: ignore[operator,union-attr]
            err = (y - x).abs()
            rec = err.mean() + 4 * (err * mask).sum() / mask.sum().clamp(min=1) + F.mse_loss(y, x)
            loss = rec + 1e-4 * raw.pow(2).mean()
            parts = {"l1": err.mean().item(), "psnr": (10 * torch.log10(4 / F.mse_loss(y.clamp(-1, 1), x))).item()}
            if settings.seam_loss:
                seam, seam_parts = temporal_loss(y, x, mask, b.first, shown_before, b.before[:, 9:12], b.has_before)  # type: ignore[arg-type,index]
                loss = loss + settings.seam_loss * seam
                parts.update(seam_parts)
        else:
            x = source.batch(settings.batch, cfg.audio.sample_rate, cfg.audio.hop_length)  # type: ignore[union-attr]
            raw = model.encode_raw(x)  # type: ignore[operator]
            noisy = raw + settings.latent_noise * raw.detach().std() * torch.randn_like(raw)
            logmag, phase, _ = model.decode_frames(noisy)  # type: ignore[operator]
            y, _ = model.synthesize(logmag, phase, None)  # type: ignore[operator]
            frames = (logmag - model.analysis(x)).abs().mean()  # type: ignore[operator]
            spec = stft_loss(y, x)
            loss = frames + spec + 1e-4 * raw.pow(2).mean()
            parts = {"frames": frames.item(), "stft": spec.item()}
        if anchor is not None:  # both codecs: `raw` is what the anchor's encoder would give for `x`
            with torch.no_grad():
                target = (anchor.encode_groups if kind == "video" else anchor.encode_raw)(x)  # type: ignore[operator]
            loss = loss + _anchored(model, target, raw, settings.anchor, parts)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        done = step + 1
        if done % settings.log_every == 0 or done == settings.steps:
            rate = (done - start) / (time.perf_counter() - t0)
            last = {"step": done, "loss": loss.item(), "lr": lr, "steps_per_s": rate, **parts}
            with open(log_path, "a") as f:
                f.write(json.dumps(last) + "\n")
            for k, v in last.items():
                if k != "step":
                    writer.add_scalar(f"{kind}/{k}", v, done)
        if on_step:
            on_step(done, settings.steps, loss.item())
        if done % settings.save_every == 0 or done == settings.steps:
            _save_checkpoint(run, model, opt, done, rng)
    writer.close()
    model.eval()
    meta = {"stage": "decoder" if settings.decoder_only else kind, "trained_steps": settings.steps, "train_clips": len(records),
            "data": str(data), "command": command}
    if settings.decoder_only:
        meta["decoder_only_from"] = settings.init
    elif settings.anchor:
        meta.update(anchored_to=settings.init, anchor=settings.anchor)  # statistics stay init's, loaded with its weights
    else:
        _set_latent_statistics(model, source, kind, cfg)
    save_codec(model, out, meta)  # type: ignore[arg-type]
    export_training_record(run, out, f"tiny {kind} codec")
    if settings.init is not None:
        from streamchar.codecs.store import codec_path

        carry_training_record(codec_path(settings.init), out)
    return {"steps": settings.steps, "resumed_from": start, "last": last, "out": str(out)}


def export_training_record(run: Path, out: Path, title: str) -> None:
    """The training log and its curves go next to the weights."""
    from streamchar.utils.plots import plot_training_log

    log = run / "train_log.jsonl"
    atomic_write_text(out / "train_log.jsonl", log.read_text())
    if (run / "commands.txt").exists():
        atomic_write_text(out / "commands.txt", (run / "commands.txt").read_text())
    plot_training_log(log, out / "training_curves.png", title)


def carry_training_record(init: Path, out: Path) -> None:
    """A model trained from another keeps that one's record too, prefixed with its stage
    (`orchestrator-train_log.jsonl`, ...; a second run of a stage already carried is `joint2-`),
    and the records that one carried from its own start, so the shipped folder tells the whole story."""
    meta = json.loads((init / "config.json").read_text()) if (init / "config.json").is_file() else {}
    stage = str(meta.get("stage", "init"))
    carried = {p.name.split("-", 1)[0] for p in init.glob("*-train_log.jsonl")}
    prefix, n = stage, 1
    while prefix in carried:
        n += 1
        prefix = f"{stage}{n}"
    for name in ("train_log.jsonl", "commands.txt", "training_curves.png"):
        for src in sorted(init.glob(f"*{name}")):
            target = f"{prefix}-{name}" if src.name == name else src.name
            tmp = out / f".{target}.tmp"
            tmp.write_bytes(src.read_bytes())
            os.replace(tmp, out / target)


@torch.no_grad()
def _set_latent_statistics(model: torch.nn.Module, source: VideoGroups | AudioSegments, kind: str, cfg: Config) -> None:
    """Per-channel mean and std of the raw latents over training data, stored as buffers."""
    samples = []
    for _ in range(8):
        if kind == "video":
            x = source.batch(16, crop=False).groups  # type: ignore[union-attr]
            raw = model.encode_groups(x)  # type: ignore[operator]
            samples.append(raw.permute(1, 0, 2, 3).reshape(raw.shape[1], -1))
        else:
            x = source.batch(8, 4 * cfg.audio.sample_rate, cfg.audio.hop_length)  # type: ignore[union-attr]
            raw = model.encode_raw(x)  # type: ignore[operator]
            samples.append(raw.permute(1, 0, 2).reshape(raw.shape[1], -1))
    allz = torch.cat(samples, dim=1)
    model.latents_mean.copy_(allz.mean(dim=1))  # type: ignore[operator]
    model.latents_std.copy_(allz.std(dim=1).clamp(min=1e-4))  # type: ignore[operator]
