"""Worker threads shared by every session, one per core and one torch thread each. A free worker
renders a chunk already made (decoders and muxer) if there is one, else makes the next chunks of
the sessions that need them (the model): no worker idles while there is work, and no two threads
contend for a core. Sessions that need their next chunk join one batch through the model (at most
`max_batch`, those whose viewers are closest to running out first; one group of like conditions
per worker, so two groups go through at once); none is generated more than the buffer ahead of its
viewer. A session's chunks are made one after the other and rendered in order."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial

import torch

from streamchar.serving.logs import event
from streamchar.serving.metrics import ServerMetrics
from streamchar.serving.sessions import LiveSession
from streamchar.streaming.batching import condition_groups
from streamchar.streaming.engine import ChunkLatents
from streamchar.streaming.live import Decoded, decode_together, generate_together

IDLE_WAIT_SECONDS = 0.02  # how often an idle worker looks again for a session that needs a chunk
STOP_SECONDS = 5.0  # the workers are waited for this long in all when the server stops

RenderItem = tuple[LiveSession, ChunkLatents | None, list, Decoded | None]  # no chunk: close the session's stream


class Scheduler:
    def __init__(self, buffer_seconds: float, threads: int, max_batch: int = 1, metrics: ServerMetrics | None = None,
                 decode_batched: bool = False):  # fmt: skip
        """`decode_batched`: a batch's chunks are decoded together by the worker that made them (a
        GPU's way: one batch costs about one chunk), and only muxed by the render step; else each
        is decoded on its own as it is rendered (a CPU's: a batch costs the sum, and decoding one
        session beside another's generation keeps both cores busy)."""
        self.buffer_seconds, self.max_batch, self.metrics = buffer_seconds, max_batch, metrics
        self.decode_batched = decode_batched
        self.holding = False  # no chunk is begun (the server is shutting down); those begun are finished
        self._sessions: dict[str, LiveSession] = {}
        self._work = threading.Condition()
        self._renders: deque[RenderItem] = deque()
        self._generating: set[str] = set()  # sessions a worker is making a chunk for
        self._rendering: set[str] = set()  # sessions a worker is rendering a chunk of (chunk k renders while k + 1 is made)
        self._stop = threading.Event()
        self._workers = [threading.Thread(target=self._work_loop, name=f"streamchar-worker-{i}", daemon=True) for i in range(threads)]

    def start(self) -> None:
        for w in self._workers:
            w.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake()
        deadline = time.monotonic() + STOP_SECONDS
        for w in self._workers:
            if w.ident is not None:  # started (a server stopped while warming up never started them)
                w.join(timeout=max(0.0, deadline - time.monotonic()))

    def hold(self) -> None:
        """Begin no more chunks; those begun are made and rendered."""
        with self._work:
            self.holding = True
            self._work.notify_all()

    def busy(self) -> bool:
        """A chunk is being made or rendered, or waits to be rendered."""
        with self._work:
            return bool(self._generating or self._rendering or any(item[1] is not None for item in self._renders))

    def add(self, session: LiveSession) -> None:
        with self._work:
            self._sessions[session.id] = session
        self.wake()

    def remove(self, session: LiveSession) -> None:
        """Stop generating for a session; its stream is freed by a worker, after any chunk of it
        still waiting to be rendered."""
        with self._work:
            self._sessions.pop(session.id, None)
            self._renders.append((session, None, [], None))
            self._work.notify()

    def wake(self) -> None:
        with self._work:
            self._work.notify_all()

    # what a free worker does next -------------------------------------------------------------
    def _take(self) -> tuple[Callable[[], None], set[str], list[str]] | None:
        """Under the lock: the oldest chunk to render of a session no worker is busy with, else
        the most urgent group of sessions that need their next chunk; as the work to run, the
        busy set it marks and the sessions it marks there."""
        for item in self._renders:
            if item[0].id not in self._rendering:
                self._renders.remove(item)
                self._rendering.add(item[0].id)
                return partial(self._render_one, *item), self._rendering, [item[0].id]
        if self.holding:
            return None
        now = time.monotonic()
        wanting = [(ahead, s) for s in self._sessions.values()
                   if s.id not in self._generating and (ahead := s.wants_chunk(now, self.buffer_seconds)) is not None]  # fmt: skip
        if not wanting:
            return None
        batch = sorted(wanting, key=lambda x: x[0])[: self.max_batch]
        taken = [batch[i] for i in condition_groups([s.stream.session for _, s in batch])[0]]
        if self.metrics is not None:
            for ahead, s in taken:
                self.metrics.queue_wait.observe(s.queue_wait(now, ahead, self.buffer_seconds))
        group = [s for _, s in taken]
        ids = [s.id for s in group]
        self._generating.update(ids)
        return partial(self._generate, group), self._generating, ids

    def _work_loop(self) -> None:
        torch.set_num_threads(1)  # per thread: the workers share the cores instead of each spreading over all of them
        while not self._stop.is_set():
            with self._work:
                task = self._take()
                if task is None:
                    self._work.wait(IDLE_WAIT_SECONDS)
                    continue
            run, busy, ids = task
            try:
                run()
            finally:
                with self._work:
                    busy.difference_update(ids)
                    self._work.notify()
            task = run = None  # hold no closed session while waiting

    def _generate(self, group: list[LiveSession]) -> None:
        try:
            results = generate_together([s.stream for s in group])
        except Exception as e:  # noqa: BLE001 - a batch that fails ends its sessions, not the server
            results = [e] * len(group)
        made = []
        done = time.monotonic()
        for session, result in zip(group, results):
            session.free_from = done
            if isinstance(result, Exception):
                event("session_failed", "session %s failed while generating: %r", session.tag, result, level=logging.ERROR, session=session.tag,
                      error=repr(result))  # fmt: skip
                session.fail(result)
            else:
                made.append((session, *result, None))
        if self.decode_batched and made:
            made = self._decode(made)
        with self._work:
            self._renders.extend(made)

    def _decode(self, made: list[RenderItem]) -> list[RenderItem]:
        try:
            decoded = decode_together([s.stream for s, *_ in made], [chunk for _, chunk, _, _ in made])  # type: ignore[misc]
        except Exception as e:  # noqa: BLE001 - as above
            for session, *_ in made:
                event("session_failed", "session %s failed while decoding: %r", session.tag, e, level=logging.ERROR, session=session.tag,
                      error=repr(e), exc_info=True)  # fmt: skip
                session.fail(e)
            return []
        return [(session, chunk, words, d) for (session, chunk, words, _), d in zip(made, decoded)]

    def _render_one(self, session: LiveSession, chunk: ChunkLatents | None, words: list, decoded: Decoded | None) -> None:
        if chunk is None:
            session.stream.close()
        elif not session.closed:
            try:
                session.deliver(session.stream.render(chunk, words, session.measure, decoded))
            except Exception as e:  # noqa: BLE001 - as above
                event("session_failed", "session %s failed while rendering: %r", session.tag, e, level=logging.ERROR, session=session.tag,
                      error=repr(e), exc_info=True)  # fmt: skip
                session.fail(e)
