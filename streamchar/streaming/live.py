"""A stream that lives as long as its viewer: text arrives, is cut off, or stops coming, and the
character goes on (listening in silence when nothing is left to say) in one unbroken stream with
one sink chunk and one identity.

Independent of any transport: `generate` makes a chunk's latents (the model's work), `render`
decodes it and cuts its media (fragmented MP4 bytes, what a browser's Media Source Extensions
play) with the words it speaks and when. A server runs the two stages on worker threads and
hands the bytes to whatever carries them (a WebSocket today).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field

import numpy as np
import torch

from streamchar.codecs.base import decode_streams
from streamchar.streaming.batching import next_chunks
from streamchar.streaming.engine import ChunkLatents, SessionSettings, StreamSession
from streamchar.streaming.inputs import StreamRequest
from streamchar.streaming.pipeline import Pipeline
from streamchar.streaming.runner import to_frames
from streamchar.streaming.writers import Mp4FragmentStream


@dataclass
class LiveChunk:
    """One chunk as the viewer gets it: media bytes and where in the transcript it is."""

    index: int
    media_start: float  # s from the stream's start
    media: bytes  # fMP4: the init segment before the first chunk's fragments, then fragments
    words_spoken: float  # transcript words spoken by the chunk's end
    words_total: int
    words: list[tuple[int, float, float]]  # (word index, start s, end s) of the words heard in this chunk
    speaking: bool  # any word is heard in this chunk
    timings: dict[str, float] = field(default_factory=dict)
    measures: dict[str, float] = field(default_factory=dict)  # what `render`'s `measure` read off the frames


@dataclass
class Appended:
    first_word: int  # index of the first new word
    words: list[str]  # the new words, as the transcript holds them
    words_total: int


class LiveStream:
    """A `StreamSession` that never ends on its own, with its decoders and its media stream.
    `append`/`interrupt` may be called from any thread; `generate` and `render` from one
    generation thread and one render thread (a chunk is rendered after it is generated)."""

    def __init__(self, pipe: Pipeline, request: StreamRequest, settings: SessionSettings, decode_bf16: bool = False):
        cfg = pipe.cfg
        self.cfg = cfg
        self.session: StreamSession = pipe.session(request, settings, listening=True)
        self._lock = threading.Lock()
        self._video_decoder = pipe.video_codec.stream_decoder(self.session.decode_reference, decode_bf16)
        self._audio_decoder = pipe.audio_codec.stream_decoder()
        self._media = Mp4FragmentStream(cfg.stream.fps, cfg.audio.sample_rate, cfg.video.width, cfg.video.height)
        self.chunks_generated = 0
        self._spoken_before: float = 0.0  # words spoken by the end of the chunk before the one generated last

    @property
    def period(self) -> float:
        return self.cfg.stream.chunk_seconds

    @property
    def media_generated(self) -> float:
        """Seconds of stream the model has made so far (rendered or not)."""
        return self.chunks_generated * self.period

    # text --------------------------------------------------------------------------------
    def append(self, text: str) -> Appended:
        """`StreamSession.append_text` checks the text (empty, or characters it cannot encode)."""
        with self._lock:
            before = self.session.words_total
            self.session.append_text(text)
            return Appended(before, self.transcript_words()[before:], self.session.words_total)

    def interrupt(self) -> int:
        """Words not yet begun are dropped; returns the words kept."""
        with self._lock:
            return self.session.interrupt()

    def words_pending(self) -> float:
        return max(0.0, self.session.words_total - (self.session.progress[-1] if self.session.progress else 0.0))

    def transcript_words(self) -> list[str]:
        """The typed transcript as shown, one entry per spoken word ("" where a typed token such
        as "$3" is spoken as more than one word)."""
        return list(self.session.reader.shown_words)

    # chunks ------------------------------------------------------------------------------
    def generate(self) -> tuple[ChunkLatents, list[tuple[int, float, float]]]:
        """The next chunk's latents and the words heard in it (by the plan, else by the pointer)."""
        result = generate_together([self])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def _took(self, chunk: ChunkLatents, seconds: float) -> tuple[ChunkLatents, list[tuple[int, float, float]]]:
        """Account for a chunk just generated (under the lock)."""
        chunk.timings["generate_s"] = seconds
        words = self._words_in(chunk.index, chunk.words_spoken)
        self.chunks_generated += 1
        self._spoken_before = chunk.words_spoken
        return chunk, words

    def _words_in(self, k: int, spoken: float) -> list[tuple[int, float, float]]:
        start, end = k * self.period, (k + 1) * self.period
        times = self.session.word_times()
        if times:
            return [(i, a, b) for i, (a, b) in enumerate(times) if a < end and b > start]
        # the pointer alone: the words it moved over, spread evenly across the chunk
        first, last = int(np.floor(self._spoken_before)), int(np.ceil(spoken))
        n = max(1, last - first)
        step = self.period / n
        return [(i, start + (i - first) * step, start + (i - first + 1) * step) for i in range(first, last)]

    @torch.no_grad()
    def render(self, chunk: ChunkLatents, words: list[tuple[int, float, float]],
               measure: Callable[[np.ndarray, np.ndarray], dict[str, float]] | None = None, decoded: Decoded | None = None) -> LiveChunk:
        """Decode and mux one chunk (`decoded`: already decoded, by `decode_together`);
        `measure(frames, audio)` may read the decoded chunk on the way."""
        frames, audio, decode_s = decoded or decode_together([self], [chunk])[0]
        t1 = time.perf_counter()
        media = self._media.write(frames, audio)
        t2 = time.perf_counter()
        timings = {**chunk.timings, "decode_s": decode_s, "mux_s": t2 - t1}
        measures = measure(frames, audio) if measure else {}
        return LiveChunk(chunk.index, chunk.index * self.period, media, chunk.words_spoken, chunk.words_total, words, bool(words),
                         timings, measures)  # fmt: skip

    def close(self) -> None:
        """Free the encoder; the bytes of a stream closed half-way have nowhere to go."""
        with suppress(Exception):  # a muxer that fails to close has nothing more to give
            self._media.muxer.container.close()


Decoded = tuple[np.ndarray, np.ndarray, float]  # a chunk's frames and sound, and the seconds its decoding took


@torch.no_grad()
def decode_together(streams: list[LiveStream], chunks: list[ChunkLatents]) -> list[Decoded]:
    """Each stream's chunk decoded, the video in one batch (`codecs.base.decode_streams`); each
    is counted the whole batch's time, as the model's batch is."""
    t0 = time.perf_counter()
    videos = decode_streams([st._video_decoder for st in streams], [c.video for c in chunks])
    sounds = [st._audio_decoder.decode(c.audio)[0].float().cpu().numpy() for st, c in zip(streams, chunks)]
    seconds = time.perf_counter() - t0
    return [(to_frames(v), a, seconds) for v, a in zip(videos, sounds)]


def generate_together(streams: list[LiveStream]) -> list[tuple[ChunkLatents, list[tuple[int, float, float]]] | Exception]:
    """Each stream's next chunk, sampled in one batch (`streaming.batching`); a stream that fails
    gets its error and the others go on. Each stream's lock is held throughout, so that text
    appended meanwhile is read from the next chunk on, as with one stream alone."""
    locks = [st._lock for st in sorted(streams, key=id)]
    with ExitStack() as held, torch.no_grad():
        for lock in locks:
            held.enter_context(lock)
        t0 = time.perf_counter()
        chunks = next_chunks([st.session for st in streams], [st.chunks_generated for st in streams])
        seconds = time.perf_counter() - t0
        return [c if isinstance(c, Exception) else st._took(c, seconds) for st, c in zip(streams, chunks)]
