"""Typed, validated configuration with named presets."""

from streamchar.config.load import load_config
from streamchar.config.presets import PRESETS
from streamchar.config.schema import Config

__all__ = ["Config", "PRESETS", "load_config"]
