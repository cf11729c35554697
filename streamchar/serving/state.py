"""What the server holds: the loaded pipeline, its sessions and their limits. Request handlers
call in here; the slow parts (encoding a reference, timing words) run on the thread pool."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from streamchar.data.audio import read_wav
from streamchar.errors import StreamcharError
from streamchar.serving.capacity import Capacity, measure_capacity
from streamchar.serving.guard import ApiError, SessionNotFound
from streamchar.serving.scheduler import Scheduler
from streamchar.serving.sessions import LiveSession, Message
from streamchar.serving.settings import ServerSettings
from streamchar.streaming.engine import SessionSettings
from streamchar.streaming.inputs import (
    MAX_VOICE_SECONDS,
    MIN_VOICE_SECONDS,
    StreamRequest,
    character_request,
    check_image_size,
    check_transcript,
    load_reference_image,
    load_reference_voice,
    silent_voice_request,
)
from streamchar.streaming.live import LiveStream
from streamchar.streaming.pipeline import Pipeline
from streamchar.utils.devices import bf16_is_native
from streamchar.utils.text import normalize_words

RETRY_AFTER_SECONDS = 30
REAP_EVERY_SECONDS = 2.0
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
MIN_VOICE_RATE, MAX_VOICE_RATE = 8_000, 192_000  # telephone speech to studio recordings


class ServerState:
    def __init__(self, pipe: Pipeline, settings: ServerSettings, token: str | None = None, id_prefix: str = ""):
        self.pipe, self.settings, self.token = pipe, settings, token
        self.id_prefix = id_prefix  # before every session id: in a cluster, the replica that holds the session
        self.sessions: dict[str, LiveSession] = {}
        self.scheduler = Scheduler(settings.buffer_seconds, settings.threads, settings.max_batch)
        self.capacity: int | None = settings.max_sessions  # sessions admitted at once; measured by `warm_up` when not given
        self.measured: Capacity | None = None
        self.characters = [f"unseen-{i}" for i in range(pipe.cfg.synthtalk.unseen_characters)]
        self.loop: asyncio.AbstractEventLoop | None = None
        self._opening = 0  # sessions being set up, counted against the limit
        self._reaper: asyncio.Task | None = None
        device = str(next(pipe.model.parameters()).device)
        self.decode_bf16 = settings.decode_precision == "bf16" or (settings.decode_precision == "auto" and bf16_is_native(device))

    def warm_up(self) -> None:
        """Short streams before the first viewer, so that the first session does not pay for the
        first pass through every layer; without `max_sessions`, they measure how many sessions
        this machine keeps real time, which is then the limit."""
        def open_stream(k: int) -> LiveStream:
            # a made-up voice: the server warms up, and serves uploaded voices, without a speech engine
            return self._open(lambda: silent_voice_request(self.characters[k % len(self.characters)], "Hello.", self.pipe.cfg), k)

        if self.settings.max_sessions is not None:
            stream = open_stream(0)
            for _ in range(2):
                stream.render(*stream.generate())
            stream.close()
            return
        self.measured = measure_capacity(open_stream, self.pipe.cfg.stream.chunk_seconds, self.settings.max_batch, self.settings.threads)
        self.capacity = self.measured.sessions

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.scheduler.start()
        self._reaper = loop.create_task(self._reap())

    def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for session in list(self.sessions.values()):
            self.end(session)
        self.scheduler.stop()

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(REAP_EVERY_SECONDS)
            self.close_idle(time.monotonic())

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
        session = LiveSession(stream, self.loop, character, t_request, self.id_prefix, self.settings.measure_mouth)
        self.sessions[session.id] = session
        self.scheduler.add(session)
        return session

    def _open(self, make_request: Callable[[], StreamRequest], seed: int) -> LiveStream:
        return LiveStream(self.pipe, make_request(), SessionSettings(steps=self.pipe.steps, seed=seed), self.decode_bf16)

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
        words = len(normalize_words(text))  # spoken words: "$3" waits as two
        if pending + words > self.settings.max_pending_words:
            raise ApiError(429, f"{pending + words:.0f} words would wait to be spoken; a session holds at most "
                                f"{self.settings.max_pending_words}: send more once some are spoken")  # fmt: skip

    def character_request(self, character: str, text: str) -> StreamRequest:
        self.check_text(text)
        return character_request(character, text, self.pipe.cfg, allow_empty=True)

    def upload_request(self, image: bytes, voice: bytes, prompt: str, text: str) -> StreamRequest:
        self.check_text(text)
        if len(prompt) > self.settings.max_prompt_chars:
            raise ApiError(413, f"the prompt is {len(prompt)} characters; at most {self.settings.max_prompt_chars}")
        if not image.startswith(IMAGE_MAGIC):
            raise ApiError(415, "the reference image must be a PNG or JPEG file")
        if not (voice[:4] == b"RIFF" and voice[8:12] == b"WAVE"):
            raise ApiError(415, "the reference voice must be a WAV file (16-bit PCM, 1-10 s)")
        check_image_size(image, self.settings.max_image_pixels)
        cfg = self.pipe.cfg
        with tempfile.TemporaryDirectory(prefix="streamchar-upload-") as tmp:
            (Path(tmp) / "image").write_bytes(image)
            (Path(tmp) / "voice.wav").write_bytes(voice)
            raw, rate = read_wav(Path(tmp) / "voice.wav")
            if not MIN_VOICE_RATE <= rate <= MAX_VOICE_RATE:
                raise ApiError(422, f"the reference voice's sample rate is {rate} Hz; {MIN_VOICE_RATE}-{MAX_VOICE_RATE} Hz are accepted")
            seconds = len(raw) / rate
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

    # the service the app calls, plain data in and out (a cluster replica serves the same) -----
    async def create_character(self, character: str, text: str, seed: int) -> dict:
        return created(await self.create(lambda: self.character_request(character, text), character, seed))

    async def create_upload(self, image: bytes, voice: bytes, prompt: str, text: str, seed: int) -> dict:
        return created(await self.create(lambda: self.upload_request(image, voice, prompt, text), "upload", seed))

    async def append_text(self, sid: str, text: str) -> dict:
        return await self.append(self.get(sid), text)

    async def interrupt_session(self, sid: str) -> dict:
        return await self.interrupt(self.get(sid))

    async def session_status(self, sid: str) -> dict:
        session = self.get(sid)
        session.last_active = time.monotonic()
        return session.status()

    async def close_session(self, sid: str) -> None:
        self.end(self.get(sid))

    async def health(self) -> dict:
        return {"sessions": len(self.sessions), "max_sessions": self.capacity, "model": self.pipe.meta.get("name")}

    async def character_list(self) -> dict:
        return {"characters": self.characters, "default": self.characters[0]}

    async def watch(self, sid: str) -> AsyncIterator[Message]:
        """The session's messages for its one viewer, from the greeting on; when the viewer goes
        (the iteration is closed or cancelled), so does the session."""
        session = self.get(sid)
        if session.viewers:
            raise ApiError(409, "the session already has a viewer")
        session.viewers += 1
        self.scheduler.wake()
        try:
            yield Message(json={"type": "session", "id": session.id, "words": session.stream.transcript_words(),
                                "words_total": session.stream.session.words_total, "chunk_seconds": session.stream.period})  # fmt: skip
            while (m := await session.outbox.get()) is not None:
                yield m
        finally:
            session.viewers -= 1
            self.end(session)

    async def command(self, sid: str, text: str | None) -> dict | None:
        """One message from the viewer; a bad one is answered with an error and changes nothing."""
        session = self.get(sid)
        session.last_active = time.monotonic()
        cmd, error = parse_command(text, self.settings.max_message_bytes)
        if error:
            return error
        kind = cmd.get("type")
        try:
            if kind == "position" and isinstance(cmd.get("t"), (int, float)):
                session.clock.report(time.monotonic(), float(cmd["t"]))
                if isinstance(cmd.get("stalls"), int):
                    session.client_stalls = cmd["stalls"]
                return None
            if kind == "append" and isinstance(cmd.get("text"), str):
                await self.append(session, cmd["text"])
                return None
            if kind == "interrupt":
                await self.interrupt(session)
                return None
            if kind == "status":
                return {"type": "status", **session.status()}
        except StreamcharError as e:
            return {"type": "error", "error": str(e)}
        return {"type": "error", "error": "unknown message: send {\"type\": \"append\", \"text\": ...}, {\"type\": \"interrupt\"}, "
                                          "{\"type\": \"status\"} or {\"type\": \"position\", \"t\": seconds}"}  # fmt: skip


def created(session: LiveSession) -> dict:
    return {"id": session.id, "media": f"/api/sessions/{session.id}/media", "words_total": session.stream.session.words_total,
            "words": session.stream.transcript_words(), "setup_s": round(time.monotonic() - session.created, 3)}  # fmt: skip


def parse_command(text: str | None, max_bytes: int) -> tuple[dict, dict | None]:
    """A viewer's message as a dict, or the error to answer it with."""
    if text is None:
        return {}, {"type": "error", "error": "binary messages are not accepted: send JSON text such as {\"type\": \"append\", \"text\": \"...\"}"}
    if len(text) > max_bytes:
        return {}, {"type": "error", "error": f"a message may be at most {max_bytes} bytes"}
    try:
        cmd = json.loads(text)
    except json.JSONDecodeError as e:
        return {}, {"type": "error", "error": f"not valid JSON ({e.msg} at character {e.pos})"}
    return (cmd if isinstance(cmd, dict) else {}), None  # not an object: an unknown message
