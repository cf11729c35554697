"""Resolve a preset plus YAML overrides into a validated `Config`."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from streamchar.config.presets import PRESETS
from streamchar.config.schema import Config
from streamchar.errors import StreamcharError


def merge_dicts(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on a copy of `base`, nested dictionaries merged key by key."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = value
    return out


def format_validation_error(err: ValidationError) -> str:
    """One line per problem, each naming the field path, e.g. `stream.chunk_latent_frames: ...`."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


DEFAULT_PRESET = "tiny"


def read_overrides(overrides: str | Path | dict[str, Any] | None) -> dict[str, Any]:
    """The fields a YAML file (or dict) sets; nothing for None."""
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return overrides
    path = Path(overrides)
    if not path.exists() or path.is_dir():
        raise StreamcharError(f"config file {path} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise StreamcharError(f"config file {path} is not valid YAML: {e}".replace("\n", " ")) from None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise StreamcharError(f"config file {path} must hold a mapping of fields, not {type(loaded).__name__}")
    return loaded


def _validated(data: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise StreamcharError(f"invalid config: {format_validation_error(e)}") from None


def load_config(preset: str | None = None, overrides: str | Path | dict[str, Any] | None = None) -> Config:
    """Build the config for `preset` (default: tiny), with a YAML file (or dict) layered on top.

    A YAML file may name its own `preset:`; it must agree with `preset` when both are given.
    """
    over = read_overrides(overrides)
    named = over.get("preset", preset or DEFAULT_PRESET)
    if preset is not None and named != preset:
        raise StreamcharError(f"the config file names preset {named!r} but --preset is {preset!r}; give one or make them agree")
    if not isinstance(named, str) or named not in PRESETS:
        raise StreamcharError(f"unknown preset {named!r}; accepted: {', '.join(sorted(PRESETS))}")
    data = merge_dicts(PRESETS[named], over)
    data["preset"] = named
    return _validated(data)


def override_config(cfg: Config, overrides: str | Path | dict[str, Any]) -> Config:
    """`cfg` (a checkpoint's) with the fields a YAML file (or dict) sets layered on top."""
    over = read_overrides(overrides)
    if over.get("preset", cfg.preset) != cfg.preset:
        raise StreamcharError(f"the config file names preset {over['preset']!r}, but the checkpoint was trained with {cfg.preset!r}")
    return _validated(merge_dicts(cfg.model_dump(mode="json"), over))


def upgrade_saved_config(data: dict[str, Any]) -> dict[str, Any]:
    """A config saved by an earlier version, in today's layout: the plan's fields (`text_rate`,
    `text_window`, `word_pace`) sat in `orchestrator` itself, a non-zero `text_rate` switching the
    plan on; `stream` held sampler step counts that nothing read."""
    out = copy.deepcopy(data)
    orchestrator = out.get("orchestrator")
    if isinstance(orchestrator, dict) and "text_rate" in orchestrator:
        rate, window, pace = orchestrator.pop("text_rate"), orchestrator.pop("text_window", 0.0), orchestrator.pop("word_pace", None)
        orchestrator["reading"] = "plan" if rate else "pointer"
        orchestrator["plan"] = {"text_rate": rate, "text_window": window, "word_pace": pace} if rate else None
    if isinstance(out.get("stream"), dict):
        for old in ("teacher_steps", "student_steps"):
            out["stream"].pop(old, None)
    return out
