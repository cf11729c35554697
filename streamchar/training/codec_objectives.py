"""What a tiny codec's training step computes, per kind: a batch, coded with noisy latents and
decoded as a stream decodes it, and its loss; with an anchor, also a loss on the latents' move
from the anchor codec's. And the paper preset's audio VAE (`OobleckObjective`)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import nn

from streamchar.codecs.tiny import TinyAudioCodec, TinyVideoCodec
from streamchar.training.codec_data import AudioSegments, VideoBatch, VideoGroups
from streamchar.training.codec_losses import anchor_loss, frames_loss, stft_loss, temporal_loss

# noise added to the latents in training, relative to their std: a generator's latents are never
# exactly an encoder's, and the decoder must read them all the same
LATENT_NOISE = 0.05
LATENT_PENALTY = 1e-4  # weight of the raw latents' mean square, which keeps them near the origin


def _noisy(raw: torch.Tensor) -> torch.Tensor:
    return raw + LATENT_NOISE * raw.detach().std() * torch.randn_like(raw)


def _where(has: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per sample: `a` where `has`, else `b`."""
    return torch.where(has.view(-1, 1, 1, 1), a, b)


class CodecObjective(ABC):
    """A kind's step (`step`: loss, input, raw latents, logged parts) and its encoder (`encode`);
    with an anchor (init's codec, frozen), `anchor_weight` times the move of the raw latents from
    the anchor's for the same input is added."""

    def __init__(self, model: nn.Module, anchor: nn.Module | None = None, anchor_weight: float = 0.0):
        self.model, self.anchor, self.anchor_weight = model, anchor, anchor_weight

    @abstractmethod
    def encode(self, codec: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Raw latents of `x` by `codec` (the trained one or the anchor)."""

    @abstractmethod
    def step(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """A batch's loss, the batch, its raw latents and the loss's parts to log."""

    @abstractmethod
    def statistics_sample(self) -> torch.Tensor:
        """Raw latents of a batch of training data, (z, n)."""

    def loss(self) -> tuple[torch.Tensor, dict]:
        """The step's loss (with the anchor's term) and its parts to log."""
        loss, x, raw, parts = self.step()
        if self.anchor is not None:
            with torch.no_grad():
                target = self.encode(self.anchor, x)
            loss = loss + anchor_loss(raw, target, self.model.latents_std, self.anchor_weight, parts)  # type: ignore[arg-type]
        return loss, parts


class AudioObjective(CodecObjective):
    """One-second segments; the decoder's frames against the input's analysis, and the
    waveform's multi-resolution STFT against the input's."""

    def __init__(self, model: TinyAudioCodec, source: AudioSegments, batch: int, anchor: nn.Module | None = None, anchor_weight: float = 0.0):
        super().__init__(model, anchor, anchor_weight)
        self.codec, self.source, self.batch = model, source, batch

    def encode(self, codec: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return codec.encode_raw(x)  # type: ignore[operator]

    def step(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        m = self.codec
        x = self.source.batch(self.batch, m.sample_rate, m.hop_length)
        raw = m.encode_raw(x)
        logmag, phase, _ = m.decode_frames(_noisy(raw))
        y, _ = m.synthesize(logmag, phase, None)
        frames = (logmag - m.analysis(x)).abs().mean()
        spec = stft_loss(y, x)
        loss = frames + spec + LATENT_PENALTY * raw.pow(2).mean()
        return loss, x, raw, {"frames": frames.item(), "stft": spec.item()}

    def statistics_sample(self) -> torch.Tensor:
        x = self.source.batch(8, 4 * self.codec.sample_rate, self.codec.hop_length)
        raw = self.codec.encode_raw(x)
        return raw.transpose(0, 1).reshape(raw.shape[1], -1)


class VideoObjective(CodecObjective):
    """Groups of four frames. With the latent before each group in the batch, the decoder reads
    it (noisy like the group's own). With `stream_decode` (a codec that blends), each group is
    blended as a stream blends it: toward the frame shown before it, which is the group before
    decoded as a stream decodes it, and (a codec that blends toward the next) its last frame toward
    the next group's first; `seam_weight` weighs the loss on the frame-to-frame change."""

    def __init__(self, model: TinyVideoCodec, source: VideoGroups, batch: int, seam_weight: float = 0.0,
                 anchor: nn.Module | None = None, anchor_weight: float = 0.0):
        super().__init__(model, anchor, anchor_weight)
        self.codec, self.source, self.batch, self.seam_weight = model, source, batch, seam_weight

    def encode(self, codec: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return codec.encode_groups(x)  # type: ignore[operator]

    def _neighbour(self, groups: torch.Tensor, has: torch.Tensor) -> torch.Tensor:
        """Raw latents of the groups before or after, as noisy as the current ones; the mean latent where there is none."""
        with torch.no_grad():
            raw = self.codec.encode_groups(groups)
        raw = raw + LATENT_NOISE * raw.std() * torch.randn_like(raw)
        return _where(has, raw, self.codec.mean_latent(raw))

    def step(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        m, b = self.codec, self.source.batch(self.batch)
        x = b.groups
        raw = m.encode_groups(x)
        noisy = _noisy(raw)
        prev = self._neighbour(b.before, b.has_before) if b.before is not None and b.has_before is not None else None
        ref = m.reference_features(b.references) if m.needs_reference else None
        y, features = m.decode_groups(noisy, ref, prev)
        shown_before = None
        if b.before2 is not None and features is not None:
            y, shown_before = self._as_streamed(b, y, features, ref, prev, noisy)
        loss, parts = frames_loss(y, x, b.masks)
        loss = loss + LATENT_PENALTY * raw.pow(2).mean()
        if self.seam_weight and shown_before is not None:
            assert b.before is not None and b.first is not None and b.has_before is not None
            seam, seam_parts = temporal_loss(y, x, b.masks, b.first, shown_before, b.before[:, 9:12], b.has_before)
            loss = loss + self.seam_weight * seam
            parts.update(seam_parts)
        return loss, x, raw, parts

    def _as_streamed(self, b: VideoBatch, y: torch.Tensor, features: torch.Tensor, ref: list[torch.Tensor] | None,
                     prev: torch.Tensor | None, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The groups `y` blended as a stream blends them, and the frame a stream shows before each
        (at a stream's start, the group's own last frame). The group before is decoded as a stream
        decodes it, a single-frame one left unblended; for a codec that reblends, its last frame is
        then blended toward this group's first as blended once."""
        m = self.codec
        assert b.has_before is not None and b.before2 is not None and b.has_before2 is not None and b.first is not None
        prev2 = self._neighbour(b.before2, b.has_before2)
        with torch.no_grad():
            y_before, f_before = m.decode_groups(prev, ref, prev2)
        shown_before = _where(b.has_before, y_before[:, 9:12], y[:, 9:12].detach()).clamp(-1, 1)
        if m.reblends and f_before is not None and b.before_blends_back is not None:
            with torch.no_grad():
                once = m.blend(y, features, shown_before, b.first == 3)[:, 0:3].clamp(-1, 1)
                blended = m.blend_back(y_before, f_before, once)[:, 9:12].clamp(-1, 1)
            shown_before = _where(b.before_blends_back, blended, shown_before)
        y = m.blend(y, features, shown_before, b.first == 3)
        if b.after is not None and b.has_after is not None:
            y = self._blend_toward_next(y, features, ref, noisy, b.after, b.has_after)
        return y, shown_before

    def _blend_toward_next(self, y: torch.Tensor, features: torch.Tensor, ref: list[torch.Tensor] | None, noisy: torch.Tensor,
                           after: torch.Tensor, has_after: torch.Tensor) -> torch.Tensor:
        """Each group's last frame toward the next group's first, that one decoded (reading this
        group's latent) and blended toward this group's last frame as a stream blends it."""
        m = self.codec
        with torch.no_grad():
            raw_after = self._neighbour(after, has_after)
            y_after, f_after = m.decode_groups(raw_after, ref, noisy)
            assert f_after is not None
            none = torch.zeros(len(y_after), dtype=torch.bool)
            following = m.blend(y_after, f_after, y[:, 9:12].clamp(-1, 1), none)[:, 0:3].clamp(-1, 1)
        return _where(has_after, m.blend_back(y, features, following), y)

    def statistics_sample(self) -> torch.Tensor:
        x = self.source.batch(16, crop=False).groups
        raw = self.codec.encode_groups(x)
        return raw.transpose(0, 1).reshape(raw.shape[1], -1)


# Stable Audio Open's VAE recipe (stable-audio-tools, configs/model_configs/autoencoders/stable_audio_2_0_vae.json):
# the same KL as diffusers' posterior computes, (mean² + var - log var - 1) summed over channels, at weight 1e-4 beside a
# multi-resolution STFT loss of weight 1, over the same window sizes, 2048 down to 32 (hop a quarter of each)
OOBLECK_KL_WEIGHT = 1e-4
OOBLECK_STFT_SIZES = (2048, 1024, 512, 256, 128, 64, 32)


class OobleckObjective(CodecObjective):
    """The paper preset's audio VAE (diffusers' `AutoencoderOobleck`): segments of `segment`
    latents of mono speech, copied to the VAE's channels as `OobleckAudioCodec` codes it; each
    decoded from a latent drawn from the posterior. Loss: `stft_loss` (the tiny audio codec's
    spectral convergence + log-magnitude L1) of every decoded channel against the input, over
    Stable Audio Open's window sizes, + OOBLECK_KL_WEIGHT x the posterior's KL to N(0, 1).

    The KL weight is Stable Audio Open's: small enough that reconstruction leads (a latent channel
    costs little to use), large enough to keep the latents near unit scale, which the DiT's flow
    matching against unit noise assumes. Its adversarial and feature-matching losses are left out:
    the decoder is trained by the spectra alone."""

    def __init__(self, vae: nn.Module, source: AudioSegments, batch: int, segment: int):
        super().__init__(vae)
        self.vae, self.source, self.batch, self.segment = vae, source, batch, segment
        self.hop = math.prod(vae.config.downsampling_ratios)  # type: ignore[union-attr]

    def _channels(self, x: torch.Tensor) -> torch.Tensor:
        p = next(self.vae.parameters())
        return x[:, None].expand(-1, self.vae.config.audio_channels, -1).to(p.device, p.dtype)  # type: ignore[union-attr]

    def encode(self, codec: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return codec.encode(self._channels(x)).latent_dist.mode()  # type: ignore[operator]

    def step(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        x = self.source.batch(self.batch, self.segment * self.hop, self.hop)
        inputs = self._channels(x)
        posterior = self.vae.encode(inputs).latent_dist  # type: ignore[operator]
        y = self.vae.decode(posterior.sample()).sample.float()  # type: ignore[operator]
        spec = stft_loss(y.flatten(0, 1), inputs.float().flatten(0, 1), OOBLECK_STFT_SIZES)
        kl = posterior.kl().float()
        loss = spec + OOBLECK_KL_WEIGHT * kl
        return loss, x, posterior.mean, {"stft": spec.item(), "kl": kl.item(), "latent_std": posterior.mean.detach().float().std().item()}

    def statistics_sample(self) -> torch.Tensor:
        with torch.no_grad():
            raw = self.encode(self.vae, self.source.batch(8, self.segment * self.hop, self.hop)).float()
        return raw.transpose(0, 1).reshape(raw.shape[1], -1)
