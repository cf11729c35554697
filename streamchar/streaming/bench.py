"""Streaming speed and stability (`streamchar bench stream`), with random weights: speed does not
depend on them. The whole pipeline runs: orchestrator, DiT steps, decode, fragmented-MP4 writing."""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from streamchar.config import Config
from streamchar.config.schema import PromptConfig
from streamchar.data.harvard import split_sentences
from streamchar.model.checkpoint import new_generator
from streamchar.streaming.engine import SessionSettings
from streamchar.streaming.inputs import StreamRequest
from streamchar.streaming.pipeline import Pipeline
from streamchar.streaming.placement import Placement


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def random_request(cfg: Config, words: int) -> StreamRequest:
    sentences = split_sentences("test")
    text, k = [], 0
    while sum(len(s.split()) for s in text) < words:
        text.append(sentences[k % len(sentences)])
        k += 1
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (cfg.video.height, cfg.video.width, 3), dtype=np.uint8)
    voice = (0.1 * rng.standard_normal(3 * cfg.audio.sample_rate)).astype(np.float32)
    return StreamRequest(" ".join(text), image, voice, "a person talks in front of a wall")


def stream_once(cfg: Config, steps: int, seconds: float, memory_marks_s: tuple[float, ...] = (),
                on_progress: Callable[[int, int], None] | None = None, placement: Placement | None = None) -> dict:
    t_load = time.perf_counter()
    if cfg.prompt.encoder == "umt5":  # random weights throughout: a random T5 of umT5's width stands in (it runs once, at set-up)
        cfg = cfg.model_copy(update={"prompt": PromptConfig(tokens=cfg.prompt.tokens)})
    pipe = Pipeline.from_modules(*new_generator(cfg))
    if placement is not None:
        pipe = placement.apply(pipe)
    request = random_request(cfg, int(seconds * 3) + 50)
    load_s = time.perf_counter() - t_load
    chunks = max(2, math.ceil(seconds / cfg.stream.chunk_seconds))
    t_request = time.perf_counter()  # as a server sees it: the model is loaded, a request arrives
    settings = SessionSettings(steps=steps, max_chunks=chunks, stop_at_end=False)
    marks = {}

    def on_chunk(rec) -> None:  # noqa: ANN001
        if on_progress:
            on_progress(rec.index + 1, chunks)
        t_stream = (rec.index + 1) * cfg.stream.chunk_seconds
        for m in memory_marks_s:
            if m not in marks and t_stream >= m:
                marks[m] = _rss_mb()

    with tempfile.TemporaryDirectory() as tmp:
        report = pipe.stream_to_mp4(request, settings, Path(tmp) / "bench.mp4", t_request, on_chunk=on_chunk)
    written = [c.written_at_s for c in report.chunks]
    gaps = np.diff(written)[1:] if len(written) > 2 else np.diff(written)
    s = report.summary()
    return {
        "steps": steps, "chunks": len(report.chunks), "stream_seconds": s["seconds"],
        "steady_seconds_per_chunk": float(np.mean(gaps)), "steady_real_time_factor": float(np.mean(gaps)) / cfg.stream.chunk_seconds,
        "compute_seconds_per_chunk": report.steady_mean("compute_s"), "orchestrator_s": report.steady_mean("orchestrator_s"),
        "dit_s": report.steady_mean("dit_s"), "decode_s": report.steady_mean("decode_s"), "write_s": report.steady_mean("write_s"),
        "first_playable_s": s["first_chunk_latency_s"], "session_setup_s": s["setup_s"], "model_load_s": load_s,
        "transcript_words": s["words_total"], "stalls": s["stalls"], "stall_s": s["stall_s"],
        "rss_mb_at_stream_seconds": {str(int(k)): v for k, v in marks.items()},
    }  # fmt: skip


def bench_stream(cfg: Config, seconds: float, teacher_seconds: float, memory_minutes: tuple[float, ...],
                 on_progress: Callable[[int, int], None] | None = None, placement: Placement | None = None) -> dict:
    """A student-speed stream (4 steps) of `seconds`, then a teacher-speed one (50 steps) of
    `teacher_seconds`, in one process; memory at the given minutes of the first."""
    placement = placement or Placement.parse("cpu", "float32")
    student = stream_once(cfg, 4, seconds, tuple(60 * m for m in memory_minutes), on_progress, placement)
    teacher = stream_once(cfg, 50, teacher_seconds, on_progress=on_progress, placement=placement)
    return {"preset": cfg.preset, "threads": torch.get_num_threads(), "device": str(placement.device),
            "dtype": str(placement.dtype).removeprefix("torch."), "memory_mode": placement.memory_mode,
            "student_4_steps": student, "teacher_50_steps": teacher,
            "teacher_over_student_per_chunk": teacher["steady_seconds_per_chunk"] / student["steady_seconds_per_chunk"]}
