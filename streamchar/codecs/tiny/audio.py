"""The tiny audio codec: log-magnitude STFT frames (hop 200) in, one stride-5 stage down to 24
latents a second; the causal decoder predicts log-magnitude and phase per frame and overlap-adds
their inverse FFTs, so it streams with a carried state (the last layers' past inputs and the
overlap tail)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from streamchar.codecs.base import AudioCodec, AudioStreamDecoder, denormalise, normalise, on_codec
from streamchar.codecs.layers import CausalConv1d, CausalResBlock1d, ResBlock1d

State = dict[str, torch.Tensor]  # a streaming decoder's carried inputs, by layer, and its overlap tail


@dataclass
class TinyAudioConfig:
    sample_rate: int = 24000
    hop_length: int = 1000
    latent_channels: int = 64
    frame_hop: int = 200  # STFT hop of the analysis and the synthesis; hop_length / frame_hop frames per latent
    n_fft: int = 800
    channels: tuple[int, int] = (256, 256)  # width at the frame rate, at the latent rate
    dilations: tuple[int, ...] = field(default=(1, 3, 9))

    def to_json(self) -> dict:
        return asdict(self)


class _AudioStream(AudioStreamDecoder):
    def __init__(self, codec: TinyAudioCodec):
        self.codec = codec
        self.state: State | None = None

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.codec.check_latents(latents)
        out, self.state = self.codec.decode_stream(latents, self.state)
        return out


class TinyAudioCodec(AudioCodec):
    """Log-magnitude STFT frames in, STFT frames (log-magnitude and phase) out, like Vocos:
    magnitudes are what a listener or a recogniser hears, and they are easy to learn on CPU.
    Frame j of the analysis and of the synthesis covers samples [hop * j, hop * j + n_fft)."""

    kind = "tiny-audio"
    holds_half_precision = False  # its STFT and inverse FFT take float32 only on a CPU

    def __init__(self, config: TinyAudioConfig):
        super().__init__()
        self.config = config
        if config.hop_length % config.frame_hop or config.n_fft % config.frame_hop:
            raise ValueError("frame_hop must divide hop_length and n_fft")
        self.sample_rate, self.hop_length, self.latent_channels = config.sample_rate, config.hop_length, config.latent_channels
        self.up = config.hop_length // config.frame_hop
        bins = config.n_fft // 2 + 1
        c1, c2 = config.channels
        z = config.latent_channels
        s = self.up
        self.enc = nn.Sequential(
            nn.Conv1d(bins, c1, 3, padding=1),
            *[ResBlock1d(c1, d) for d in config.dilations],
            nn.SiLU(),
            nn.Conv1d(c1, c2, 2 * s, stride=s, padding=(s + 1) // 2),
            ResBlock1d(c2, 1),
            ResBlock1d(c2, 3),
            nn.SiLU(),
            nn.Conv1d(c2, z, 1),
        )
        self.dec_in = CausalConv1d(z, c2, 3)
        self.dec_low = nn.ModuleList([CausalResBlock1d(c2, d) for d in (1, 3)])
        self.dec_up = CausalConv1d(c2, c1, 3)
        self.dec_high = nn.ModuleList([CausalResBlock1d(c1, d) for d in config.dilations])
        self.dec_out = nn.Conv1d(c1, 2 * bins, 1)
        self.register_buffer("window", torch.hann_window(config.n_fft, periodic=True))
        self.register_buffer("latents_mean", torch.zeros(z))
        self.register_buffer("latents_std", torch.ones(z))

    def analysis(self, audio: torch.Tensor) -> torch.Tensor:
        """Log-magnitude frames (B, bins, S / frame_hop); the end is padded so every hop has a frame."""
        c = self.config
        x = F.pad(audio, (0, c.n_fft - c.frame_hop))
        spec = torch.stft(x, c.n_fft, c.frame_hop, window=self.window, center=False, return_complex=True)
        return torch.log(spec.abs() + 1e-2)

    def encode_raw(self, audio: torch.Tensor) -> torch.Tensor:
        return self.enc(self.analysis(audio))

    def encode(self, audio: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        self.check_audio(audio, sample_rate)
        raw = self.encode_raw(on_codec(self, audio))
        return normalise(raw, self.latents_mean, self.latents_std)

    def decode_frames(self, raw: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Causal: raw latents (B, z, n) -> log-magnitude and phase frames (B, bins, n * up)."""
        state = dict(state or {})
        new: State = {}
        h, new["in"] = self.dec_in(raw, state.get("in"))
        for k, block in enumerate(self.dec_low):
            h, new[f"low{k}"] = block(h, state.get(f"low{k}"))
        h = h.repeat_interleave(self.up, dim=2)
        h, new["up"] = self.dec_up(h, state.get("up"))
        for k, block in enumerate(self.dec_high):
            h, new[f"high{k}"] = block(h, state.get(f"high{k}"))
        logmag, phase = self.dec_out(F.silu(h)).chunk(2, dim=1)
        return logmag, phase, new

    def synthesize(self, logmag: torch.Tensor, phase: torch.Tensor, tail: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Overlap-add of the frames; samples past the last frame's hop go into the returned tail."""
        c = self.config
        spec = torch.exp(logmag.clamp(max=8.0)) * torch.exp(1j * phase)
        frames = torch.fft.irfft(spec, n=c.n_fft, dim=1) * self.window[None, :, None]
        n = frames.shape[2]
        length = c.frame_hop * (n - 1) + c.n_fft
        out = F.fold(frames, output_size=(1, length), kernel_size=(1, c.n_fft), stride=(1, c.frame_hop)).reshape(frames.shape[0], length)
        if tail is not None:
            out = torch.cat([out[:, : tail.shape[1]] + tail, out[:, tail.shape[1] :]], dim=1)
        keep = c.frame_hop * n
        return out[:, :keep], out[:, keep:]

    def decode_raw(self, raw: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        tail = (state or {}).get("tail")
        logmag, phase, new = self.decode_frames(raw, state)
        out, new["tail"] = self.synthesize(logmag, phase, tail)
        return out, new

    def decode_stream(self, latents: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        raw = denormalise(on_codec(self, latents), self.latents_mean, self.latents_std)
        out, state = self.decode_raw(raw, state)
        return out.clamp(-1, 1), state

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.check_latents(latents)
        return self.decode_stream(latents, None)[0]

    def stream_decoder(self) -> AudioStreamDecoder:
        return _AudioStream(self)

