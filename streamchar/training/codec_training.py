"""Training the tiny codecs on SynthTalk (`streamchar codec train --kind video|audio`).

Resumable: a checkpoint (model, optimizer, step, RNG) is written atomically every
`save_every` steps to `<run>/checkpoint/`; rerunning the same command continues from it.
At the end, per-channel latent statistics are measured on training data and stored with
the weights, and the codec is written to `--out`.

The shipped video codec was made in steps, each starting from the last (`--init`): its
encoder first, then, with `--decoder-only`, decoders that add a part each (`--reference`,
`--previous-latent`, the blend gates of `--frame-blend`, `--blend-next`, `--reblend`); the
encoder's weights and latent statistics stay bit for bit those of `--init`, so a latent cache
and every model trained on it stay valid while the decoder gets better at turning the same
latents into frames. `--anchor` (with `--init`, the encoder training too) lets the encoder move
only as far as a penalty on its latents' distance from `--init`'s allows, and keeps `--init`'s
latent statistics: the encoder may code more detail while models trained on `--init`'s latents
still read its own.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from streamchar.codecs.store import codec_path, load_codec, save_codec
from streamchar.codecs.tiny import TinyAudioCodec, TinyAudioConfig, TinyVideoCodec, TinyVideoConfig
from streamchar.config import Config
from streamchar.errors import StreamcharError
from streamchar.training.codec_data import AudioSegments, VideoGroups, train_records
from streamchar.training.codec_objectives import AudioObjective, CodecObjective, VideoObjective
from streamchar.training.records import carry_training_record, export_training_record
from streamchar.utils.files import atomic_save_file, atomic_write_text

SEED = 0
REFERENCE_CHANNELS = (32, 64, 128)  # H/2, H/4, H/8: fine detail; the latents hold H/16 (and the codec stays under 10 MB)


@dataclass
class TrainSettings:
    steps: int
    batch: int
    lr: float
    save_every: int = 200
    log_every: int = 20
    max_clips: int = 400
    crop: int | None = 64  # video: train on square crops this size, aligned to the latent grid
    mouth_crops: float = 0.0  # video: share of crops placed over the mouth (the detail a small crop rarely holds whole)
    threads: int | None = None
    init: str | None = None  # start from this codec's weights (a shipped name or a directory)
    decoder_only: bool = False  # train the decoder alone; the encoder and latent statistics stay init's
    reference: bool = False  # video: the decoder reads the reference image too
    previous_latent: bool = False  # video: the decoder reads the latent before each one too
    frame_blend: bool = False  # video: train the gates that blend each latent's frames toward the frame before (alone)
    blend_next: bool = False  # video: and those that blend each latent's last frame toward the next one's first
    reblend: bool = False  # video: and blend the first frames again toward the frame before as then shown
    seam_loss: float = 0.0  # video: weight of the loss on the decoded frame-to-frame change (temporal_loss)
    anchor: float = 0.0  # weight of a loss on the latents' move from init's (in init's latent std); statistics stay init's


# each video flag adds a part to the decoder: (flag, TinyVideoConfig field, its value)
VIDEO_PARTS = (("reference", "reference_channels", REFERENCE_CHANNELS), ("previous_latent", "previous_latent", True),
               ("frame_blend", "blend_previous_frame", True), ("blend_next", "blend_next_frame", True), ("reblend", "reblend_first_frames", True))
VIDEO_ONLY = (*(part[0] for part in VIDEO_PARTS), "seam_loss")
# (flag, the flag it needs, why)
NEEDS = (
    ("decoder_only", "init", "it keeps an existing codec's encoder (tiny-video, tiny-audio or a directory)"),
    ("anchor", "init", "it holds a training encoder near --init's"),
    ("frame_blend", "previous_latent", "the gates must know where the frame before came from"),
    ("frame_blend", "decoder_only", "the blend gates are trained alone, onto --init's decoder"),
    ("blend_next", "frame_blend", "the next latent's first frame is blended toward this one first"),
    ("reblend", "blend_next", "the first frames are blended again once the frame before has blended toward them"),
    ("seam_loss", "frame_blend", "the frame-to-frame change is measured on frames blended as a stream blends them"),
)
GATES = (("frame_blend", "blend_gates"), ("blend_next", "blend_back_gates"))  # the modules a flag trains alone
NEW_INPUTS = ("ref_", "prev_in.", "blend_gates.", "blend_back_gates.")  # decoder parts that may start untrained, missing from --init


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_settings(kind: str, s: TrainSettings) -> None:
    """Settings that cannot work, refused before anything is read or written."""
    if kind not in ("video", "audio"):
        raise StreamcharError(f"unknown codec kind {kind!r}; accepted: video, audio")
    if s.steps <= 0 or s.batch <= 0 or s.lr <= 0:
        raise StreamcharError("--steps, --batch and --lr must be positive")
    if (s.crop is not None and s.crop <= 0) or not 0 <= s.mouth_crops <= 1:
        raise StreamcharError("--crop must be positive (0 on the command line: whole frames), --mouth-crops in [0, 1]")
    for name in ("seam_loss", "anchor"):
        if getattr(s, name) < 0:
            raise StreamcharError(f"{_flag(name)} is a weight, at least 0; got {getattr(s, name)}")
    if kind != "video" and any(getattr(s, name) for name in VIDEO_ONLY):
        raise StreamcharError(f"{', '.join(map(_flag, VIDEO_ONLY))} are for the video codec")
    for name, needs, why in NEEDS:
        if getattr(s, name) and not getattr(s, needs):
            raise StreamcharError(f"{_flag(name)} needs {_flag(needs)} too: {why}")
    if s.anchor and s.decoder_only:
        raise StreamcharError("--anchor holds a training encoder near --init's: not with --decoder-only, which freezes it")


def build_codec(kind: str, cfg: Config, s: TrainSettings) -> TinyVideoCodec | TinyAudioCodec:
    """A new codec, or `--init`'s with the parts the flags add (which start untrained)."""
    init = load_codec(s.init) if s.init is not None else None
    if init is not None and init.kind != f"tiny-{kind}":
        raise StreamcharError(f"--init {s.init} is a {init.kind} codec, not a tiny {kind} codec")
    model: TinyVideoCodec | TinyAudioCodec
    if kind == "video":
        vc = init.config if isinstance(init, TinyVideoCodec) else TinyVideoConfig(cfg.video.height, cfg.video.width, cfg.video.latent_channels)
        model = TinyVideoCodec(replace(vc, **{field: value for flag, field, value in VIDEO_PARTS if getattr(s, flag) and not getattr(vc, field)}))
    else:
        model = TinyAudioCodec(init.config if isinstance(init, TinyAudioCodec) else TinyAudioConfig(cfg.audio.sample_rate, cfg.audio.hop_length,
                                                                                                    cfg.audio.latent_channels))
    if init is not None:
        missing, unexpected = model.load_state_dict(init.state_dict(), strict=False)
        if unexpected or any(not k.startswith(NEW_INPUTS) for k in missing):
            raise StreamcharError(f"--init {s.init} does not fit (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model


def _trained_parameters(model: TinyVideoCodec | TinyAudioCodec, s: TrainSettings) -> list[torch.nn.Parameter]:
    """With --decoder-only the encoder is frozen; with blend gates to train, everything else is
    too: trained with a blend, the decoder learned to overshoot frames to make up for it."""
    if s.decoder_only:
        model.enc.requires_grad_(False)
    gates = [module for flag, module in GATES if getattr(s, flag)]
    if gates:
        model.requires_grad_(False)
        for name in gates:
            getattr(model, name).requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def _objective(model: TinyVideoCodec | TinyAudioCodec, records: list[dict], rng: np.random.Generator, s: TrainSettings,
               anchor: torch.nn.Module | None) -> CodecObjective:
    """With --frame-blend, each group is decoded with the groups a stream decodes around it,
    blended as the codec blends them."""
    if isinstance(model, TinyAudioCodec):
        return AudioObjective(model, AudioSegments(records, model.sample_rate, rng), s.batch, anchor, s.anchor)
    source = VideoGroups(records, rng, s.crop, mouth_crops=s.mouth_crops, previous=model.reads_previous, decode_before=s.frame_blend,
                         decode_after=s.frame_blend and model.reads_next_frame)
    return VideoObjective(model, source, s.batch, s.seam_loss, anchor, s.anchor)


def _cosine(step: int, total: int, warmup: int, lr: float) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


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


class _Log:
    """Every `log_every` steps and at the last: a line of `train_log.jsonl` and TensorBoard scalars."""

    def __init__(self, run: Path, kind: str, start: int):
        from torch.utils.tensorboard import SummaryWriter

        self.writer, self.path, self.kind = SummaryWriter(str(run / "tensorboard")), run / "train_log.jsonl", kind
        self.start, self.t0, self.last = start, time.perf_counter(), {}

    def write(self, done: int, loss: float, lr: float, parts: dict) -> None:
        rate = (done - self.start) / (time.perf_counter() - self.t0)
        self.last = {"step": done, "loss": loss, "lr": lr, "steps_per_s": rate, **parts}
        with open(self.path, "a") as f:
            f.write(json.dumps(self.last) + "\n")
        for k, v in self.last.items():
            if k != "step":
                self.writer.add_scalar(f"{self.kind}/{k}", v, done)


def _train_steps(model: torch.nn.Module, objective: CodecObjective, opt: torch.optim.Optimizer, log: _Log, run: Path, rng: np.random.Generator,
                 s: TrainSettings, on_step: Callable[[int, int, float], None] | None) -> None:
    model.train()
    for step in range(log.start, s.steps):
        lr = _cosine(step, s.steps, min(200, s.steps // 10 + 1), s.lr)
        for g in opt.param_groups:
            g["lr"] = lr
        loss, parts = objective.loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        done = step + 1
        if done % s.log_every == 0 or done == s.steps:
            log.write(done, loss.item(), lr, parts)
        if on_step:
            on_step(done, s.steps, loss.item())
        if done % s.save_every == 0 or done == s.steps:
            _save_checkpoint(run, model, opt, done, rng)
    log.writer.close()
    model.eval()


@torch.no_grad()
def _set_latent_statistics(model: torch.nn.Module, objective: CodecObjective) -> None:
    """Per-channel mean and std of the raw latents over training data, stored as buffers."""
    allz = torch.cat([objective.statistics_sample() for _ in range(8)], dim=1)
    model.latents_mean.copy_(allz.mean(dim=1))  # type: ignore[operator]
    model.latents_std.copy_(allz.std(dim=1).clamp(min=1e-4))  # type: ignore[operator]


def _codec_meta(kind: str, data: Path, s: TrainSettings, clips: int, command: str) -> dict:
    meta = {"stage": "decoder" if s.decoder_only else kind, "trained_steps": s.steps, "train_clips": clips, "data": str(data), "command": command}
    if s.decoder_only:
        meta["decoder_only_from"] = s.init
    elif s.anchor:
        meta.update(anchored_to=s.init, anchor=s.anchor)
    return meta


def train_codec(kind: str, data: Path, run: Path, out: Path, cfg: Config, settings: TrainSettings,
                on_step: Callable[[int, int, float], None] | None = None, command: str = "") -> dict:
    """Train (or resume training) a tiny codec; returns a summary. `command` is recorded beside
    the weights so that the shipped codec says how it was made."""
    s = settings
    check_settings(kind, s)
    if s.threads:
        torch.set_num_threads(s.threads)
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    records = train_records(Path(data), s.max_clips)
    model = build_codec(kind, cfg, s)
    params = _trained_parameters(model, s)
    anchor = copy.deepcopy(model).requires_grad_(False) if s.anchor else None  # init's codec, frozen
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=0.0)
    run.mkdir(parents=True, exist_ok=True)
    if command:
        with open(run / "commands.txt", "a") as f:
            f.write(command + "\n")
    start = _load_checkpoint(run, model, opt, rng)
    objective = _objective(model, records, rng, s, anchor)
    log = _Log(run, kind, start)
    _train_steps(model, objective, opt, log, run, rng, s, on_step)
    if not s.decoder_only and not s.anchor:  # else the statistics stay init's, loaded with its weights
        _set_latent_statistics(model, objective)
    save_codec(model, out, _codec_meta(kind, data, s, len(records), command))
    export_training_record(run, out, f"tiny {kind} codec")
    if s.init is not None:
        carry_training_record(codec_path(s.init), out)
    return {"steps": s.steps, "resumed_from": start, "last": log.last, "out": str(out)}
