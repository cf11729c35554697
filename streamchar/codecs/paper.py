"""Paper-scale codecs from local diffusers directories: the Wan2.2 video VAE
(`AutoencoderKLWan`, z = 48, stride 4x16x16) and an `AutoencoderOobleck` audio VAE.

Nothing is downloaded: both load with `local_files_only=True` from a directory written by
`save_pretrained`. A checkpoint whose geometry does not match the configured stream is
refused with a message saying what it has and what the stream needs.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from streamchar.codecs.base import AudioCodec, AudioStreamDecoder, VideoCodec, denormalise, normalise
from streamchar.config import Config
from streamchar.errors import StreamcharError


def _from_pretrained(cls, path: Path):  # noqa: ANN001, ANN202
    if not (Path(path) / "config.json").is_file():
        raise StreamcharError(f"no diffusers checkpoint at {path} (expected config.json and weights written by save_pretrained)")
    try:
        return cls.from_pretrained(str(path), local_files_only=True).eval()
    except (OSError, ValueError) as e:
        raise StreamcharError(f"cannot load {cls.__name__} from {path}: {str(e).splitlines()[0]}") from None


class WanVideoCodec(VideoCodec):
    """Wan2.2 VAE, each 33-frame chunk coded as its own causal segment (9 latents)."""

    def __init__(self, vae, cfg: Config):  # noqa: ANN001
        super().__init__()
        self.vae = vae
        c = vae.config
        spatial = getattr(c, "scale_factor_spatial", None) or 2 ** (len(c.dim_mult) - 1) * (c.patch_size or 1)
        temporal = getattr(c, "scale_factor_temporal", None) or 2 ** sum(c.temperal_downsample)
        problems = []
        if c.z_dim != cfg.video.latent_channels:
            problems.append(f"z_dim {c.z_dim} (preset needs {cfg.video.latent_channels})")
        if spatial != cfg.stream.vae_spatial_stride:
            problems.append(f"spatial stride {spatial} (stream needs {cfg.stream.vae_spatial_stride})")
        if temporal != cfg.stream.vae_temporal_stride:
            problems.append(f"temporal stride {temporal} (stream needs {cfg.stream.vae_temporal_stride})")
        if problems:
            raise StreamcharError("video VAE does not fit the stream geometry: " + "; ".join(problems))
        self.latent_channels = c.z_dim
        self.height, self.width = cfg.video.height, cfg.video.width
        self.register_buffer("latents_mean", torch.tensor(c.latents_mean, dtype=torch.float32), persistent=False)
        self.register_buffer("latents_std", torch.tensor(c.latents_std, dtype=torch.float32), persistent=False)

    @classmethod
    def load(cls, path: str | Path, cfg: Config) -> WanVideoCodec:
        from diffusers import AutoencoderKLWan

        return cls(_from_pretrained(AutoencoderKLWan, Path(path)), cfg)

    @torch.no_grad()
    def encode_chunks(self, chunks: torch.Tensor) -> torch.Tensor:
        z = self.vae.encode(chunks.to(self.vae.device, self.vae.dtype)).latent_dist.mode()
        return normalise(z, self.latents_mean, self.latents_std).float()

    @torch.no_grad()
    def decode_chunks(self, latents: torch.Tensor, reference: list[torch.Tensor] | None = None,
                      previous: torch.Tensor | None = None, previous_frame: torch.Tensor | None = None) -> torch.Tensor:
        x = self.vae.decode(denormalise(latents, self.latents_mean, self.latents_std).to(self.vae.dtype)).sample
        return x.float().clamp(-1, 1)


class _OverlapStream(AudioStreamDecoder):
    """Decodes each chunk with up to `context` latents of the previous ones in front, keeping only
    the new samples: Oobleck's decoder sees the future too, so this approximates whole decoding."""

    def __init__(self, codec: OobleckAudioCodec, context: int):
        self.codec, self.context = codec, context
        self.past: torch.Tensor | None = None

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.codec.check_latents(latents)
        full = latents if self.past is None else torch.cat([self.past, latents], dim=2)
        audio = self.codec.decode(full)
        self.past = full[:, :, -self.context :]
        return audio[:, -latents.shape[2] * self.codec.hop_length :]


class OobleckAudioCodec(AudioCodec):
    """`AutoencoderOobleck` (Stable Audio Open layout). Mono audio is copied to the VAE's
    channels for encoding and averaged after decoding."""

    def __init__(self, vae, cfg: Config, stream_context: int = 8):  # noqa: ANN001
        super().__init__()
        self.vae = vae
        c = vae.config
        hop = math.prod(c.downsampling_ratios)
        problems = []
        if c.sampling_rate != cfg.audio.sample_rate:
            problems.append(f"sampling_rate {c.sampling_rate} Hz (stream needs {cfg.audio.sample_rate} Hz)")
        if hop != cfg.audio.hop_length:
            problems.append(f"hop {hop} (stream needs {cfg.audio.hop_length})")
        if c.decoder_input_channels != cfg.audio.latent_channels:
            problems.append(f"{c.decoder_input_channels} latent channels (preset needs {cfg.audio.latent_channels})")
        if problems:
            raise StreamcharError(
                "audio VAE does not fit the stream geometry: " + "; ".join(problems)
                + f" - the stream runs at {cfg.audio.sample_rate // cfg.audio.hop_length} latents per second"
            )
        self.sample_rate, self.hop_length, self.latent_channels = c.sampling_rate, hop, c.decoder_input_channels
        self.stream_context = stream_context

    @classmethod
    def load(cls, path: str | Path, cfg: Config) -> OobleckAudioCodec:
        from diffusers import AutoencoderOobleck

        return cls(_from_pretrained(AutoencoderOobleck, Path(path)), cfg)

    @torch.no_grad()
    def encode(self, audio: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        self.check_audio(audio, sample_rate)
        n = audio.shape[1] // self.hop_length
        x = audio[:, None].expand(-1, self.vae.config.audio_channels, -1).to(self.vae.device, self.vae.dtype)
        z = self.vae.encode(x).latent_dist.mode().float()
        return F.pad(z, (0, max(0, n - z.shape[2])))[:, :, :n]

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.check_latents(latents)
        n = latents.shape[2] * self.hop_length
        y = self.vae.decode(latents.to(self.vae.dtype)).sample.float().mean(dim=1)
        return F.pad(y, (0, max(0, n - y.shape[1])))[:, :n].clamp(-1, 1)

    def stream_decoder(self) -> AudioStreamDecoder:
        return _OverlapStream(self, self.stream_context)
