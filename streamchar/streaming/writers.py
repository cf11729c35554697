"""Where a stream's chunks go while it runs.

- `FragmentedMp4Writer`: an MP4 that plays while it is written (moov first, then fragments cut
  at keyframes placed at each chunk's first and last frame). What was written before an
  interrupt or a full disk stays playable.
- `Mp4FragmentStream`: the same bytes, handed out as they are produced (for a server).
- `WavWriter`: 16-bit PCM whose header is rewritten after every chunk, so the file is always valid.
- `CallbackWriter`: raw frames and samples to a function.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Protocol

import av
import numpy as np

from streamchar.data.mp4 import aac_rate
from streamchar.errors import StreamcharError

# One fragment per keyframe. Every chunk starts with a keyframe and its last frame is one too, so
# when a chunk has been written all of it but the muxer's interleaving tail (about 9 frames) is
# final on disk; the tail follows with the next chunk or at close. (Per-frame fragments would be
# final sooner, but FFmpeg's demuxer then loses frames at the end.) `delay_moov` writes the
# header with the first fragment, when the AAC encoder's priming (its first 1,024 samples, at
# negative times) is known: an edit list on the audio track then skips it, so frame k plays at
# k/24 s beside the sound's sample at k/24 s. Without it the muxer moved every video frame but
# the first 1,024 samples later, and the first frame showed for two frames.
FRAGMENT_OPTIONS = {"movflags": "frag_keyframe+empty_moov+delay_moov+default_base_moof"}
# A live stream cuts a fragment per frame and muxes each packet as it comes (no interleaving
# wait): all of a chunk but the AAC encoder's lookahead is then playable as soon as the chunk is
# written. A fragment per keyframe held part of each chunk back until the next chunk;
# a fragment per frame with FFmpeg's interleaving gave the first frame a gap after it that made
# Chromium hold each chunk's video back until the next chunk came.
# The AAC encoder's delay. The live stream starts its sound this many samples in: Chromium's
# Media Source Extensions played it about a frame late otherwise (`streamchar bench serve`).
AAC_PRIMING_SAMPLES = 1024
LIVE_FRAGMENT_OPTIONS = {"movflags": "frag_every_frame+empty_moov+default_base_moof", "max_interleave_delta": "1"}


class ChunkWriter(Protocol):
    def write(self, frames: np.ndarray, audio: np.ndarray) -> None: ...

    def close(self) -> None: ...


class _Mp4Muxer:
    """H.264 + AAC into a fragmented MP4 on any writable binary file object."""

    def __init__(self, target: str | BinaryIO, fps: int, sample_rate: int, width: int, height: int, crf: int = 18,
                 options: dict[str, str] = FRAGMENT_OPTIONS, skip_priming: bool = False, threads: int = 1):
        """`threads`: the H.264 encoder's (0: as many as it likes, where the model runs on a GPU
        and the cores are free; 1 where the model needs them)."""
        self.container = av.open(target, "w", format="mp4", options=options)
        self.skip_priming = skip_priming
        self.video = self.container.add_stream("libx264", rate=fps)
        self.video.width, self.video.height, self.video.pix_fmt = width, height, "yuv420p"
        self.video.options = {"crf": str(crf), "preset": "veryfast", "tune": "zerolatency"}
        self.video.codec_context.thread_count = threads
        self.rate = aac_rate(sample_rate)
        self.audio = self.container.add_stream("aac", rate=self.rate, layout="mono")
        self.sample_rate = sample_rate
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=self.rate) if self.rate != sample_rate else None
        self.frames_written, self.samples_in = 0, 0

    def write(self, frames: np.ndarray, audio: np.ndarray) -> None:
        for k, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts = self.frames_written
            if k in (0, len(frames) - 1):
                vf.pict_type = av.video.frame.PictureType.I  # fragment boundaries (see FRAGMENT_OPTIONS)
            self.frames_written += 1
            for packet in self.video.encode(vf):
                self.container.mux(packet)
        if self.skip_priming and self.samples_in == 0:
            audio = audio[AAC_PRIMING_SAMPLES * self.sample_rate // self.rate :]
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[None], dtype=np.float32), format="flt", layout="mono")
        af.sample_rate, af.pts, af.time_base = self.sample_rate, self.samples_in, Fraction(1, self.sample_rate)
        self.samples_in += len(audio)
        for out in self.resampler.resample(af) if self.resampler else [af]:
            for packet in self.audio.encode(out):
                self.container.mux(packet)

    def close(self) -> None:
        for stream in (self.video, self.audio):
            for packet in stream.encode():
                self.container.mux(packet)
        self.container.close()


class FragmentedMp4Writer:
    def __init__(self, path: Path, fps: int, sample_rate: int, width: int, height: int, threads: int = 1):
        self.path = Path(path)
        try:
            self.file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        except OSError as e:
            raise StreamcharError(f"cannot write {path}: {e.strerror}") from None
        self.muxer = _Mp4Muxer(self.file, fps, sample_rate, width, height, threads=threads)

    def write(self, frames: np.ndarray, audio: np.ndarray) -> None:
        self.muxer.write(frames, audio)
        self.file.flush()

    def close(self) -> None:
        try:
            self.muxer.close()
        finally:
            self.file.close()


class _Collector(io.RawIOBase):
    def __init__(self):
        self.buffer = bytearray()
        self.position = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b) -> int:  # noqa: ANN001
        self.buffer += bytes(b)
        self.position += len(b)
        return len(b)

    def take(self) -> bytes:
        out, self.buffer = bytes(self.buffer), bytearray()
        return out


class Mp4FragmentStream:
    """`write` a chunk and get the bytes that are now final (the header first, then a fragment
    per frame: `LIVE_FRAGMENT_OPTIONS`), also handed to `on_bytes`; nothing is kept, so a stream
    may run for hours."""

    def __init__(self, fps: int, sample_rate: int, width: int, height: int, on_bytes: Callable[[bytes], None] | None = None):
        self.sink = _Collector()
        self.muxer = _Mp4Muxer(self.sink, fps, sample_rate, width, height, options=LIVE_FRAGMENT_OPTIONS, skip_priming=True)
        self.on_bytes = on_bytes

    def write(self, frames: np.ndarray, audio: np.ndarray) -> bytes:
        self.muxer.write(frames, audio)
        return self._emit()

    def _emit(self) -> bytes:
        data = self.sink.take()
        if data and self.on_bytes:
            self.on_bytes(data)
        return data

    @staticmethod
    def mime_type(init: bytes) -> str:
        """The MSE type of a stream whose first bytes are `init`, with the H.264 profile and level
        its `avcC` box names."""
        at = init.find(b"avcC")
        if at < 0 or len(init) < at + 8:
            raise StreamcharError("the stream's first bytes hold no H.264 configuration (avcC)")
        return f'video/mp4; codecs="avc1.{init[at + 5 : at + 8].hex().upper()}, mp4a.40.2"'

    def close(self) -> bytes:
        self.muxer.close()
        return self._emit()


class WavWriter:
    def __init__(self, path: Path, sample_rate: int):
        try:
            self.file = open(path, "wb")  # noqa: SIM115 - closed in close()
        except OSError as e:
            raise StreamcharError(f"cannot write {path}: {e.strerror}") from None
        self.rate, self.bytes = sample_rate, 0
        self._header()

    def _header(self) -> None:
        self.file.seek(0)
        self.file.write(b"RIFF" + struct.pack("<I", 36 + self.bytes) + b"WAVE")
        self.file.write(b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, self.rate, 2 * self.rate, 2, 16))
        self.file.write(b"data" + struct.pack("<I", self.bytes))
        self.file.seek(0, 2)

    def write(self, frames: np.ndarray, audio: np.ndarray) -> None:
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        self.file.write(pcm)
        self.bytes += len(pcm)
        self._header()
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class CallbackWriter:
    def __init__(self, fn: Callable[[np.ndarray, np.ndarray], None]):
        self.fn = fn

    def write(self, frames: np.ndarray, audio: np.ndarray) -> None:
        self.fn(frames, audio)

    def close(self) -> None:
        pass
