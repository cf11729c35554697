"""Viewers for `streamchar bench serve`: programs that watch sessions over the real API.

`PlaybackViewer` plays a session's stream on a clock of its own (it starts with the first chunk
and waits whenever the next chunk is late: a stall) and reports its position as a browser
does, appending a sentence every few seconds. It decodes nothing: the concurrency and soak
runs measure the server, and a browser per session would measure the browser on the same
two cores.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field

import httpx
import websockets

REPORT_SECONDS = 0.25


@dataclass
class ViewerResult:
    session: str = ""
    first_chunk_s: float | None = None  # request to the first chunk's bytes
    chunks: int = 0
    stalls: int = 0
    stall_s: float = 0.0
    appended: int = 0
    errors: list[str] = field(default_factory=list)
    status: dict = field(default_factory=dict)  # the server's status of the session at the end


class PlaybackViewer:
    def __init__(self, host: str, sentences: list[str], seed: int, append_every: tuple[float, float] = (3.0, 6.0)):
        self.host, self.sentences = host, sentences
        self.rng = random.Random(seed)
        self.append_every = append_every
        self.result = ViewerResult()
        self._t0: float | None = None  # when stream second 0 played
        self._stalled = 0.0
        self._received_end = 0.0

    def position(self, now: float) -> float:
        return 0.0 if self._t0 is None else min(now - self._t0 - self._stalled, self._received_end)

    def _arrived(self, media_start: float, seconds: float) -> None:
        now = time.perf_counter()
        if self._t0 is None:
            self._t0 = now
        else:
            late = (now - self._t0 - self._stalled) - media_start
            if late > 1e-3:
                self.result.stalls += 1
                self.result.stall_s += late
                self._stalled += late
        self._received_end = media_start + seconds
        self.result.chunks += 1

    async def watch(self, seconds: float, character: str) -> ViewerResult:
        t_request = time.perf_counter()
        try:
            async with httpx.AsyncClient(base_url=f"http://{self.host}", timeout=30) as client:
                r = await client.post("/api/sessions", json={"character": character, "text": self.rng.choice(self.sentences)})
                if r.status_code != 201:
                    self.result.errors.append(f"create: {r.status_code} {r.text}")
                    return self.result
                session = r.json()
                self.result.session = session["id"]
                async with websockets.connect(f"ws://{self.host}{session['media']}", max_size=2**24) as ws:
                    await asyncio.gather(self._receive(ws, t_request, seconds), self._talk(ws, seconds))
                    self.result.status = (await client.get(f"/api/sessions/{session['id']}")).json()
        except (OSError, websockets.WebSocketException, httpx.HTTPError) as e:
            self.result.errors.append(f"{type(e).__name__}: {e}")
        return self.result

    async def _receive(self, ws, t_request: float, seconds: float) -> None:  # noqa: ANN001
        end = t_request + seconds
        head = None
        while time.perf_counter() < end:
            try:
                message = await asyncio.wait_for(ws.recv(), timeout=max(0.01, end - time.perf_counter()))
            except TimeoutError:
                break
            if isinstance(message, bytes):
                if head is not None:
                    if self.result.first_chunk_s is None:
                        self.result.first_chunk_s = time.perf_counter() - t_request
                    self._arrived(head["media_start"], head["seconds"])
                continue
            msg = json.loads(message)
            if msg["type"] == "chunk":
                head = msg
            elif msg["type"] == "error":
                self.result.errors.append(msg["error"])

    async def _talk(self, ws, seconds: float) -> None:  # noqa: ANN001
        """Report the playback position every quarter second; append a sentence every few seconds."""
        start = time.perf_counter()
        next_append = start + self.rng.uniform(*self.append_every)
        while time.perf_counter() - start < seconds - REPORT_SECONDS:
            await asyncio.sleep(REPORT_SECONDS)
            now = time.perf_counter()
            try:
                if self._t0 is not None:
                    await ws.send(json.dumps({"type": "position", "t": self.position(now)}))
                if now >= next_append:
                    await ws.send(json.dumps({"type": "append", "text": self.rng.choice(self.sentences)}))
                    self.result.appended += 1
                    next_append = now + self.rng.uniform(*self.append_every)
            except websockets.ConnectionClosed:
                return


async def watch_many(host: str, sessions: int, seconds: float, sentences: list[str], characters: list[str]) -> list[ViewerResult]:
    """`sessions` viewers at once, each on its own character, for `seconds`."""
    viewers = [PlaybackViewer(host, sentences, seed=k) for k in range(sessions)]
    return await asyncio.gather(*(v.watch(seconds, characters[k % len(characters)]) for k, v in enumerate(viewers)))
