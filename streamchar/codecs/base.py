"""The codec interface every scale implements.

Video latents follow the Wan2.2 VAE's causal layout, applied chunk by chunk: a chunk of
33 frames encodes to 9 latents (the first latent holds one frame, each later one four),
and chunks are coded independently, so the streaming engine can decode chunk k as soon as
it exists and reuse a chunk's latents as the next chunk's motion frames without re-encoding.
Audio latents run continuously at 24 per second; a streaming decoder carries its state from
one chunk to the next.

Latents are normalised per channel with statistics stored beside the weights.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from streamchar.errors import StreamcharError

CHUNK_FRAMES = 33
CHUNK_LATENTS = 9
LATENT_STARTS = (0, 1, 5, 9, 13, 17, 21, 25, 29)  # the frames of a chunk where a video latent's frames begin


def on_codec(codec: nn.Module, x: torch.Tensor | None) -> torch.Tensor | None:
    """`x` on the codec's device and in its weights' precision: a pipeline may hold its codecs
    apart from the tensors it hands them (a float32 codec beside a bfloat16 generator, a frame
    read on the CPU for a codec on a GPU)."""
    if x is None:
        return None
    weight = next(codec.parameters())
    return x.to(weight.device, weight.dtype)


def per_channel(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(1, -1, *[1] * (like.ndim - 2)).to(like)


def normalise(raw: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Raw latents (B, z, ...) -> latents with zero mean and unit std per channel."""
    return (raw - per_channel(mean, raw)) / per_channel(std, raw)


def denormalise(z: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return z * per_channel(std, z) + per_channel(mean, z)


def frames_to_chunks(frames: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(B, 3, T, H, W) -> (B * n_chunks, 3, 33, H, W), the last chunk padded by repeating its
    last frame; also returns T so that decoding can cut the padding off."""
    b, c, t, h, w = frames.shape
    n = max(1, -(-t // CHUNK_FRAMES))
    pad = n * CHUNK_FRAMES - t
    if pad:
        frames = torch.cat([frames, frames[:, :, -1:].expand(b, c, pad, h, w)], dim=2)
    chunks = frames.reshape(b, c, n, CHUNK_FRAMES, h, w).permute(0, 2, 1, 3, 4, 5)
    return chunks.reshape(b * n, c, CHUNK_FRAMES, h, w), t


def repeat_reference(reference: list[torch.Tensor] | None, items: int, times: int) -> list[torch.Tensor] | None:
    """Reference features for `items` items, each repeated `times` times (one per chunk or per
    latent frame); features of one image serve every item as they are."""
    if reference is None:
        return None
    out = []
    for f in reference:
        if f.shape[0] == 1:
            out.append(f)
        elif f.shape[0] == items:
            out.append(f.repeat_interleave(times, dim=0))
        else:
            raise StreamcharError(f"reference features are for {f.shape[0]} images, but {items} videos or chunks are decoded; "
                                  f"give one image for all, or one for each")
    return out


class VideoCodec(nn.Module, ABC):
    """Frames in [-1, 1], shape (B, 3, T, H, W) <-> normalised latents (B, z, T', H/16, W/16).

    A codec may decode with the stream's reference image (`needs_reference`); its features
    come from `prepare_reference` once per stream and go to every decode call."""

    latent_channels: int
    spatial_stride = 16
    height: int
    width: int
    needs_reference = False
    reads_previous_frame = False  # a chunk's decode blends toward the last frame shown before it, so chunks decode in order
    holds_half_precision = True  # its weights may be kept in a bfloat16 pipeline's precision (else they stay float32)

    def check_reference(self, image: torch.Tensor) -> None:
        if image.ndim != 4 or image.shape[1] != 3 or tuple(image.shape[-2:]) != (self.height, self.width):
            raise StreamcharError(f"the reference image must be shaped (batch, 3, {self.height}, {self.width}) in [-1, 1], got {tuple(image.shape)}")

    def prepare_reference(self, image: torch.Tensor) -> list[torch.Tensor] | None:
        """(B, 3, H, W) in [-1, 1] -> what `decode` needs of the reference (None: nothing)."""
        self.check_reference(image)
        return None

    def check_frames(self, frames: torch.Tensor) -> None:
        if frames.ndim != 5 or frames.shape[1] != 3:
            raise StreamcharError(f"video frames must be shaped (batch, 3, time, height, width), got {tuple(frames.shape)}")
        if tuple(frames.shape[-2:]) != (self.height, self.width):
            raise StreamcharError(
                f"video frames are {frames.shape[-1]}x{frames.shape[-2]} but this codec codes {self.width}x{self.height}"
            )

    def check_latents(self, latents: torch.Tensor) -> None:
        want = (self.latent_channels, self.height // self.spatial_stride, self.width // self.spatial_stride)
        if latents.ndim != 5 or (latents.shape[1], *latents.shape[3:]) != want:
            raise StreamcharError(f"video latents must be (batch, {want[0]}, time, {want[1]}, {want[2]}), got {tuple(latents.shape)}")
        if latents.shape[2] % CHUNK_LATENTS:
            raise StreamcharError(f"video latents come in chunks of {CHUNK_LATENTS}; got {latents.shape[2]} latent frames")

    @abstractmethod
    def encode_chunks(self, chunks: torch.Tensor) -> torch.Tensor:
        """(N, 3, 33, H, W) -> (N, z, 9, h, w) normalised latents."""

    @abstractmethod
    def decode_chunks(self, latents: torch.Tensor, reference: list[torch.Tensor] | None = None,
                      previous: torch.Tensor | None = None, previous_frame: torch.Tensor | None = None) -> torch.Tensor:
        """(N, z, 9, h, w) normalised latents -> (N, 3, 33, H, W) frames in [-1, 1]; `reference`
        (from `prepare_reference`) holds one image for all N chunks or one for each; `previous`
        (N, z, h, w), the normalised latent before each chunk, for a codec that reads it (zero or
        None: there is none, the stream starts here); `previous_frame` (N, 3, H, W), the last frame
        decoded before each chunk, for a codec that `reads_previous_frame` (None: the stream starts)."""

    def stream_decoder(self, reference: list[torch.Tensor] | None = None, bf16: bool = False) -> VideoStreamDecoder:
        return VideoStreamDecoder(self, reference, bf16)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Any number of frames: chunks of 33 (the last one padded) -> 9 latents each."""
        self.check_frames(frames)
        b = frames.shape[0]
        chunks, _ = frames_to_chunks(frames)
        z = self.encode_chunks(chunks)
        n = z.shape[0] // b
        return z.reshape(b, n, *z.shape[1:]).permute(0, 2, 1, 3, 4, 5).reshape(b, z.shape[1], n * CHUNK_LATENTS, *z.shape[3:])

    def decode(self, latents: torch.Tensor, frames: int | None = None, reference: list[torch.Tensor] | None = None,
               previous: torch.Tensor | None = None, previous_frame: torch.Tensor | None = None) -> torch.Tensor:
        """Latents of whole chunks -> frames (cut to `frames` when given); `reference` (from
        `prepare_reference`) holds one image for all B videos or one for each; `previous` (B, z, h, w)
        is the latent before these and `previous_frame` (B, 3, H, W) the frame decoded before them
        (None: they start the stream)."""
        self.check_latents(latents)
        b, z, t, h, w = latents.shape
        if previous is not None and tuple(previous.shape) != (b, z, h, w):
            raise StreamcharError(f"previous must be the latent before these, shaped {(b, z, h, w)}; got {tuple(previous.shape)}")
        if previous_frame is not None and tuple(previous_frame.shape) != (b, 3, self.height, self.width):
            raise StreamcharError(f"previous_frame must be the frame decoded before these, shaped {(b, 3, self.height, self.width)}; "
                                  f"got {tuple(previous_frame.shape)}")
        n = t // CHUNK_LATENTS
        chunks = latents.reshape(b, z, n, CHUNK_LATENTS, h, w).permute(0, 2, 1, 3, 4, 5)
        if self.reads_previous_frame:  # each chunk needs the frame its predecessor ends on: in order
            parts, before, frame = [], previous, previous_frame
            for c in range(n):
                parts.append(self.decode_chunks(chunks[:, c], reference, before, frame))
                before, frame = chunks[:, c, :, -1], parts[-1][:, :, -1]
            x = torch.cat(parts, dim=2)
        else:
            first = torch.zeros_like(chunks[:, :1, :, 0]) if previous is None else previous[:, None]  # zero: none
            before = torch.cat([first, chunks[:, :-1, :, -1]], dim=1).reshape(b * n, z, h, w)  # each chunk's predecessor
            x = self.decode_chunks(chunks.reshape(b * n, z, CHUNK_LATENTS, h, w), repeat_reference(reference, b, n), before)
            x = x.reshape(b, n, 3, CHUNK_FRAMES, *x.shape[-2:]).permute(0, 2, 1, 3, 4, 5).reshape(b, 3, n * CHUNK_FRAMES, *x.shape[-2:])
        return x if frames is None else x[:, :, :frames]


class VideoStreamDecoder:
    """A stream's video, chunk by chunk, carrying across chunks what the codec reads of the
    previous one (its last latent and last frame), so that the frames equal decoding the whole
    stream at once. `bf16`: the decoder's convolutions run in bfloat16 (frames stay float32), for a
    server where decoding, which does not batch, bounds how many viewers a machine keeps."""

    def __init__(self, codec: VideoCodec, reference: list[torch.Tensor] | None = None, bf16: bool = False):
        self.codec, self.reference, self.bf16 = codec, reference, bf16
        self.last: torch.Tensor | None = None
        self.last_frame: torch.Tensor | None = None

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return decode_streams([self], [latents])[0]


def decode_streams(decoders: list[VideoStreamDecoder], latents: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each stream's next chunk `latents[i]` (B_i, z, t, h, w), decoded in one batch where they can
    go together (one codec and precision; at a stream's start, or all past it, as the codec reads
    what came before); each stream's state moves on as if decoded alone. On a GPU one batch costs
    about one chunk's time; on a CPU it costs the sum (benchmarks/results/batching.json)."""
    out: list[torch.Tensor | None] = [None] * len(decoders)
    groups: dict[tuple, list[int]] = {}
    for i, d in enumerate(decoders):
        groups.setdefault((id(d.codec), d.bf16, d.last is None, d.reference is None), []).append(i)
    for members in groups.values():
        first = decoders[members[0]]
        ds = [decoders[i] for i in members]
        rows = [latents[i].shape[0] for i in members]  # a stream may hold several videos (a batch of its own)
        batch = torch.cat([latents[i] for i in members])
        reference = None
        if first.reference is not None:  # one image for all of a stream's videos, or one each: one per row here
            reference = [torch.cat([lv.expand(n, *lv.shape[1:]) for lv, n in zip(levels, rows)]) for levels in zip(*(d.reference for d in ds))]
        previous = None if first.last is None else torch.cat([d.last for d in ds])
        previous_frame = None if first.last_frame is None else torch.cat([d.last_frame for d in ds])
        with torch.no_grad(), torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=first.bf16):
            frames = first.codec.decode(batch, reference=reference, previous=previous, previous_frame=previous_frame).float()
        start = 0
        for i, d, n in zip(members, ds, rows):
            part = slice(start, start + n)
            d.last, d.last_frame = batch[part, :, -1].clone(), frames[part, :, -1].clone()  # not views that keep the whole batch
            out[i] = frames[part]
            start += n
    return out  # type: ignore[return-value]


class AudioStreamDecoder(ABC):
    @abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Next latents (B, z, n) -> the next n * hop samples (B, n * hop)."""


class AudioCodec(nn.Module, ABC):
    """Mono waveform in [-1, 1], shape (B, S) with S a multiple of the hop <-> (B, z, S / hop)."""

    latent_channels: int
    sample_rate: int
    hop_length: int
    holds_half_precision = True  # as VideoCodec's

    def check_audio(self, audio: torch.Tensor, sample_rate: int | None = None) -> None:
        if sample_rate is not None and sample_rate != self.sample_rate:
            raise StreamcharError(f"audio is at {sample_rate} Hz but this codec codes {self.sample_rate} Hz; resample it first")
        if audio.ndim != 2:
            raise StreamcharError(f"audio must be shaped (batch, samples), got {tuple(audio.shape)}")
        if audio.shape[1] % self.hop_length:
            raise StreamcharError(
                f"audio length {audio.shape[1]} is not a multiple of the hop {self.hop_length}; pad it to whole latents"
            )

    def check_latents(self, latents: torch.Tensor) -> None:
        if latents.ndim != 3 or latents.shape[1] != self.latent_channels:
            raise StreamcharError(f"audio latents must be (batch, {self.latent_channels}, time), got {tuple(latents.shape)}")

    @abstractmethod
    def encode(self, audio: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor: ...

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def stream_decoder(self) -> AudioStreamDecoder: ...
