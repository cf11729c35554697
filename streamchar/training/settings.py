"""Typed training settings, read from the `train:` section of a YAML file (the `preset:` and
`model:` sections of the same file choose and override the model config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streamchar.config import Config, load_config
from streamchar.config.load import format_validation_error
from streamchar.errors import StreamcharError


class TrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cache: str = Field(description="latent cache made by `streamchar data encode`")
    steps: int = Field(gt=0)
    batch: int = Field(8, gt=0, description="windows per micro-batch (per process)")
    grad_accum: int = Field(1, gt=0)
    lr: float = Field(3e-4, gt=0)
    warmup: int = Field(100, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.01, ge=0)
    ema_decay: float = Field(0.999, ge=0, lt=1, description="0 turns the EMA off")
    grad_clip: float = Field(1.0, gt=0)
    save_every: int = Field(200, gt=0)
    keep_checkpoints: int = Field(3, gt=0)
    log_every: int = Field(10, gt=0)
    validate_every: int = Field(0, ge=0, description="render a validation stream every N steps (0: never)")
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast on CUDA, fp32 on CPU")
    prompt_dropout: float = Field(0.1, ge=0, le=1)
    reference_dropout: float = Field(0.1, ge=0, le=1)
    pointer_weight: float = Field(0.1, ge=0)
    init: str | None = Field(None, description="start from this generator checkpoint (e.g. the speech-only stage's result)")
    wan: str | None = Field(None, description="paper scale: a diffusers Wan2.2 transformer directory for the DiT's video path")
    qwen: str | None = Field(None, description="paper scale: a Qwen2.5 directory for the orchestrator")
    threads: int | None = Field(None, gt=0)


def load_train_config(path: Path, overrides: dict[str, Any] | None = None) -> tuple[Config, TrainSettings]:
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise StreamcharError(f"cannot read the training config {path}: {e}") from None
    if not isinstance(raw, dict) or "train" not in raw:
        raise StreamcharError(f"{path} needs a `train:` section (and may have `preset:` and `model:`)")
    unknown = set(raw) - {"preset", "model", "train"}
    if unknown:
        raise StreamcharError(f"{path}: unknown sections {sorted(unknown)}; accepted: preset, model, train")
    cfg = load_config(raw.get("preset"), raw.get("model") or {})
    try:
        settings = TrainSettings(**{**raw["train"], **(overrides or {})})
    except ValidationError as e:
        raise StreamcharError(f"{path}: train.{format_validation_error(e)}") from None
    return cfg, settings
