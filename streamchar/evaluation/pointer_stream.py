"""A stream that the pointer drives to its end (`streamchar bench paper --reduced --pointer-words W`):
the paper's way of reading (`orchestrator.reading: pointer`) run for as long as the transcript
lasts, through the real session, runner and writer, until the history window is full, its cut
has moved on with the pointer, and the reader ends the stream after the last word.

Random weights do not read, so the pointer is scripted: it says `W` more words by the end of
each chunk, answering relative to the cut window it is given as a trained pointer does. All
else (the reader's cut, the history window, the prompt before the transcript, the ending) is the
code every stream runs.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import nn

from streamchar.errors import StreamcharError
from streamchar.streaming.bench import random_request
from streamchar.streaming.engine import SECONDS_PER_WORD_LIMIT, SessionSettings, StreamSession
from streamchar.streaming.pipeline import Pipeline


class ScriptedPointer(nn.Module):
    """Stands in for the progress pointer: `per_chunk` words more at every chunk's end, counted
    from the cut of the window it reads; records what each chunk's orchestrator was given."""

    def __init__(self, real: nn.Module, session: StreamSession, per_chunk: float):
        super().__init__()
        self.real, self.session, self.per_chunk = real, session, per_chunk
        self.seen: dict[int, dict] = {}

    def forward(self, condition: torch.Tensor, text_hidden: torch.Tensor, word_numbers: torch.Tensor, text_mask: torch.Tensor,
                word_counts: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        session = self.session
        assert session.last_context is not None
        ctx, k = session.last_context, len(session.progress)
        prompt = len(session.prompt_ids)
        self.seen[k] = {"cut": ctx.cut, "history_latents": int(ctx.history.shape[2]), "words_read": int(word_counts.max()),
                        "prompt_kept": ctx.text_ids[0, :prompt].tolist() == session.prompt_ids}  # fmt: skip
        said = torch.full_like(word_counts.float(), self.per_chunk * (k + 1) - ctx.cut)
        return self.real.clamp(said, word_counts) if clamp else said

    def clamp(self, s: torch.Tensor, word_counts: torch.Tensor) -> torch.Tensor:
        return self.real.clamp(s, word_counts)


def pointer_stream(pipe: Pipeline, per_chunk: float, out: Path, steps: int = 4, chunks: int = 14) -> dict:
    """A transcript of about `chunks` x `per_chunk` words streamed into `out` until the reader
    ends it; what each chunk read, and whether the stream ended by itself after the last word."""
    if pipe.cfg.orchestrator.reading != "pointer":
        raise StreamcharError(f"the pointer-driven stream needs orchestrator.reading: pointer, the config has {pipe.cfg.orchestrator.reading!r}")
    if per_chunk <= 0:
        raise StreamcharError(f"--pointer-words must be positive, got {per_chunk}")
    request = random_request(pipe.cfg, int(per_chunk * (chunks - 1)))
    session = pipe.session(request, SessionSettings(steps=steps, stop_at_end=True))
    orchestrator = pipe.model.orchestrator
    real = orchestrator.pointer
    scripted = ScriptedPointer(real, session, per_chunk)
    orchestrator.pointer = scripted
    try:
        from streamchar.streaming.runner import run_stream

        report = run_stream(session, [pipe.mp4_writer(out)], time.perf_counter())
    finally:
        orchestrator.pointer = real
    made = len(report.chunks)
    seen = [scripted.seen[k] for k in sorted(scripted.seen)]
    cuts = [s["cut"] for s in seen]
    limit = max(4, math.ceil(session.words_total * SECONDS_PER_WORD_LIMIT / pipe.cfg.stream.chunk_seconds))  # where the engine stops a stream
    done = bool(session.progress) and session.progress[-1] >= session.words_total - 0.5
    return {
        "pointer_words_per_chunk": per_chunk, "words_total": session.words_total, "chunks": made,
        "words_spoken": session.progress, "cuts": cuts, "history_chunks": [s["history_latents"] // pipe.cfg.stream.chunk_audio_latents for s in seen],
        "words_read": [s["words_read"] for s in seen], "prompt_tokens": len(session.prompt_ids),
        "prompt_kept_every_chunk": all(s["prompt_kept"] for s in seen), "history_window_chunks": pipe.cfg.stream.history_chunks,
        "ended_by_itself": done and made < limit, "chunk_limit": limit,
    }  # fmt: skip
