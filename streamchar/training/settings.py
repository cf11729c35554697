"""Typed training settings, read from the `train:` section of a YAML file (the `preset:` and
`model:` sections of the same file choose and override the model config). A file may name a
`base:` file (relative to itself) whose sections it overrides key by key, so an ablation says
only what it changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from streamchar.config import Config, load_config
from streamchar.config.load import format_validation_error, merge_dicts
from streamchar.errors import StreamcharError


class DistillSettings(BaseModel):
    """Stage I (`dmd`) and Stage II (`rollout`) distillation; ignored by the pretraining stages."""

    model_config = ConfigDict(extra="forbid")

    teacher: str | None = Field(None, description="the real score (frozen); default: --init, which must then be the teacher")
    fake_lr: float = Field(4e-7, gt=0, description="learning rate of the fake score (paper: 4e-7; the student's is train.lr, paper 2e-6)")
    fake_updates: int = Field(1, gt=0, description="fake-score updates per student update")
    guidance: float = Field(3.0, ge=0, description="classifier-free guidance of the real score (1: none)")
    text_guidance: float = Field(1.0, ge=0, description="the real score's guidance on the orchestrator's condition, for a teacher "
                                 "trained with condition_dropout (1: none)")
    student_steps: int = Field(4, gt=0, description="the student's sampler")
    shift: float = Field(1.0, gt=0, description="timestep shift of the student's sampler (its step times)")
    score_t_min: float = Field(0.02, gt=0, lt=1, description="lowest noise level the DMD loss scores at")
    score_t_max: float = Field(0.98, gt=0, lt=1, description="highest noise level the DMD loss scores at")
    rollout_chunks: int = Field(5, gt=0, description="Stage II: chunks streamed per rollout (K)")
    score_chunks: int = Field(3, gt=0, description="Stage II: the last chunks concatenated for the DMD loss (ablation: 1)")
    sink: bool = Field(True, description="Stage II: later chunks attend to the first (ablation: false)")
    truncate_at_pointer: bool = Field(
        True, description="Stage II: the scored chunks' transcript ends where the pointer says their speech ends (Figs. 2-3; ablation: false)"
    )

    @model_validator(mode="after")
    def _fits(self) -> DistillSettings:
        if self.score_chunks > self.rollout_chunks:
            raise ValueError(f"score_chunks ({self.score_chunks}) cannot exceed rollout_chunks ({self.rollout_chunks})")
        if self.score_t_min >= self.score_t_max:
            raise ValueError(f"score_t_min ({self.score_t_min}) must be below score_t_max ({self.score_t_max})")
        return self


class TrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cache: str = Field(description="latent cache made by `streamchar data encode`")
    steps: int = Field(gt=0, description="optimizer steps to train")
    batch: int = Field(8, gt=0, description="windows per micro-batch (per process)")
    grad_accum: int = Field(1, gt=0, description="micro-batches per optimizer step")
    global_batch: int | None = Field(
        None, gt=0, description="windows per optimizer step over all processes; sets grad_accum from batch and the number of processes"
    )
    lr: float = Field(3e-4, gt=0, description="peak learning rate (AdamW)")
    warmup: int = Field(100, ge=0, description="steps of linear warm-up")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine decay ends at lr x this")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    ema_decay: float = Field(0.999, ge=0, lt=1, description="the EMA's decay, reached as (1 + n)/(10 + n) grows with the step n; 0 turns the EMA off")
    grad_clip: float = Field(1.0, gt=0, description="gradients clipped to this norm")
    save_every: int = Field(200, gt=0, description="steps between resumable checkpoints")
    keep_checkpoints: int = Field(3, gt=0, description="checkpoints kept in the run folder")
    log_every: int = Field(10, gt=0, description="steps between log lines and TensorBoard points")
    validate_every: int = Field(0, ge=0, description="render a validation stream every N steps (0: never)")
    seed: int = Field(0, description="seeds the model's initialisation, the data order and the noise")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast on CUDA, fp32 on CPU")
    prompt_dropout: float = Field(0.1, ge=0, le=1, description="share of windows trained with the empty prompt (for guidance)")
    reference_dropout: float = Field(0.1, ge=0, le=1, description="share of windows trained without the reference frame")
    condition_dropout: float = Field(0.0, ge=0, le=1, description="share of windows whose DiT gets no orchestrator condition (its text "
                                     "and voice), so that a stream can guide towards the transcript (--text-guidance)")
    pointer_weight: float = Field(0.1, ge=0, description="weight of the pointer's loss (paper eq. 5)")
    vary_history: bool = Field(
        False, description="later chunks' history 1 to stream.history_chunks chunks, drawn per window (clips shorter than the history window)"
    )
    phoneme_weight: float = Field(0.5, ge=0, description="the orchestrator's phoneme loss, where the preset has the head (tiny)")
    mouth_weight: float = Field(5.0, ge=0, description="the DiT's mouth-shape loss (mean squared error), where the preset has the head (tiny)")
    mouth_region_weight: float = Field(
        0.0, ge=0, description="the video flow loss again over the mouth's latent cells (needs the clips' mouth boxes in the latent cache)"
    )
    init: str | None = Field(None, description="start from this generator checkpoint (e.g. the speech-only stage's result)")
    wan: str | None = Field(None, description="paper scale: a diffusers Wan2.2 transformer directory for the DiT's video path")
    qwen: str | None = Field(None, description="paper scale: a Qwen2.5 directory for the orchestrator")
    threads: int | None = Field(None, gt=0, description="torch threads per process (default: torch's)")
    distill: DistillSettings = Field(default_factory=DistillSettings, description="distillation settings (dmd and rollout stages)")

    @model_validator(mode="after")
    def _one_batch_rule(self) -> TrainSettings:
        if self.global_batch is not None and "grad_accum" in self.model_fields_set and self.grad_accum != 1:
            raise ValueError("give global_batch or grad_accum, not both (global_batch sets grad_accum from batch and the processes)")
        return self

    def accumulation(self, world: int) -> int:
        """Micro-batches per optimizer step on `world` processes: `grad_accum`, or what makes
        `global_batch` windows; a global batch that does not split evenly is refused."""
        if self.global_batch is None:
            return self.grad_accum
        per_step = self.batch * world
        if self.global_batch % per_step:
            fits = [b for b in range(1, self.batch + 1) if self.global_batch % (b * world) == 0]
            raise StreamcharError(f"train.global_batch {self.global_batch} is not a multiple of train.batch {self.batch} x {world} "
                                  f"process(es) = {per_step}; a batch of {max(fits)} would split it evenly" if fits else
                                  f"train.global_batch {self.global_batch} cannot be split over {world} processes")  # fmt: skip
        return self.global_batch // per_step


def _read_sections(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The file's sections over those of its `base:` chain."""
    path = Path(path)
    if path.resolve() in chain:
        raise StreamcharError(f"training config bases loop: {' -> '.join(str(p) for p in (*chain, path.resolve()))}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        what = f"the base {path} named by {chain[-1]}" if chain else f"the training config {path}"
        raise StreamcharError(f"cannot read {what}: {e}") from None
    if not isinstance(raw, dict):
        raise StreamcharError(f"{path} must hold sections (train:, and optionally base:, preset:, model:)")
    unknown = set(raw) - {"base", "preset", "model", "train"}
    if unknown:
        raise StreamcharError(f"{path}: unknown sections {sorted(unknown)}; accepted: base, preset, model, train")
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise StreamcharError(f"{path}: base must be a path to another training config, not {base!r}")
    return merge_dicts(_read_sections(path.parent / base, (*chain, path.resolve())), raw)


def load_train_config(path: Path, overrides: dict[str, Any] | None = None) -> tuple[Config, TrainSettings]:
    raw = _read_sections(Path(path))
    if "train" not in raw:
        raise StreamcharError(f"{path} needs a `train:` section (its own or its base's; and may have `preset:` and `model:`)")
    cfg = load_config(raw.get("preset"), raw.get("model") or {})
    try:
        settings = TrainSettings(**{**raw["train"], **(overrides or {})})
    except ValidationError as e:
        raise StreamcharError(f"{path}: train.{format_validation_error(e)}") from None
    return cfg, settings
