"""Two worker threads shared by every session: one makes chunks (the model), one renders them
(decoders and muxer), so a chunk of one session is decoded while the next is generated. The
session whose viewer is closest to running out of media goes first; none is generated more than
the buffer ahead of its viewer."""

from __future__ import annotations

import logging
import queue
import threading
import time

import torch

from streamchar.serving.sessions import LiveSession
from streamchar.streaming.engine import ChunkLatents

log = logging.getLogger("streamchar.serve")
IDLE_WAIT_SECONDS = 0.02  # how often the generation thread looks again when no session needs a chunk


class Scheduler:
    def __init__(self, buffer_seconds: float, threads: int):
        self.buffer_seconds = buffer_seconds
        self.threads = threads
        self._sessions: dict[str, LiveSession] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._render: queue.Queue = queue.Queue()
        self._workers = [threading.Thread(target=self._generate_loop, name="streamchar-generate", daemon=True),
                         threading.Thread(target=self._render_loop, name="streamchar-render", daemon=True)]  # fmt: skip

    def start(self) -> None:
        torch.set_num_threads(self.threads)
        for w in self._workers:
            w.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._render.put(None)
        for w in self._workers:
            w.join(timeout=10)

    def add(self, session: LiveSession) -> None:
        with self._lock:
            self._sessions[session.id] = session
        self.wake()

    def remove(self, session: LiveSession) -> None:
        """Stop generating for a session; its stream is freed on the render thread, after any
        chunk of it still being rendered there."""
        with self._lock:
            self._sessions.pop(session.id, None)
        self._render.put((session, None, None))

    def wake(self) -> None:
        self._wake.set()

    def _next(self) -> LiveSession | None:
        now = time.monotonic()
        with self._lock:
            wanting = [(ahead, s) for s in self._sessions.values() if (ahead := s.wants_chunk(now, self.buffer_seconds)) is not None]
        return min(wanting, key=lambda x: x[0])[1] if wanting else None

    def _generate_loop(self) -> None:
        while not self._stop.is_set():
            session = self._next()
            if session is None:
                self._wake.wait(IDLE_WAIT_SECONDS)
                self._wake.clear()
                continue
            try:
                self._render.put((session, *session.stream.generate()))
            except Exception as e:  # noqa: BLE001 - one session's failure ends that session only
                log.exception("session %s failed while generating", session.id[:6])
                session.fail(e)
            session = None  # hold no closed session while waiting

    def _render_loop(self) -> None:
        while (item := self._render.get()) is not None:
            self._render_one(*item)
            item = None  # hold no closed session while waiting

    def _render_one(self, session: LiveSession, chunk: ChunkLatents | None, words: list) -> None:
        if chunk is None:
            session.stream.close()
        elif not session.closed:
            try:
                session.deliver(session.stream.render(chunk, words, session.measure))
            except Exception as e:  # noqa: BLE001 - as above
                log.exception("session %s failed while rendering", session.id[:6])
                session.fail(e)
