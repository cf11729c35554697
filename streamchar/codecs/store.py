"""Saving and loading codecs: safetensors weights + a JSON config, written atomically.

The shipped tiny codecs live in the package (`streamchar/assets/codecs/<name>/`) and load
by name; any other codec loads from a directory. `tiny-video` is the video codec whose latents
the shipped teacher and student learned; `tiny-video-anchored` has its encoder trained further,
held near those latents; it reconstructs better, but the shipped models' clips decoded by it
lose some lip sync, so they keep `tiny-video` (docs/tiny-scale.md).
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file

from streamchar.codecs.base import AudioCodec, VideoCodec
from streamchar.codecs.tiny import TinyAudioCodec, TinyAudioConfig, TinyVideoCodec, TinyVideoConfig
from streamchar.config import Config
from streamchar.errors import StreamcharError
from streamchar.utils.files import atomic_save_file, atomic_write_text
from streamchar.utils.shipped import shipped_dir

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
KINDS = ("tiny-video", "tiny-audio")
# the shipped codecs by name: one per kind, the anchored video codec, and the audio decoder tuned on three speech engines
SHIPPED = (*KINDS, "tiny-video-anchored", "tiny-audio-3engines")
# what the tiny preset decodes with when no codec is named: the three-engine audio decoder (its
# latents are tiny-audio's, so models trained on either read both)
DEFAULT = {"video": "tiny-video", "audio": "tiny-audio-3engines"}


def save_codec(codec: TinyVideoCodec | TinyAudioCodec, directory: Path, extra: dict | None = None) -> None:
    """Weights stored as float16 (the shipped codecs must stay under 10 MB each); latent
    statistics stay float32. Loading casts everything back to float32."""
    directory = Path(directory)
    state = {k: (v.half() if v.is_floating_point() and not k.startswith("latents_") else v).contiguous() for k, v in codec.state_dict().items()}
    atomic_save_file(state, directory / WEIGHTS)
    atomic_write_text(directory / CONFIG, json.dumps({"kind": codec.kind, "config": codec.config.to_json(), **(extra or {})}, indent=1))


def _build(kind: str, config: dict) -> TinyVideoCodec | TinyAudioCodec:
    tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    if kind == "tiny-video":
        return TinyVideoCodec(TinyVideoConfig(**tuples))
    if kind == "tiny-audio":
        return TinyAudioCodec(TinyAudioConfig(**tuples))
    raise StreamcharError(f"unknown codec kind {kind!r}; accepted: {', '.join(KINDS)}")


def codec_path(name_or_path: str | Path) -> Path:
    """The folder of a shipped codec by name (one of SHIPPED), or the path given."""
    return shipped_dir("codecs", str(name_or_path)) if str(name_or_path) in SHIPPED else Path(name_or_path)


def load_codec(name_or_path: str | Path) -> TinyVideoCodec | TinyAudioCodec:
    """A shipped codec by name (one of SHIPPED) or a saved directory."""
    path = codec_path(name_or_path)
    if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        raise StreamcharError(f"no codec at {path}: expected {CONFIG} and {WEIGHTS} (train one with `streamchar codec train`)")
    try:
        meta = json.loads((path / CONFIG).read_text())
        codec = _build(meta["kind"], meta["config"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise StreamcharError(f"{path / CONFIG} is not a codec config: {e}") from None
    try:
        state = load_file(path / WEIGHTS)
    except (SafetensorError, OSError) as e:
        raise StreamcharError(f"{path / WEIGHTS} is damaged: {e}") from None
    missing, unexpected = codec.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise StreamcharError(f"{path / WEIGHTS} does not match its config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    if isinstance(codec, TinyVideoCodec):
        codec.decoder_channels_last()
    return codec.eval()


def check_video_codec(codec: VideoCodec, cfg: Config) -> None:
    """The codec must code the preset's frames into the preset's latents."""
    want = (cfg.video.height, cfg.video.width, cfg.video.latent_channels)
    have = (codec.height, codec.width, codec.latent_channels)
    if want != have:
        raise StreamcharError(
            f"video codec codes {have[1]}x{have[0]} frames into {have[2]} channels, but preset {cfg.preset!r} "
            f"needs {want[1]}x{want[0]} into {want[2]}"
        )


def check_audio_codec(codec: AudioCodec, cfg: Config) -> None:
    want = (cfg.audio.sample_rate, cfg.audio.hop_length, cfg.audio.latent_channels)
    have = (codec.sample_rate, codec.hop_length, codec.latent_channels)
    if want != have:
        raise StreamcharError(
            f"audio codec codes {have[0]} Hz with hop {have[1]} into {have[2]} channels, but preset {cfg.preset!r} "
            f"needs {want[0]} Hz, hop {want[1]}, {want[2]} channels"
        )


def _diffusers_class(path: Path) -> str | None:
    try:
        return json.loads((path / CONFIG).read_text()).get("_class_name")
    except (OSError, json.JSONDecodeError):
        return None


def _load_for(cfg: Config, path: str | Path | None, modality: str, diffusers_class: str, base: type, check) -> VideoCodec | AudioCodec:  # noqa: ANN001
    """The preset's codec of one modality: the shipped tiny codec by default, or a directory
    holding either a diffusers VAE of `diffusers_class` or a codec trained by `streamchar codec train`."""
    if path is None:
        if cfg.preset != "tiny":
            raise StreamcharError(f"preset {cfg.preset!r} needs a {modality} VAE directory (a diffusers {diffusers_class}); pass its path")
        path = DEFAULT[modality]
    if str(path) not in SHIPPED and _diffusers_class(Path(path)) == diffusers_class:
        from streamchar.codecs import paper

        loader = paper.WanVideoCodec if modality == "video" else paper.OobleckAudioCodec
        return loader.load(path, cfg)
    codec = load_codec(path)
    if not isinstance(codec, base):
        other = "audio" if modality == "video" else "video"
        raise StreamcharError(f"{path} holds an {other} codec, not a {modality} codec".replace("an video", "a video"))
    check(codec, cfg)
    return codec


def load_video_codec(cfg: Config, path: str | Path | None = None) -> VideoCodec:
    return _load_for(cfg, path, "video", "AutoencoderKLWan", VideoCodec, check_video_codec)  # type: ignore[return-value]


def load_audio_codec(cfg: Config, path: str | Path | None = None) -> AudioCodec:
    return _load_for(cfg, path, "audio", "AutoencoderOobleck", AudioCodec, check_audio_codec)  # type: ignore[return-value]
