"""The server's sessions: each a live stream, its viewer's playback clock, and the messages on
their way to the viewer. Worker threads make and render chunks; the event loop only moves
messages, so a session's work never holds up another's I/O."""

from __future__ import annotations

import asyncio
import bisect
import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from streamchar.streaming.live import LiveChunk, LiveStream
from streamchar.streaming.writers import Mp4FragmentStream

log = logging.getLogger("streamchar.serve")
RTF_WINDOW = 16  # chunks the reported real-time factor is averaged over


class PlaybackClock:
    """Where the viewer's playback is, in seconds of stream. It starts when the first media is
    handed out, runs at real time, and halts where the media handed out ends (a stall, counted
    when the next chunk comes late). The viewer's own reports re-anchor it, so a viewer who
    pauses or starts late holds generation back instead of piling media up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.anchor: float | None = None  # monotonic time at which stream second 0 played
        self.started = 0.0  # monotonic time of the first media
        self.delivered = 0.0  # stream seconds handed out
        self.stalls, self.stall_seconds = 0, 0.0

    def position(self, now: float) -> float:
        with self._lock:
            return 0.0 if self.anchor is None else min(max(0.0, now - self.anchor), self.delivered)

    def deliver(self, now: float, media_end: float) -> None:
        with self._lock:
            if self.anchor is None:
                self.anchor = self.started = now
            else:
                late = (now - self.anchor) - self.delivered  # how long playback waited at the end of what it had
                if late > 1e-3:
                    self.stalls += 1
                    self.stall_seconds += late
                    self.anchor += late
            self.delivered = media_end

    def report(self, now: float, position: float) -> None:
        """The viewer's own position. A viewer may be behind the clock, never ahead of real time
        since its first media: one that claimed more would have the shared model make its
        chunks as fast as it can, at the others' expense."""
        with self._lock:
            if self.anchor is not None and 0 <= position <= self.delivered:
                self.anchor = max(now - position, self.started)


@dataclass
class Message:
    json: dict | None = None
    data: bytes | None = None


class LiveSession:
    def __init__(self, stream: LiveStream, loop: asyncio.AbstractEventLoop, character: str, t_request: float, id_prefix: str = "",
                 measure_mouth: bool = False):
        self.id = id_prefix + secrets.token_urlsafe(18)  # unguessable: knowing it is what lets a client use the session
        self.stream, self.loop, self.character = stream, loop, character
        self.measure = self._measure if measure_mouth else None  # a benchmark's check, off the serving path unless asked for
        self.clock = PlaybackClock()
        self.created = t_request
        self.last_active = time.monotonic()
        self.viewers = 0
        self.closed = False
        self.outbox: asyncio.Queue[Message | None] = asyncio.Queue()
        self.first_chunk_s: float | None = None
        self.chunks = 0
        self._compute: deque[float] = deque(maxlen=RTF_WINDOW)
        self._word_ends: list[float] = []  # stream second at which each word delivered so far ends
        self.mouth = {"speaking": [0.0, 0], "silent": [0.0, 0]}  # sum and count of chunks' mean mouth opening, by whether a word is heard
        self.error: str | None = None
        self.client_stalls = 0  # the viewer's own count of playback waits, as it reports them

    # called from worker threads ------------------------------------------------------------
    def wants_chunk(self, now: float, buffer_seconds: float) -> float | None:
        """How much media is left ahead of the viewer, when that is under the buffer and the
        session has a viewer to stream to; else None."""
        if self.closed or self.viewers == 0 or self.error:
            return None
        ahead = self.stream.media_generated - self.clock.position(now)
        return ahead if ahead < buffer_seconds else None

    def _measure(self, frames: np.ndarray, audio: np.ndarray) -> dict[str, float]:
        from streamchar.evaluation.synthtalk_checks import mouth_opening

        return {"mouth": float(mouth_opening(frames).mean())}

    def deliver(self, chunk: LiveChunk) -> None:
        now = time.monotonic()
        stalls = self.clock.stalls
        self.clock.deliver(now, chunk.media_start + self.stream.period)
        if self.clock.stalls > stalls:
            log.warning("session %s stalled before chunk %d (%.3f s in all); its timings: %s", self.id[:6], chunk.index,
                        self.clock.stall_seconds, {k: round(v, 3) for k, v in chunk.timings.items()})
        if self.first_chunk_s is None:
            self.first_chunk_s = now - self.created
        self.chunks += 1
        t = chunk.timings
        self._compute.append(t.get("generate_s", 0.0) + t.get("decode_s", 0.0) + t.get("mux_s", 0.0))
        for i, _, end in chunk.words:
            if i == len(self._word_ends):
                self._word_ends.append(end)
            elif i < len(self._word_ends):
                self._word_ends[i] = end
        if "mouth" in chunk.measures:
            tally = self.mouth["speaking" if chunk.speaking else "silent"]
            tally[0] += chunk.measures["mouth"]
            tally[1] += 1
        head = {"type": "chunk", "index": chunk.index, "media_start": chunk.media_start, "seconds": self.stream.period,
                "words": [list(w) for w in chunk.words], "words_spoken": chunk.words_spoken, "words_total": chunk.words_total,
                "speaking": chunk.speaking, "bytes": len(chunk.media)}  # fmt: skip
        if chunk.index == 0:
            head["mime"] = Mp4FragmentStream.mime_type(chunk.media)
        self.post(Message(json=head), Message(data=chunk.media))

    def fail(self, error: BaseException) -> None:
        self.error = f"{type(error).__name__}: {error}"
        self.post(Message(json={"type": "error", "error": f"the stream failed and stopped: {self.error}"}), None)

    def post(self, *messages: Message | None) -> None:
        """Hand messages to the event loop (thread-safe); None ends the viewer's connection."""
        if self.closed:
            return
        for m in messages:
            try:
                self.loop.call_soon_threadsafe(self.outbox.put_nowait, m)
            except RuntimeError:  # the loop has shut down
                return

    # read from anywhere --------------------------------------------------------------------
    def words_heard(self, now: float) -> int:
        return bisect.bisect_right(self._word_ends, self.clock.position(now) + 1e-6)

    def status(self) -> dict:
        now = time.monotonic()
        position = self.clock.position(now)
        rtf = float(np.mean(self._compute)) / self.stream.period if self._compute else None
        (speaking, n_speaking), (silent, n_silent) = self.mouth["speaking"], self.mouth["silent"]
        return {
            "id": self.id, "character": self.character, "chunks": self.chunks, "seconds_streamed": self.clock.delivered,
            "playback_s": position, "buffered_s": max(0.0, self.clock.delivered - position),
            "words_heard": self.words_heard(now), "words_pending": self.stream.words_pending(), "words_total": self.stream.session.words_total,
            "real_time_factor": rtf, "first_chunk_s": self.first_chunk_s, "stalls": self.clock.stalls, "stall_s": self.clock.stall_seconds,
            "client_stalls": self.client_stalls,
            "viewers": self.viewers, "error": self.error,
            "mouth_speaking": speaking / n_speaking if n_speaking else None, "mouth_silent": silent / n_silent if n_silent else None,
        }  # fmt: skip

    def close(self) -> None:
        """End the viewer's connection; the scheduler frees the stream."""
        if not self.closed:
            self.post(None)
            self.closed = True
