"""MP4 files (H.264 video + AAC audio) through PyAV."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from streamchar.data.audio import resample
from streamchar.errors import StreamcharError

# sample rates the AAC encoder accepts; other rates are resampled to the nearest one for the MP4
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)


def aac_rate(sample_rate: int) -> int:
    return sample_rate if sample_rate in AAC_RATES else min(AAC_RATES, key=lambda r: (abs(r - sample_rate), -r))


def write_mp4(path: str | Path, frames: np.ndarray, fps: int, audio: np.ndarray, sample_rate: int, crf: int = 16) -> None:
    """Write (n, h, w, 3) uint8 frames and mono float audio to an MP4."""
    n, h, w, _ = frames.shape
    rate = aac_rate(sample_rate)
    samples = resample(audio, sample_rate, rate)
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"crf": str(crf), "preset": "veryfast", "tune": "animation"}
        vs.codec_context.thread_count = 1
        aus = out.add_stream("aac", rate=rate, layout="mono")
        for frame in frames:
            for packet in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        step = 1024
        for k in range(0, len(samples), step):
            chunk = np.ascontiguousarray(samples[None, k : k + step], dtype=np.float32)
            af = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            af.sample_rate = rate
            af.pts = k
            af.time_base = Fraction(1, rate)
            for packet in aus.encode(af):
                out.mux(packet)
        for packet in aus.encode():
            out.mux(packet)


def _frames(inp, streams, path):  # noqa: ANN001, ANN202
    try:
        yield from inp.decode(*streams)
    except av.error.FFmpegError as e:
        raise StreamcharError(f"video file {path} is damaged: {e}") from None


@dataclass
class DecodedMp4:
    frames: np.ndarray  # (n, h, w, 3) uint8
    fps: float
    audio: np.ndarray  # float32 mono
    sample_rate: int


def read_mp4(path: str | Path, sample_rate: int | None = None, with_video: bool = True) -> DecodedMp4:
    """Decode all frames and the audio (mono, resampled to `sample_rate` when given)."""
    frames: list[np.ndarray] = []
    chunks: list[np.ndarray] = []
    fps, rate = 0.0, 0
    try:
        inp = av.open(str(path))
    except (OSError, av.error.FFmpegError) as e:
        raise StreamcharError(f"cannot read video file {path}: {e}") from None
    with inp:
        streams = []
        if with_video and inp.streams.video:
            streams.append(inp.streams.video[0])
            vstream = inp.streams.video[0]  # a fragmented MP4 has no reliable average rate; the stream rate is exact
            fps = float(vstream.guessed_rate or vstream.average_rate or 0)
        if inp.streams.audio:
            streams.append(inp.streams.audio[0])
            rate = inp.streams.audio[0].rate
        for frame in _frames(inp, streams, path):
            if isinstance(frame, av.VideoFrame):
                frames.append(frame.to_ndarray(format="rgb24"))
            else:
                a = frame.to_ndarray().astype(np.float32)
                if frame.format.is_planar:
                    a = a.mean(axis=0)
                else:
                    a = a.reshape(-1, len(frame.layout.channels)).mean(axis=1)
                chunks.append(a)
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if sample_rate is not None and rate and rate != sample_rate:
        audio = resample(audio, rate, sample_rate)
        rate = sample_rate
    video = np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)
    return DecodedMp4(video, fps, audio, rate or (sample_rate or 0))
