"""Two worker threads shared by every session: one makes chunks (the model), one renders them
(decoders and muxer), so a chunk of one session is decoded while the next is generated. Every
session that needs its next chunk joins one batch through the model (at most `max_batch`, those
whose viewers are closest to running out first); none is generated more than the buffer ahead
of its viewer."""

from __future__ import annotations

import logging
import queue
import threading
import time

import torch

from streamchar.serving.sessions import LiveSession
from streamchar.streaming.batching import condition_groups
from streamchar.streaming.engine import ChunkLatents
from streamchar.streaming.live import generate_together

log = logging.getLogger("streamchar.serve")
IDLE_WAIT_SECONDS = 0.02  # how often the generation thread looks again when no session needs a chunk


class Scheduler:
    def __init__(self, buffer_seconds: float, threads: int, max_batch: int = 1):
        self.buffer_seconds = buffer_seconds
        self.threads, self.max_batch = threads, max_batch
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

    def _next(self) -> list[LiveSession]:
        """The sessions that need their next chunk, those closest to running out first."""
        now = time.monotonic()
        with self._lock:
            wanting = [(ahead, s) for s in self._sessions.values() if (ahead := s.wants_chunk(now, self.buffer_seconds)) is not None]
        return [s for _, s in sorted(wanting, key=lambda x: x[0])[: self.max_batch]]

    def _generate_loop(self) -> None:
        while not self._stop.is_set():
            batch = self._next()
            if not batch:
                self._wake.wait(IDLE_WAIT_SECONDS)
                self._wake.clear()
                continue
            for members in condition_groups([s.stream.session for s in batch]):  # the most urgent first, rendered while the next is made
                self._generate([batch[i] for i in members])
            batch = None  # hold no closed session while waiting

    def _generate(self, group: list[LiveSession]) -> None:
        try:
            results = generate_together([s.stream for s in group])
        except Exception as e:  # noqa: BLE001 - a batch that fails ends its sessions, not the server
            results = [e] * len(group)
        for session, result in zip(group, results):
            if isinstance(result, Exception):
                log.error("session %s failed while generating: %r", session.id[:6], result)
                session.fail(result)
            else:
                self._render.put((session, *result))

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

