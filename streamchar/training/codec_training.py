"""Training the tiny codecs on SynthTalk (`streamchar codec train --kind video|audio`).

An objective of the one training loop (`training/loop.py`): resumable, a checkpoint every
`save_every` steps in `<run>/checkpoints/`; rerunning the same command continues from the
newest. At the end, per-channel latent statistics are measured on training data and stored
with the weights, and the codec is written to `--out`.

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
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from streamchar.codecs.store import codec_path, load_codec, save_codec
from streamchar.codecs.tiny import TinyAudioCodec, TinyAudioConfig, TinyVideoCodec, TinyVideoConfig
from streamchar.config import Config
from streamchar.errors import StreamcharError
from streamchar.training.codec_data import AudioSegments, VideoGroups, train_records
from streamchar.training.codec_objectives import AudioObjective, CodecObjective, VideoObjective
from streamchar.training.loop import LoopSettings, Objective, Part, Runtime, TrainLoop
from streamchar.training.records import carry_training_record, export_training_record

SEED = 0
REFERENCE_CHANNELS = (32, 64, 128)  # H/2, H/4, H/8: fine detail; the latents hold H/16 (and the codec stays under 10 MB)


@dataclass
class CodecSettings:
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


def check_settings(kind: str, s: CodecSettings) -> None:
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


def build_codec(kind: str, cfg: Config, s: CodecSettings) -> TinyVideoCodec | TinyAudioCodec:
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


def _freeze(model: TinyVideoCodec | TinyAudioCodec, s: CodecSettings) -> None:
    """With --decoder-only the encoder is frozen; with blend gates to train, everything else is
    too: trained with a blend, the decoder learned to overshoot frames to make up for it."""
    if s.decoder_only:
        model.enc.requires_grad_(False)
    gates = [module for flag, module in GATES if getattr(s, flag)]
    if gates:
        model.requires_grad_(False)
        for name in gates:
            getattr(model, name).requires_grad_(True)


def _objective(model: TinyVideoCodec | TinyAudioCodec, records: list[dict], rng: np.random.Generator, s: CodecSettings,
               anchor: torch.nn.Module | None) -> CodecObjective:
    """With --frame-blend, each group is decoded with the groups a stream decodes around it,
    blended as the codec blends them."""
    if isinstance(model, TinyAudioCodec):
        return AudioObjective(model, AudioSegments.from_records(records, model.sample_rate, rng), s.batch, anchor, s.anchor)
    source = VideoGroups(records, rng, s.crop, mouth_crops=s.mouth_crops, previous=model.reads_previous, decode_before=s.frame_blend,
                         decode_after=s.frame_blend and model.reads_next_frame)
    return VideoObjective(model, source, s.batch, s.seam_loss, anchor, s.anchor)


@torch.no_grad()
def _set_latent_statistics(model: torch.nn.Module, objective: CodecObjective) -> None:
    """Per-channel mean and std of the raw latents over training data, stored as buffers."""
    allz = torch.cat([objective.statistics_sample() for _ in range(8)], dim=1)
    model.latents_mean.copy_(allz.mean(dim=1))  # type: ignore[operator]
    model.latents_std.copy_(allz.std(dim=1).clamp(min=1e-4))  # type: ignore[operator]


def _codec_meta(kind: str, data: Path, s: CodecSettings, clips: int, command: str) -> dict:
    meta = {"stage": "decoder" if s.decoder_only else kind, "trained_steps": s.steps, "train_clips": clips, "data": str(data), "command": command}
    if s.decoder_only:
        meta["decoder_only_from"] = s.init
    elif s.anchor:
        meta.update(anchored_to=s.init, anchor=s.anchor)
    return meta


class CodecStage(Objective):
    """A tiny codec's training as the loop runs it: its loss from `CodecObjective`, AdamW without
    weight decay, clipped to norm 1; its data drawn from one generator, kept in checkpoints."""

    def __init__(self, kind: str, data: Path, cfg: Config, s: CodecSettings):
        check_settings(kind, s)
        torch.manual_seed(SEED)
        self.kind, self.data, self.s, self.tag, self.rng = kind, Path(data), s, kind, np.random.default_rng(SEED)
        self.records = train_records(self.data, s.max_clips)
        self.model = build_codec(kind, cfg, s)
        _freeze(self.model, s)
        anchor = copy.deepcopy(self.model).requires_grad_(False) if s.anchor else None  # init's codec, frozen
        self.objective = _objective(self.model, self.records, self.rng, s, anchor)

    def parts(self) -> dict[str, Part]:
        return {"model": Part(self.model, self.s.lr, weight_decay=0.0, clip=1.0)}

    def losses(self, step: int, micro: int) -> dict[str, torch.Tensor | float]:
        loss, parts = self.objective.loss()
        return {"loss": loss, **parts}

    def meta(self) -> dict:
        return {"stage": self.kind, "settings": vars(self.s)}

    def export(self, loop: TrainLoop, out: Path, command: str = "") -> None:
        if not self.s.decoder_only and not self.s.anchor:  # else the statistics stay init's, loaded with its weights
            _set_latent_statistics(self.model, self.objective)
        save_codec(self.model, out, _codec_meta(self.kind, self.data, self.s, len(self.records), command))
        export_training_record(loop.run, out, f"tiny {self.kind} codec")
        if self.s.init is not None:
            carry_training_record(codec_path(self.s.init), out)


def train_codec(kind: str, data: Path, run: Path, out: Path, cfg: Config, settings: CodecSettings,
                on_step: Callable[[int, int, dict], None] | None = None, command: str = "") -> dict:
    """Train (or resume training) a tiny codec; returns a summary. `command` is recorded beside
    the weights so that the shipped codec says how it was made."""
    s = settings
    rt = Runtime.create(threads=s.threads, device="cpu")
    return run_codec_stage(CodecStage(kind, data, cfg, s), s.steps, s.log_every, s.save_every, run, out, rt, on_step, command)


def run_codec_stage(stage: Objective, steps: int, log_every: int, save_every: int, run: Path, out: Path, rt: Runtime,
                    on_step: Callable[[int, int, dict], None] | None, command: str) -> dict:
    """A codec's training run on the one loop: a short warm-up, cosine to 2%, one checkpoint kept,
    resumed where `run` has one, exported to `out`."""
    settings = LoopSettings(steps=steps, warmup=min(200, steps // 10 + 1), min_lr_ratio=0.02, log_every=log_every, save_every=save_every,
                            keep_checkpoints=1)  # fmt: skip
    loop = TrainLoop(stage, settings, run, rt, command)
    start = loop.resume()
    last = loop.train(on_step=on_step)
    loop.export(out, command=command)
    return {"steps": steps, "resumed_from": start, "last": last, "out": str(out)}
