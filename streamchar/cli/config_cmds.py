"""`streamchar config reference|show` (the configuration) and `streamchar info` (parameter counts)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
import yaml
from rich.table import Table

from streamchar.cli.common import ConfigOpt, PresetOpt, console
from streamchar.config import load_config
from streamchar.config.load import read_overrides
from streamchar.errors import StreamcharError

config_app = typer.Typer(help="Inspect the resolved configuration.", no_args_is_help=True)


@config_app.command("reference")
def config_reference_cmd() -> None:
    """Print every config field with its value in each preset and what it does (docs/configuration.md)."""
    from streamchar.cli.config_doc import config_reference

    print(config_reference(), end="")


@config_app.command("show")
def config_show(preset: Optional[str] = PresetOpt, config: Optional[Path] = ConfigOpt) -> None:
    """Print the resolved config (preset plus overrides) as YAML; for a training file (one with a
    `train:` section or a `base:`), its resolved model config and its `train` section, defaults filled in."""
    train = None
    if config is not None and is_training_file(config):
        from streamchar.training.settings import load_train_config

        cfg, settings = load_train_config(config)
        if preset is not None and preset != cfg.preset:
            raise StreamcharError(f"{config} trains preset {cfg.preset!r} but --preset is {preset!r}; give one or make them agree")
        train = settings.model_dump(mode="json")
    else:
        cfg = load_config(preset, config)
    data = cfg.model_dump(mode="json")
    data["derived"] = {
        "chunk_frames": cfg.stream.chunk_frames,
        "chunk_seconds": cfg.stream.chunk_seconds,
        "chunk_samples": cfg.chunk_samples,
        "samples_per_frame": cfg.samples_per_frame,
        "latent_grid": [cfg.video.height // cfg.stream.vae_spatial_stride, cfg.video.width // cfg.stream.vae_spatial_stride],
    }
    if train is not None:
        data["train"] = train
    console.print(yaml.safe_dump(data, sort_keys=False), end="", markup=False, highlight=False)


def is_training_file(path: Path) -> bool:
    """A training config (sections `train:`, `base:`), not a file of model fields."""
    return bool({"train", "base"} & set(read_overrides(path)))


def info(preset: Optional[str] = PresetOpt, config: Optional[Path] = ConfigOpt) -> None:
    """Parameter counts per module, computed on the meta device (no memory, no weights)."""
    from streamchar.model.streamchar_model import build_model, parameter_counts

    cfg = load_config(preset, config)
    counts = parameter_counts(build_model(cfg, "meta"))
    table = Table(title=f"streamchar parameters, preset {cfg.preset}")
    table.add_column("module")
    table.add_column("parameters", justify="right")
    for name, n in counts.items():
        table.add_row(name, f"{n / 1e9:.3f}B" if n >= 1e8 else f"{n / 1e6:.2f}M")
    console.print(table)
