"""Running a session: decode and write chunk k on a worker thread while chunk k+1 is generated
(paper §5.1; on a GPU on a CUDA stream of its own, so that the two overlap there too), with
real-time accounting.

Accounting, per chunk: seconds in the orchestrator, in the DiT steps, in preparing its inputs, in
decoding and in writing;
its real-time factor (that compute over the 1.375 s it plays for); when its bytes were written,
counted from the request. Playback starts when the first chunk is written (first-chunk latency);
chunk k is due k * 1.375 s later, plus any stall before it, and a chunk written after its due
time is a stall of that many seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from streamchar.errors import Interrupted, StreamcharError
from streamchar.streaming.engine import ChunkLatents, StreamSession
from streamchar.streaming.writers import ChunkWriter
from streamchar.utils.files import atomic_write_text


@dataclass
class ChunkRecord:
    index: int
    orchestrator_s: float
    dit_s: float
    decode_s: float
    write_s: float
    compute_s: float
    real_time_factor: float
    written_at_s: float
    due_at_s: float
    stall_s: float
    words_spoken: float
    words_total: int
    closing: bool
    played_s: float  # of the chunk's 1.375 s; less for a last chunk cut at the stream's planned end
    prepare_s: float = 0.0  # the chunk's inputs (noise, transcript window, history) and its bookkeeping after sampling
    pointer_words: float = 0.0  # the pointer's own reading of the words spoken by the chunk's end, whatever the reader counts


@dataclass
class StreamReport:
    chunk_seconds: float
    setup_s: float = 0.0
    first_chunk_latency_s: float | None = None
    chunks: list[ChunkRecord] = field(default_factory=list)
    interrupted: str | None = None

    def summary(self) -> dict:
        rtf = [c.real_time_factor for c in self.chunks]
        steady = rtf[1:] or rtf
        return {
            "chunks": len(self.chunks), "seconds": float(sum(c.played_s for c in self.chunks)), "setup_s": self.setup_s,
            "first_chunk_latency_s": self.first_chunk_latency_s,
            "real_time_factor_mean": float(np.mean(steady)) if steady else None,
            "real_time_factor_max": float(np.max(steady)) if steady else None,
            "wall_real_time_factor": (self.chunks[-1].written_at_s - self.chunks[0].written_at_s) / ((len(self.chunks) - 1) * self.chunk_seconds)
            if len(self.chunks) > 1 else None,
            "stalls": sum(c.stall_s > 0 for c in self.chunks), "stall_s": float(sum(c.stall_s for c in self.chunks)),
            "words_spoken": self.chunks[-1].words_spoken if self.chunks else 0.0,
            "words_total": self.chunks[-1].words_total if self.chunks else 0, "interrupted": self.interrupted,
        }  # fmt: skip

    def steady_mean(self, key: str) -> float:
        """A chunk field's mean over the chunks after the first, which also warms up."""
        return float(np.mean([getattr(c, key) for c in self.chunks[1:] or self.chunks]))

    def to_json(self) -> dict:
        return {"summary": self.summary(), "chunks": [asdict(c) for c in self.chunks]}

    def write(self, path: Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_json(), indent=1))


def to_frames(video: torch.Tensor) -> np.ndarray:
    """(1, 3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8."""
    return ((video[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


class _Finisher:
    """Decodes a chunk's latents and writes them, on the decoding thread (on a GPU, on a CUDA
    stream of its own, beside the next chunk's generation), and accounts the chunk."""

    def __init__(self, session: StreamSession, writers: list[ChunkWriter], report: StreamReport, t_request: float,
                 on_chunk: Callable[[ChunkRecord], None] | None):
        self.writers, self.report, self.t_request, self.on_chunk = writers, report, t_request, on_chunk
        self.period = session.cfg.stream.chunk_seconds
        self.audio_decoder = session.audio_codec.stream_decoder()
        self.video_decoder = session.video_codec.stream_decoder(session.decode_reference)
        self.side = torch.cuda.Stream(session.reference.device) if session.reference.is_cuda else None
        self.stalled = 0.0

    @torch.no_grad()
    def _decode(self, chunk: ChunkLatents, ready: torch.cuda.Event | None) -> tuple[np.ndarray, np.ndarray, float]:
        side = self.side
        with torch.cuda.stream(side) if side is not None else nullcontext():
            if ready is not None and side is not None:
                side.wait_event(ready)
                chunk.video.record_stream(side)  # made on the generating stream, read on this one
                chunk.audio.record_stream(side)
            frames = to_frames(self.video_decoder.decode(chunk.video))
            audio = self.audio_decoder.decode(chunk.audio)[0].float().cpu().numpy()
        played = self.period
        if chunk.play_seconds is not None:  # the stream's end falls inside its last chunk: whole frames up to it
            whole = len(frames)
            keep = max(1, min(whole, round(chunk.play_seconds * whole / self.period)))
            frames, audio = frames[:keep], audio[: keep * len(audio) // whole]
            played = keep * self.period / whole
        return frames, audio, played

    def __call__(self, chunk: ChunkLatents, ready: torch.cuda.Event | None) -> ChunkRecord:
        t0 = time.perf_counter()
        frames, audio, played = self._decode(chunk, ready)
        t1 = time.perf_counter()
        for w in self.writers:
            w.write(frames, audio)
        t2 = time.perf_counter()
        report, written = self.report, t2 - self.t_request
        if report.first_chunk_latency_s is None:
            report.first_chunk_latency_s = written
        due = report.first_chunk_latency_s + chunk.index * self.period + self.stalled
        stall = max(0.0, written - due)
        self.stalled += stall
        prepare = chunk.timings.get("prepare_s", 0.0)
        compute = chunk.timings["orchestrator_s"] + chunk.timings["dit_s"] + prepare + (t1 - t0) + (t2 - t1)
        rec = ChunkRecord(chunk.index, chunk.timings["orchestrator_s"], chunk.timings["dit_s"], t1 - t0, t2 - t1, compute,
                          compute / self.period, written, due, stall, chunk.words_spoken, chunk.words_total, chunk.closing, played, prepare,
                          chunk.pointer_words)  # fmt: skip
        report.chunks.append(rec)
        if self.on_chunk:
            self.on_chunk(rec)
        return rec


def run_stream(session: StreamSession, writers: list[ChunkWriter], t_request: float | None = None,
               on_chunk: Callable[[ChunkRecord], None] | None = None) -> StreamReport:
    """Generate, decode and write the whole stream. Writers are closed at the end, also on an
    interrupt or a write error, so that what was written stays playable."""
    t_request = time.perf_counter() if t_request is None else t_request
    report = StreamReport(session.cfg.stream.chunk_seconds, setup_s=session.setup_seconds)
    finish = _Finisher(session, writers, report, t_request, on_chunk)
    side = finish.side
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamchar-decode")
    pending: Future | None = None
    try:
        for chunk in session.chunks():
            if pending is not None:
                pending.result()
            ready = torch.cuda.Event() if side is not None else None
            if ready is not None:
                ready.record(torch.cuda.current_stream(side.device))  # the chunk's latents are made when the generating stream reaches here
            pending = pool.submit(finish, chunk, ready)
        if pending is not None:
            pending.result()
    except KeyboardInterrupt:
        report.interrupted = "interrupted"
        raise Interrupted(f"stopped after {len(report.chunks)} chunks; what was written stays playable") from None
    except OSError as e:
        report.interrupted = f"write failed: {e.strerror or e}"
        raise StreamcharError(f"writing the stream failed after {len(report.chunks)} chunks ({e.strerror or e}); "
                              f"what was written before stays playable") from None  # fmt: skip
    finally:
        pool.shutdown(wait=True)
        for w in writers:
            with suppress(Exception):  # one writer failing to close must not stop the others
                w.close()
    return report
