"""The tiny-scale codecs, trained on SynthTalk on two CPU cores.

Why not the diffusers classes at this scale: at 128x128 a 2.9M-parameter
`AutoencoderKLWan` (base_dim 16, z 48) takes about 6 s to decode one 33-frame chunk on
two cores and a 6.6M-parameter `AutoencoderOobleck` about 0.9 s for 1.375 s of audio,
against a budget of 0.15 s for both (`python benchmarks/codec_alternatives.py`). Oobleck's
decoder is also non-causal, so chunked decoding cannot equal whole decoding.

Video: each latent codes a group of four frames (the first latent of a chunk one frame,
repeated) with a 2-D convolutional autoencoder: space-to-depth by 4, two stride-2 stages.
Audio: 40-sample patches at 600 Hz, two stride-5 stages down to 24 Hz; the decoder is
causal and overlap-adds 80-sample windows, so it streams with a carried state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from streamchar.codecs.base import CHUNK_FRAMES, CHUNK_LATENTS, AudioCodec, AudioStreamDecoder, VideoCodec
from streamchar.codecs.layers import CausalConv1d, CausalResBlock1d, ResBlock1d, ResBlock2d


@dataclass
class TinyVideoConfig:
    height: int = 128
    width: int = 128
    latent_channels: int = 48
    channels: tuple[int, int, int] = (64, 128, 192)  # at H/4, H/8, H/16

    def to_json(self) -> dict:
        return asdict(self)


class TinyVideoCodec(VideoCodec):
    kind = "tiny-video"

    def __init__(self, config: TinyVideoConfig):
        super().__init__()
        self.config = config
        self.height, self.width, self.latent_channels = config.height, config.width, config.latent_channels
        c1, c2, c3 = config.channels
        z = config.latent_channels
        self.enc = nn.Sequential(
            nn.PixelUnshuffle(4),  # 12 x H x W -> 192 x H/4
            nn.Conv2d(12 * 16, c1, 3, padding=1),
            ResBlock2d(c1),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1),
            ResBlock2d(c2),
            nn.Conv2d(c2, c3, 4, stride=2, padding=1),
            ResBlock2d(c3),
            nn.SiLU(),
            nn.Conv2d(c3, z, 1),
        )
        self.dec = nn.Sequential(
            nn.Conv2d(z, c3, 3, padding=1),
            ResBlock2d(c3),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(c3, c2, 3, padding=1),
            ResBlock2d(c2),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(c2, c1, 3, padding=1),
            ResBlock2d(c1),
            nn.SiLU(),
            nn.Conv2d(c1, 12 * 16, 3, padding=1),
            nn.PixelShuffle(4),
        )
        self.register_buffer("latents_mean", torch.zeros(z))
        self.register_buffer("latents_std", torch.ones(z))

    # groups of four frames <-> one latent frame
    @staticmethod
    def _groups(chunks: torch.Tensor) -> torch.Tensor:
        """(N, 3, 33, H, W) -> (N * 9, 12, H, W): the first frame repeated, then frames 1-4, 5-8, ..."""
        n, c, t, h, w = chunks.shape
        first = chunks[:, :, :1].expand(n, c, 4, h, w)
        x = torch.cat([first, chunks[:, :, 1:]], dim=2)  # (N, 3, 36, H, W)
        x = x.reshape(n, c, CHUNK_LATENTS, 4, h, w).permute(0, 2, 3, 1, 4, 5)
        return x.reshape(n * CHUNK_LATENTS, 4 * c, h, w)

    @staticmethod
    def _ungroup(groups: torch.Tensor, n: int) -> torch.Tensor:
        h, w = groups.shape[-2:]
        x = groups.reshape(n, CHUNK_LATENTS, 4, 3, h, w).permute(0, 3, 1, 2, 4, 5).reshape(n, 3, CHUNK_LATENTS * 4, h, w)
        return x[:, :, 3:]  # the first group's last frame stands for the chunk's first frame

    def encode_groups(self, groups: torch.Tensor) -> torch.Tensor:
        """(M, 12, H, W) -> raw (unnormalised) latents (M, z, h, w)."""
        return self.enc(groups)

    def decode_groups(self, raw: torch.Tensor) -> torch.Tensor:
        return self.dec(raw)

    def normalise(self, raw: torch.Tensor, dim: int = 1) -> torch.Tensor:
        shape = [1] * raw.ndim
        shape[dim] = -1
        return (raw - self.latents_mean.view(shape)) / self.latents_std.view(shape)

    def denormalise(self, z: torch.Tensor, dim: int = 1) -> torch.Tensor:
        shape = [1] * z.ndim
        shape[dim] = -1
        return z * self.latents_std.view(shape) + self.latents_mean.view(shape)

    def encode_chunks(self, chunks: torch.Tensor) -> torch.Tensor:
        n = chunks.shape[0]
        raw = self.encode_groups(self._groups(chunks))
        z = self.normalise(raw)
        return z.reshape(n, CHUNK_LATENTS, *z.shape[1:]).permute(0, 2, 1, 3, 4)

    def decode_chunks(self, latents: torch.Tensor) -> torch.Tensor:
        n, z, t, h, w = latents.shape
        flat = latents.permute(0, 2, 1, 3, 4).reshape(n * t, z, h, w)
        groups = self.decode_groups(self.denormalise(flat))
        return self._ungroup(groups, n).clamp(-1, 1)


@dataclass
class TinyAudioConfig:
    sample_rate: int = 24000
    hop_length: int = 1000
    latent_channels: int = 64
    patch: int = 40  # samples per step of the 600 Hz inner sequence
    strides: tuple[int, ...] = (5, 5)
    channels: tuple[int, ...] = (128, 192, 256)
    dilations: tuple[int, ...] = field(default=(1, 3, 9))

    def to_json(self) -> dict:
        return asdict(self)


class _AudioStream(AudioStreamDecoder):
    def __init__(self, codec: "TinyAudioCodec", batch: int):
        self.codec = codec
        self.state: dict[str, torch.Tensor] | None = None
        self.batch = batch

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.codec.check_latents(latents)
        out, self.state = self.codec.decode_stream(latents, self.state)
        return out


class TinyAudioCodec(AudioCodec):
    kind = "tiny-audio"

    def __init__(self, config: TinyAudioConfig):
        super().__init__()
        self.config = config
        p = config.patch
        down = 1
        for s in config.strides:
            down *= s
        if p * down != config.hop_length:
            raise ValueError(f"patch {p} x strides {config.strides} must equal the hop {config.hop_length}")
        self.sample_rate, self.hop_length, self.latent_channels = config.sample_rate, config.hop_length, config.latent_channels
        ch = config.channels
        z = config.latent_channels
        # encoder (offline, non-causal)
        enc: list[nn.Module] = [nn.Conv1d(1, ch[0], 2 * p, stride=p, padding=(p + 1) // 2)]
        for i, s in enumerate(config.strides):
            enc += [ResBlock1d(ch[i], d) for d in config.dilations]
            enc += [nn.SiLU(), nn.Conv1d(ch[i], ch[i + 1], 2 * s, stride=s, padding=(s + 1) // 2)]
        enc += [ResBlock1d(ch[-1], 1), nn.SiLU(), nn.Conv1d(ch[-1], z, 1)]
        self.enc = nn.Sequential(*enc)
        # decoder (causal, streamable)
        self.dec_in = CausalConv1d(z, ch[-1], 3)
        self.dec_stages = nn.ModuleList()
        for i in reversed(range(len(config.strides))):
            self.dec_stages.append(
                nn.ModuleDict(
                    {
                        "blocks": nn.ModuleList([CausalResBlock1d(ch[i + 1], d) for d in config.dilations]),
                        "up": CausalConv1d(ch[i + 1], ch[i], 3),
                    }
                )
            )
        self.dec_blocks = nn.ModuleList([CausalResBlock1d(ch[0], d) for d in config.dilations])
        self.dec_out = nn.Conv1d(ch[0], 2 * p, 1)
        self.register_buffer("window", torch.hann_window(2 * p, periodic=True))
        self.register_buffer("latents_mean", torch.zeros(z))
        self.register_buffer("latents_std", torch.ones(z))

    def encode_raw(self, audio: torch.Tensor) -> torch.Tensor:
        return self.enc(audio.unsqueeze(1))

    def encode(self, audio: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        self.check_audio(audio, sample_rate)
        raw = self.encode_raw(audio)
        return (raw - self.latents_mean[:, None]) / self.latents_std[:, None]

    def decode_raw(self, raw: torch.Tensor, state: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Causal decode of raw latents; `state` carries every layer's past and the overlap tail."""
        state = dict(state or {})
        new: dict[str, torch.Tensor] = {}
        h, new["in"] = self.dec_in(raw, state.get("in"))
        k = 0
        for i, stage in enumerate(self.dec_stages):
            for block in stage["blocks"]:
                h, new[f"b{k}"] = block(h, state.get(f"b{k}"))
                k += 1
            stride = self.config.strides[len(self.config.strides) - 1 - i]
            h = h.repeat_interleave(stride, dim=2)
            h, new[f"up{i}"] = stage["up"](h, state.get(f"up{i}"))
        for block in self.dec_blocks:
            h, new[f"b{k}"] = block(h, state.get(f"b{k}"))
            k += 1
        frames = self.dec_out(F.silu(h)) * self.window[None, :, None]  # (B, 2p, n)
        p = self.config.patch
        b, _, n = frames.shape
        # overlap-add: window j covers samples [p*j, p*j + 2p); the second half of the last
        # window belongs to the next call
        head = frames[:, :p].transpose(1, 2).reshape(b, n * p)
        tail = frames[:, p:].transpose(1, 2).reshape(b, n * p)
        out = head.clone()
        out[:, p:] += tail[:, :-p]
        carry = state.get("tail")
        if carry is not None:
            out[:, :p] += carry
        new["tail"] = tail[:, -p:]
        return out, new

    def decode_stream(self, latents: torch.Tensor, state: dict[str, torch.Tensor] | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raw = latents * self.latents_std[:, None] + self.latents_mean[:, None]
        out, state = self.decode_raw(raw, state)
        return out.clamp(-1, 1), state

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.check_latents(latents)
        return self.decode_stream(latents, None)[0]

    def stream_decoder(self, batch: int = 1) -> AudioStreamDecoder:
        return _AudioStream(self, batch)


__all__ = ["TinyVideoCodec", "TinyVideoConfig", "TinyAudioCodec", "TinyAudioConfig", "CHUNK_FRAMES"]
