"""The tiny video codec: each latent codes a group of four frames (the first latent of a chunk one
frame, repeated) with a 2-D convolutional autoencoder: space-to-depth by 2, three stride-2 stages.

Its decoder may also read the stream's reference image (`reference_channels`) and the latent
before each one (`previous_latent`), blend each latent's first frames toward the frame shown
before them (`blend_previous_frame`), its last frame toward the next latent's first
(`blend_next_frame`), and then its first frames again toward the frame before as now shown
(`reblend_first_frames`). Each part needs the one before it; a codec is trained part by part
onto the same encoder (`streamchar codec train --decoder-only --init`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from streamchar.codecs.base import CHUNK_LATENTS, VideoCodec, denormalise, normalise, on_codec, per_channel, repeat_reference
from streamchar.codecs.layers import ReferenceFuse, ResBlock2d, gate_logits
from streamchar.errors import StreamcharError


@dataclass
class TinyVideoConfig:
    height: int = 128
    width: int = 128
    latent_channels: int = 48
    encoder_channels: tuple[int, ...] = (32, 64, 128, 192)  # at H/2, H/4, H/8, H/16
    decoder_channels: tuple[int, ...] = (192, 128, 64, 32)  # at H/16, H/8, H/4, H/2
    # widths of the reference image's features at H/2, H/4, ... (one to four levels), which the
    # decoder reads at its levels of the same resolution; None: the decoder reads the latents alone
    reference_channels: tuple[int, ...] | None = None
    # the decoder also reads the latent before each one (for a chunk's first, the previous
    # chunk's last), so that chunks join without a step; decoding then carries that latent
    previous_latent: bool = False
    # each latent's frames may blend toward the frame shown before them, with gates the decoder
    # predicts per frame and pixel (needs previous_latent); see TinyVideoCodec.blend
    blend_previous_frame: bool = False
    # each latent's last frame may also blend toward the next latent's first frame in the same
    # chunk (needs blend_previous_frame); see TinyVideoCodec.blend_back
    blend_next_frame: bool = False
    # after that, each latent's first frames blend again, with the same gates, toward the frame
    # before as it is then shown (blended toward them); needs blend_next_frame
    reblend_first_frames: bool = False

    def to_json(self) -> dict:
        return asdict(self)

    def check(self) -> None:
        """Each decoder part needs the one before it."""
        if len(self.encoder_channels) != 4 or len(self.decoder_channels) != 4:
            raise ValueError("encoder_channels and decoder_channels name four levels: H/2, H/4, H/8, H/16")
        if self.reference_channels is not None and not 1 <= len(self.reference_channels) <= 4:
            raise ValueError("reference_channels name one to four levels: H/2, H/4, H/8, H/16")
        if self.blend_previous_frame and not self.previous_latent:
            raise ValueError("blend_previous_frame needs previous_latent: the gates must know where the frame before came from")
        if self.blend_next_frame and not self.blend_previous_frame:
            raise ValueError("blend_next_frame needs blend_previous_frame: the next latent's first frame is the one blended toward this one")
        if self.reblend_first_frames and not self.blend_next_frame:
            raise ValueError("reblend_first_frames needs blend_next_frame: the frame before is blended again once it has blended toward the next")


def _encoder(enc: tuple[int, ...], z: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.PixelUnshuffle(2), nn.Conv2d(12 * 4, enc[0], 3, padding=1), ResBlock2d(enc[0])]
    for cin, cout in zip(enc, enc[1:]):
        layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), ResBlock2d(cout)]
    return nn.Sequential(*layers, nn.SiLU(), nn.Conv2d(enc[-1], z, 1))


def _decoder(dec: tuple[int, ...], z: int) -> tuple[nn.Sequential, list[int]]:
    """The decoder and the index of each level's last layer, H/16 first."""
    layers: list[nn.Module] = [nn.Conv2d(z, dec[0], 3, padding=1), ResBlock2d(dec[0]), ResBlock2d(dec[0])]
    ends = [len(layers) - 1]
    for cin, cout in zip(dec, dec[1:]):
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1), ResBlock2d(cout)]
        ends.append(len(layers) - 1)
    return nn.Sequential(*layers, nn.SiLU(), nn.Conv2d(dec[-1], 12 * 4, 3, padding=1), nn.PixelShuffle(2)), ends


def _reference_levels(ref: tuple[int, ...]) -> nn.ModuleList:
    levels = [nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(12, ref[0], 3, padding=1), ResBlock2d(ref[0]))]
    levels += [nn.Sequential(nn.Conv2d(cin, cout, 4, stride=2, padding=1), ResBlock2d(cout)) for cin, cout in zip(ref, ref[1:])]
    return nn.ModuleList(levels)


def _zero_last(head: nn.Sequential, index: int) -> nn.Sequential:
    nn.init.zeros_(head[index].weight)
    nn.init.zeros_(head[index].bias)
    return head


def _blend_gates(features: int) -> nn.Sequential:
    """One gate per frame of a group, at full resolution, from the decoder's last features, the
    group's frames and the frame before: where the two differ only by coding error the frame before
    can be taken, where the picture moves it must not. The gates start as a linear cross-fade (3/4,
    1/2, 1/4 of the frame before in a group's first three frames; 1/2 in a chunk's single-frame
    latent); the first layer is 1x1 to keep decoding cheap."""
    head = nn.Sequential(nn.Conv2d(features + 12 + 48, 32, 1), nn.SiLU(), nn.Conv2d(32, 4 * 4, 3, padding=1), nn.PixelShuffle(2))
    nn.init.zeros_(head[2].weight)
    with torch.no_grad():
        ramp = torch.tensor([0.75, 0.5, 0.25, 0.5])
        head[2].bias.copy_(torch.log(ramp / (1 - ramp)).repeat_interleave(4))  # PixelShuffle: 4 inputs per gate
    return head


def _blend_back_gates(features: int) -> nn.Sequential:
    """One gate per pixel for a group's last frame, from the decoder's last features, that frame
    and the next latent's first shown frame; it starts half way (sigmoid(0)), a plain average of
    the two."""
    head = nn.Sequential(nn.Conv2d(features + 12 + 12, 32, 1), nn.SiLU(), nn.Conv2d(32, 4, 3, padding=1), nn.PixelShuffle(2))
    return _zero_last(head, 2)


class TinyVideoCodec(VideoCodec):
    """The decoder is the heavier half: it runs per chunk while streaming, the encoder only
    once per clip offline (and on the reference frame), and the flat colours and sharp
    outlines of SynthTalk frames are what a weak decoder blurs.

    With `reference_channels` the decoder also reads the reference image, which every stream
    has: 48 channels at 8x8 cannot carry a picture's sharp static detail (background, clothes,
    hair) four frames at a time, the reference can, so the latents are left to carry what
    moves. The encoder does not see the reference: trained with `--decoder-only --init`, the
    latents (and every model trained on them) stay those of the codec it starts from."""

    kind = "tiny-video"
    holds_half_precision = False  # its encoder's latents must stay those of the latent cache; decoding runs in bfloat16 by autocast (`decode_bf16`)

    def __init__(self, config: TinyVideoConfig):
        super().__init__()
        config.check()
        self.config = config
        self.height, self.width, self.latent_channels = config.height, config.width, config.latent_channels
        enc, dec, z = tuple(config.encoder_channels), tuple(config.decoder_channels), config.latent_channels
        self.enc = _encoder(enc, z)
        self.dec, self._level_ends = _decoder(dec, z)
        self.needs_reference = config.reference_channels is not None
        if config.reference_channels is not None:
            ref = tuple(config.reference_channels)
            self.ref_levels = _reference_levels(ref)
            self.ref_fuse = nn.ModuleList(ReferenceFuse(c, r) for c, r in zip(reversed(dec), ref))  # H/2 first
        self.reads_previous = config.previous_latent
        if config.previous_latent:  # added to the decoder's first layer; the last conv starts at zero
            self.prev_in = _zero_last(nn.Sequential(nn.Conv2d(z, dec[0], 3, padding=1), nn.SiLU(), nn.Conv2d(dec[0], dec[0], 1)), 2)
        self.reads_previous_frame = config.blend_previous_frame
        if config.blend_previous_frame:
            self.blend_gates = _blend_gates(dec[-1])
        self.reads_next_frame = config.blend_next_frame
        if config.blend_next_frame:
            self.blend_back_gates = _blend_back_gates(dec[-1])
        self.reblends = config.reblend_first_frames
        self.register_buffer("latents_mean", torch.zeros(z))
        self.register_buffer("latents_std", torch.ones(z))

    def decoder_channels_last(self) -> None:
        """oneDNN's channels-last convolutions decode faster on CPU. The encoder keeps its layout:
        its latents stay bit for bit those of the latent cache the models were trained on (a long
        stream feeds a rounding difference in its reference latent back through hundreds of chunks)."""
        for name in ("dec", "ref_levels", "ref_fuse", "prev_in", "blend_gates", "blend_back_gates"):
            if hasattr(self, name):
                getattr(self, name).to(memory_format=torch.channels_last)

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

    def prepare_reference(self, image: torch.Tensor) -> list[torch.Tensor] | None:
        """(B, 3, H, W) in [-1, 1] -> the reference features at H/2, H/4, ..., computed once per stream."""
        self.check_reference(image)
        return self.reference_features(on_codec(self, image)) if self.needs_reference else None

    def reference_features(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Unchecked, for training on crops of the frames and of their reference."""
        feats, h = [], image
        for level in self.ref_levels:
            h = level(h)
            feats.append(h)
        return feats

    def mean_latent(self, like: torch.Tensor) -> torch.Tensor:
        """The raw latent that stands for "no latent before" (a stream's first): the mean one."""
        return per_channel(self.latents_mean, like).expand_as(like)

    def _reference_fuse(self, reference: list[torch.Tensor] | None) -> dict[int, tuple[ReferenceFuse, torch.Tensor]]:
        """The decoder layers after which the reference's features are read, with their fuse blocks."""
        if not self.needs_reference:
            return {}
        if reference is None:
            raise StreamcharError("this video codec decodes with the reference image: pass reference=codec.prepare_reference(image)")
        if len(reference) != len(self.ref_fuse):
            raise StreamcharError(f"reference features have {len(reference)} levels, this codec reads {len(self.ref_fuse)}: "
                                  f"prepare them with this codec's prepare_reference")
        return {end: (f, r) for end, f, r in zip(reversed(self._level_ends), self.ref_fuse, reference)}

    def decode_groups(self, raw: torch.Tensor, reference: list[torch.Tensor] | None = None,
                      previous: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw latents (M, z, h, w) -> groups of four frames (M, 12, H, W) and, for a codec that
        blends, the decoder's last features (M, C, H/2, W/2) for `blend`; `reference` (from
        `prepare_reference`) holds one image for all M groups or one per group; `previous` the raw
        latent before each (the mean latent where there is none: a stream's first)."""
        fuse = self._reference_fuse(reference)
        h, features = raw, None
        for i, layer in enumerate(self.dec):
            if i == len(self.dec) - 2 and self.reads_previous_frame:  # what the last convolution reads
                features = h
            h = layer(h)
            if i == 0 and self.reads_previous:
                h = h + self.prev_in(self.mean_latent(raw) if previous is None else previous)
            if i in fuse:
                block, ref = fuse[i]
                h = block(h, ref)
        return h, features

    def blend(self, groups: torch.Tensor, features: torch.Tensor, towards: torch.Tensor, single: torch.Tensor) -> torch.Tensor:
        """Frame j of each group becomes D_j + g_j * (P - D_j), with P the frame shown before the
        group (M, 3, H, W) and gates g from `blend_gates`. Each latent is decoded on its own, with
        its own error, so the picture steps at every latent even where nothing moves; taking the
        frame before where only coding error tells them apart spreads that step over the group. A
        four-frame group's last frame is its own (gate 0): the next group's frame before is then
        known from the same batched pass. A chunk's single-frame latent (`single`, (M,) bool) shows
        only its last frame, which blends too."""
        m, _, h, w = groups.shape
        groups, towards = groups.contiguous(), towards.to(groups.dtype).contiguous()  # a float32 frame before, under bf16 autocast
        g = torch.sigmoid(gate_logits(self.blend_gates, features, towards, groups)).reshape(m, 4, 1, h, w)
        own_last = torch.ones(m, 4, 1, 1, 1, dtype=g.dtype, device=g.device)
        own_last[:, 3] = single.to(g.dtype).view(m, 1, 1, 1)
        return torch.lerp(groups.reshape(m, 4, 3, h, w), towards[:, None], g * own_last).reshape(m, 12, h, w)

    def blend_back(self, groups: torch.Tensor, features: torch.Tensor, following: torch.Tensor) -> torch.Tensor:
        """A group's last frame becomes D_3 + g * (F - D_3), with F the next latent's first shown
        frame (M, 3, H, W), already blended toward D_3. Each latent codes its middle frames best;
        the frames on either side of a latent boundary carry errors of different latents, so taking
        from the next where the two agree halves part of the error. Only within a chunk: its last
        latent has no next until the next chunk exists, and it stays its own, so streaming still
        equals decoding whole. The chunk's first (single-frame) latent stays as blended toward the
        chunk before: moved toward the next frame too, it widened the step across chunk boundaries."""
        last = groups[:, 9:12].contiguous()
        g = torch.sigmoid(gate_logits(self.blend_back_gates, features, last, following.contiguous()))
        return torch.cat([groups[:, :9], torch.lerp(last, following.to(last.dtype), g.to(last.dtype))], dim=1)

    def encode_chunks(self, chunks: torch.Tensor) -> torch.Tensor:
        n = chunks.shape[0]
        raw = self.encode_groups(self._groups(on_codec(self, chunks)))
        z = normalise(raw, self.latents_mean, self.latents_std)
        return z.reshape(n, CHUNK_LATENTS, *z.shape[1:]).permute(0, 2, 1, 3, 4)

    def decode_chunks(self, latents: torch.Tensor, reference: list[torch.Tensor] | None = None,
                      previous: torch.Tensor | None = None, previous_frame: torch.Tensor | None = None) -> torch.Tensor:
        n, z, t, h, w = latents.shape
        latents, previous, previous_frame = (on_codec(self, x) for x in (latents, previous, previous_frame))
        raw = denormalise(latents, self.latents_mean, self.latents_std)
        flat = raw.permute(0, 2, 1, 3, 4).reshape(n * t, z, h, w)
        before = None
        if self.reads_previous:  # each latent's predecessor: the one before it, or for the first the given one
            first = self.mean_latent(raw[:, :, 0]) if previous is None else denormalise(previous, self.latents_mean, self.latents_std)
            before = torch.cat([first[:, :, None], raw[:, :, :-1]], dim=2).permute(0, 2, 1, 3, 4).reshape(n * t, z, h, w)
        reference = repeat_reference(reference, n, t)
        groups, features = self.decode_groups(flat, reference, before)
        if features is not None:
            groups = self._blend_chunks(groups, features, previous_frame, n, t)
        return self._ungroup(groups, n).clamp(-1, 1)

    def _blend_chunks(self, groups: torch.Tensor, features: torch.Tensor, previous_frame: torch.Tensor | None, n: int, t: int) -> torch.Tensor:
        """The frame shown before each latent: for a chunk's first, the frame before the chunk (at
        a stream's start its own frame: nothing to blend toward); for its second, the first's
        blended frame; for the others, the last frame of the one before, which is its own."""
        size = groups.shape[-2:]
        d, f = groups.reshape(n, t, 12, *size), features.reshape(n, t, *features.shape[1:])
        p0 = d[:, 0, 9:12].clamp(-1, 1) if previous_frame is None else previous_frame
        first = self.blend(d[:, 0], f[:, 0], p0, torch.ones(n, dtype=torch.bool))
        towards = torch.cat([first[:, None, 9:12], d[:, 1:-1, 9:12]], dim=1).clamp(-1, 1)
        rest = self.blend(d[:, 1:].reshape(n * (t - 1), 12, *size), f[:, 1:].flatten(0, 1), towards.flatten(0, 1),
                          torch.zeros(n * (t - 1), dtype=torch.bool))
        out = torch.cat([first[:, None], rest.reshape(n, t - 1, 12, *size)], dim=1)
        if self.reads_next_frame:
            out = self._blend_toward_next(out, d, f)
        return out.reshape(n * t, 12, *size)

    def _blend_toward_next(self, out: torch.Tensor, d: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """Each latent but the chunk's first and last toward the next one's first frame (`out`, the
        blended groups (n, t, 12, H, W); `d` and `f`, the decoded ones and their features); then,
        for a codec that reblends, each latent from the third on again toward the frame before as
        now shown, last frames kept."""
        n, t, _, *size = out.shape
        following = out[:, 2:, 0:3].clamp(-1, 1).flatten(0, 1)
        back = self.blend_back(out[:, 1:-1].flatten(0, 1), f[:, 1:-1].flatten(0, 1), following)
        out = torch.cat([out[:, :1], back.reshape(n, t - 2, 12, *size), out[:, -1:]], dim=1)
        if not self.reblends:
            return out
        towards = out[:, 1:-1, 9:12].clamp(-1, 1).flatten(0, 1)
        again = self.blend(d[:, 2:].flatten(0, 1), f[:, 2:].flatten(0, 1), towards, torch.zeros(n * (t - 2), dtype=torch.bool))
        again = torch.cat([again[:, :9].reshape(n, t - 2, 9, *size), out[:, 2:, 9:12]], dim=2)
        return torch.cat([out[:, :2], again], dim=1)
