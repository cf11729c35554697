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

from streamchar.serving.logs import event
from streamchar.serving.metrics import ServerMetrics
from streamchar.streaming.live import LiveChunk, LiveStream
from streamchar.streaming.writers import Mp4FragmentStream

RTF_WINDOW = 16  # chunks the reported real-time factor is averaged over
# A chunk that reaches its viewer with less than this left to play is a near miss: the server is
# behind (it admits no new session for `ServerSettings.behind_hold_seconds`).
SHORT_SECONDS = 0.2
TAG_CHARS = 8  # of a session's random id in its tag: enough to tell sessions apart in a log, far too few to guess the rest


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
        self.reported = 0.0  # the latest position the viewer reported
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
        chunks as fast as it can, at the others' expense. Playback never goes back, so a report
        before one already taken (late, or false) changes nothing."""
        with self._lock:
            if self.anchor is not None and self.reported <= position <= self.delivered:
                self.anchor = max(now - position, self.started)
                self.reported = position


@dataclass
class Message:
    json: dict | None = None
    data: bytes | None = None


class LiveSession:
    def __init__(self, stream: LiveStream, loop: asyncio.AbstractEventLoop, character: str, t_request: float, id_prefix: str = "",
                 measure_mouth: bool = False, metrics: ServerMetrics | None = None):
        secret = secrets.token_urlsafe(18)
        self.id = id_prefix + secret  # unguessable: knowing it is what lets a client use the session
        self.tag = id_prefix + secret[:TAG_CHARS]  # its name in the log and where else the id must not appear
        self.metrics = metrics
        self.stream, self.loop, self.character = stream, loop, character
        self.measure = self._measure if measure_mouth else None  # a benchmark's check, off the serving path unless asked for
        self.clock = PlaybackClock()
        self.created = t_request
        self.last_active = time.monotonic()
        self.free_from = self.last_active  # since when its next chunk could be begun: its last chunk made, or its viewer's arrival
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
        self.short_at: float | None = None  # when a chunk last reached its viewer with under SHORT_SECONDS left to play

    # called from worker threads ------------------------------------------------------------
    def wants_chunk(self, now: float, buffer_seconds: float) -> float | None:
        """How much media is left ahead of the viewer, when that is under the buffer and the
        session has a viewer to stream to; else None."""
        if self.closed or self.viewers == 0 or self.error:
            return None
        ahead = self.stream.media_generated - self.clock.position(now)
        return ahead if ahead < buffer_seconds else None

    def queue_wait(self, now: float, ahead: float, buffer_seconds: float) -> float:
        """How long this session has needed its next chunk, `ahead` being what `wants_chunk`
        said: since its buffer fell under `buffer_seconds` as playback went on, or, if later,
        since its last chunk was made or its viewer came."""
        return max(0.0, min(now - self.free_from, buffer_seconds - ahead))

    def _measure(self, frames: np.ndarray, audio: np.ndarray) -> dict[str, float]:
        from streamchar.evaluation.synthtalk_checks import mouth_opening

        return {"mouth": float(mouth_opening(frames).mean())}

    def deliver(self, chunk: LiveChunk) -> None:
        now = time.monotonic()
        stalls, stall_seconds = self.clock.stalls, self.clock.stall_seconds
        left = self.clock.delivered - self.clock.position(now) if self.clock.anchor is not None else None  # media the viewer had
        self.clock.deliver(now, chunk.media_start + self.stream.period)
        stalled = self.clock.stall_seconds - stall_seconds if self.clock.stalls > stalls else None
        if stalled is not None:
            timings = {k: round(v, 3) for k, v in chunk.timings.items()}
            event("stall", "session %s stalled %.3f s before chunk %d (%.3f s in all); its timings: %s", self.tag, stalled, chunk.index,
                  self.clock.stall_seconds, timings, level=logging.WARNING, session=self.tag, chunk=chunk.index, stall_s=round(stalled, 3),
                  stalls=self.clock.stalls, timings=timings)  # fmt: skip
        if stalled is not None or (left is not None and left < SHORT_SECONDS):
            self.short_at = now  # the server is behind: it admits no one until its sessions are clear of this
            if stalled is None:
                event("buffer_short", "session %s had %.3f s of media left when chunk %d came", self.tag, left, chunk.index,
                      level=logging.WARNING, session=self.tag, chunk=chunk.index, left_s=round(left, 3))  # fmt: skip
        if self.first_chunk_s is None:
            self.first_chunk_s = now - self.created
        self.chunks += 1
        t = chunk.timings
        self._compute.append(t.get("generate_s", 0.0) + t.get("decode_s", 0.0) + t.get("mux_s", 0.0))
        if self.metrics is not None:
            self.metrics.chunk(self._compute[-1], self.stream.period, left, stalled)
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
