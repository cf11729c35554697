"""What the server holds: the loaded pipeline, its sessions and their limits. Request handlers
call in here; the slow parts (encoding a reference, timing words) run on the thread pool."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool

from streamchar.utils.text import word_matches
from streamchar.serving.guard import ApiError, SessionNotFound
from streamchar.serving.capacity import Capacity, measure_capacity
from streamchar.serving.scheduler import Scheduler
from streamchar.serving.sessions import LiveSession, Message
from streamchar.serving.settings import ServerSettings
from streamchar.streaming.engine import SessionSettings
from streamchar.data.audio import read_wav
from streamchar.streaming.inputs import (
    MAX_VOICE_SECONDS,
    MIN_VOICE_SECONDS,
    StreamRequest,
    character_request,
    check_transcript,
    load_reference_image,
    load_reference_voice,
)
from streamchar.streaming.live import LiveStream
from streamchar.streaming.pipeline import Pipeline

RETRY_AFTER_SECONDS = 30
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


class ServerState:
    def __init__(self, pipe: Pipeline, settings: ServerSettings, token: str | None = None):
        self.pipe, self.settings, self.token = pipe, settings, token
        self.sessions: dict[str, LiveSession] = {}
        self.scheduler = Scheduler(settings.buffer_seconds, settings.threads, settings.max_batch)
        self.capacity: int | None = settings.max_sessions  # sessions admitted at once; measured by `warm_up` when not given
        self.measured: Capacity | None = None
        self.characters = [f"unseen-{i}" for i in range(pipe.cfg.synthtalk.unseen_characters)]
        self.loop: asyncio.AbstractEventLoop | None = None
        self._opening = 0  # sessions being set up, counted against the limit

    def warm_up(self) -> None:
        """Short streams before the first viewer, so that the first session does not pay for the
        first pass through every layer; without `max_sessions`, they measure how many sessions
        this machine keeps real time, which is then the limit."""
        def open_stream(k: int) -> LiveStream:
            return self._open(lambda: self.character_request(self.characters[k % len(self.characters)], "Hello."), k)

        if self.settings.max_sessions is not None:
            stream = open_stream(0)
            for _ in range(2):
                stream.render(*stream.generate())
            stream.close()
            return
        self.measured = measure_capacity(open_stream, self.pipe.cfg.stream.chunk_seconds, self.settings.max_batch)
        self.capacity = self.measured.sessions

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.scheduler.start()

    def shutdown(self) -> None:
        for session in list(self.sessions.values()):
            self.end(session)
        self.scheduler.stop()

    def get(self, sid: str) -> LiveSession:
        session = self.sessions.get(sid)
        if session is None:
            raise SessionNotFound(sid)
        return session

    # sessions --------------------------------------------------------------------------------
    async def create(self, make_request: Callable[[], StreamRequest], character: str, seed: int) -> LiveSession:
        limit = self.capacity or 1
        if len(self.sessions) + self._opening >= limit:
            raise ApiError(503, f"the server is at its limit of {limit} sessions at once (--max-sessions); try again in "
                                f"{RETRY_AFTER_SECONDS} s", {"Retry-After": str(RETRY_AFTER_SECONDS)})  # fmt: skip
        self._opening += 1
        t_request = time.monotonic()
        try:
            stream = await run_in_threadpool(self._open, make_request, seed)
        finally:
            self._opening -= 1
        assert self.loop is not None
        session = LiveSession(stream, self.loop, character, t_request)
        self.sessions[session.id] = session
        self.scheduler.add(session)
        return session

    def _open(self, make_request: Callable[[], StreamRequest], seed: int) -> LiveStream:
        return LiveStream(self.pipe, make_request(), SessionSettings(steps=self.pipe.steps, seed=seed))

    def end(self, session: LiveSession) -> None:
        if self.sessions.pop(session.id, None) is not None:
            session.close()
            self.scheduler.remove(session)

    def close_idle(self, now: float) -> None:
        """Close the sessions nobody watches or touches for the idle timeout."""
        for session in [s for s in self.sessions.values() if s.viewers == 0 and now - s.last_active > self.settings.idle_timeout_seconds]:
            self.end(session)

    # requests --------------------------------------------------------------------------------
    def check_text(self, text: str, pending: float = 0.0) -> None:
        limit = self.settings.max_text_chars
        if len(text) > limit:
            raise ApiError(413, f"the text is {len(text)} characters; at most {limit} may be sent at once")
        words = len(word_matches(text))
        if pending + words > self.settings.max_pending_words:
            raise ApiError(429, f"{pending + words:.0f} words would wait to be spoken; a session holds at most "
                                f"{self.settings.max_pending_words}: send more once some are spoken")  # fmt: skip

    def character_request(self, character: str, text: str) -> StreamRequest:
        self.check_text(text)
        return character_request(character, text, self.pipe.cfg, allow_empty=True)

    async def read_upload(self, upload: UploadFile, what: str) -> bytes:
        limit = self.settings.max_upload_bytes
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise ApiError(413, f"the reference {what} is over the limit of {limit} bytes")
        if not data:
            raise ApiError(422, f"the reference {what} is empty")
        return data

    def upload_request(self, image: bytes, voice: bytes, prompt: str, text: str) -> StreamRequest:
        self.check_text(text)
        if len(prompt) > self.settings.max_prompt_chars:
            raise ApiError(413, f"the prompt is {len(prompt)} characters; at most {self.settings.max_prompt_chars}")
        if not image.startswith(IMAGE_MAGIC):
            raise ApiError(415, "the reference image must be a PNG or JPEG file")
        if not (voice[:4] == b"RIFF" and voice[8:12] == b"WAVE"):
            raise ApiError(415, "the reference voice must be a WAV file (16-bit PCM, 1-10 s)")
        cfg = self.pipe.cfg
        with tempfile.TemporaryDirectory(prefix="streamchar-upload-") as tmp:
            (Path(tmp) / "image").write_bytes(image)
            (Path(tmp) / "voice.wav").write_bytes(voice)
            raw, rate = read_wav(Path(tmp) / "voice.wav")
            seconds = len(raw) / rate if rate else 0.0
            if not MIN_VOICE_SECONDS <= seconds <= MAX_VOICE_SECONDS:
                raise ApiError(422, f"the reference voice is {seconds:.2f} s long; {MIN_VOICE_SECONDS:g}-{MAX_VOICE_SECONDS:g} s are accepted")
            img, notes = load_reference_image(Path(tmp) / "image", cfg)
            audio, more = load_reference_voice(Path(tmp) / "voice.wav", cfg)
        return StreamRequest(check_transcript(text, allow_empty=True), img, audio, prompt, tuple(notes + more))

    async def append(self, session: LiveSession, text: str) -> dict:
        session.last_active = time.monotonic()
        self.check_text(text, session.stream.words_pending())
        added = await run_in_threadpool(session.stream.append, text)
        reply = {"type": "text", "first_word": added.first_word, "words": added.words, "words_total": added.words_total}
        session.post(Message(json=reply))
        self.scheduler.wake()
        return reply

    async def interrupt(self, session: LiveSession) -> dict:
        session.last_active = time.monotonic()
        kept = await run_in_threadpool(session.stream.interrupt)
        reply = {"type": "interrupted", "words_total": kept}
        session.post(Message(json=reply))
        return reply
