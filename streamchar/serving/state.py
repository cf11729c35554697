"""What the server holds: the loaded pipeline, its sessions and their limits. Request handlers
call in here; the slow parts (encoding a reference, timing words) run on the thread pool."""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from streamchar.data.audio import read_wav
from streamchar.errors import StreamcharError
from streamchar.serving.capacity import Capacity, measure_capacity
from streamchar.serving.guard import ApiError, SessionNotFound, is_number, parse_command
from streamchar.serving.logs import event
from streamchar.serving.metrics import ServerMetrics
from streamchar.serving.scheduler import Scheduler
from streamchar.serving.sessions import SHORT_SECONDS, LiveSession, Message
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
WARMING_RETRY_SECONDS = 5
DRAIN_SECONDS = 6.0  # a shutdown waits this long at most for the chunks in hand and the viewers' goodbyes; the process exits within 10 s
CLOSING = {"type": "closing", "reason": "the server is shutting down"}  # each viewer's last message when it does
REAP_EVERY_SECONDS = 2.0
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
MIN_VOICE_RATE, MAX_VOICE_RATE = 8_000, 192_000  # telephone speech to studio recordings


class ServerState:
    def __init__(self, pipe: Pipeline, settings: ServerSettings, token: str | None = None, id_prefix: str = ""):
        self.pipe, self.settings, self.token = pipe, settings, token
        self.id_prefix = id_prefix  # before every session id: in a cluster, the replica that holds the session
        self.sessions: dict[str, LiveSession] = {}
        self.metrics = ServerMetrics()
        self.metrics.observe(self)
        batched = settings.decode_batched == "on" or (settings.decode_batched == "auto" and pipe.device.type == "cuda")
        self.scheduler = Scheduler(settings.buffer_seconds, settings.threads, settings.max_batch, self.metrics, batched)
        self.capacity: int | None = settings.max_sessions  # sessions admitted at once; measured by `warm_up` when not given
        self.measured: Capacity | None = None
        self.waiting_for: str | None = "the model's warm-up"  # what keeps the server from being ready; None once `warm_up` is done
        self.draining = False  # shutting down: no session is admitted
        self._warm = False
        self._workers_lock = threading.Lock()
        self._workers_started = False
        self.characters = [f"unseen-{i}" for i in range(pipe.cfg.synthtalk.unseen_characters)]
        self.loop: asyncio.AbstractEventLoop | None = None
        self._opening = 0  # sessions being set up, counted against the limit
        self._reaper: asyncio.Task | None = None
        self.decode_bf16 = settings.decode_precision == "bf16" or (settings.decode_precision == "auto" and bf16_is_native(str(pipe.device)))

    def warm_up(self) -> None:
        """Short streams before the first viewer, so that the first session does not pay for the
        first pass through every layer; without `max_sessions`, they measure how many sessions
        this machine keeps real time, which is then the limit."""
        def open_stream(k: int) -> LiveStream:
            # a made-up voice: the server warms up, and serves uploaded voices, without a speech engine
            return self._open(lambda: silent_voice_request(self.characters[k % len(self.characters)], "Hello.", self.pipe.cfg), k)

        if self.settings.max_sessions is not None:
            self.waiting_for = "the model's warm-up"
            event("warming_up", "warming up")
            stream = open_stream(0)
            for _ in range(2):
                stream.render(*stream.generate())
            stream.close()
        else:
            self.waiting_for = "the model's warm-up and the measurement of how many sessions stay real time"
            event("warming_up", "measuring how many sessions stay real time")
            self.measured = measure_capacity(open_stream, self.pipe.cfg.stream.chunk_seconds, self.settings.max_batch, self.settings.threads)
            self.capacity = self.measured.sessions
        self._warm = True
        self._start_workers()
        self.waiting_for = None
        self._log_ready()

    def _log_ready(self) -> None:
        m, fields = self.measured, {}
        how = "(--max-sessions)"
        if m is not None:
            biggest = max(m.generate_s)
            how = (f"(measured: a chunk takes {m.generate_s[1]:.2f} s through the model alone, {m.generate_s[biggest] / biggest:.2f} s each in "
                   f"a batch of {biggest}, {m.render_s:.2f} s to render, on {m.workers} workers; period {m.period_s:.3f} s)")  # fmt: skip
            fields = {"generate_s": {str(k): round(v, 4) for k, v in m.generate_s.items()}, "render_s": round(m.render_s, 4), "workers": m.workers}
        event("server_ready", "ready: at most %s sessions at once %s; video decoding in %s", self.capacity, how,
              "bf16" if self.decode_bf16 else "fp32", capacity=self.capacity, measured=m is not None, **fields)  # fmt: skip

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._start_workers()
        self._reaper = loop.create_task(self._reap())

    def _start_workers(self) -> None:
        """The scheduler's workers, once the loop runs and the warm-up is done (it may run beside
        the server): `torch.set_num_threads`, which the measurement sets and restores, is the
        process's, and each worker sets it to one as it starts."""
        with self._workers_lock:
            if self.loop is not None and self._warm and not self._workers_started:
                self._workers_started = True
                self.scheduler.start()

    def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for session in list(self.sessions.values()):
            self.end(session, "server_stopped")
        self.scheduler.stop()

    async def drain(self, seconds: float = DRAIN_SECONDS) -> None:
        """Shut down well, within `seconds`: admit no one, begin no chunk, let the chunks in hand
        reach their viewers, then tell each viewer the server is closing and end its session."""
        deadline = time.monotonic() + seconds
        self.draining = True
        event("shutting_down", "shutting down: %d sessions end after the chunk in hand", len(self.sessions), sessions=len(self.sessions))
        self.scheduler.hold()
        while self.scheduler.busy() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        ending = list(self.sessions.values())
        for session in ending:
            session.post(Message(json=dict(CLOSING)))
            self.end(session, "shutdown")
        while any(s.viewers for s in ending) and time.monotonic() < deadline:  # each viewer's sender has handed its last message over
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)  # and its close frame
        event("shut_down", "%d sessions closed; the server stops", len(ending), sessions=len(ending))

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(REAP_EVERY_SECONDS)
            self.close_idle(time.monotonic())

    def get(self, sid: str) -> LiveSession:
        session = self.sessions.get(sid)
        if session is None:
            raise SessionNotFound(sid)
        return session

    # admission -------------------------------------------------------------------------------
    def refusal(self) -> tuple[str, str, int | None] | None:
        """Why a new session would be refused now, as (reason, message, seconds to retry in), or None."""
        if self.draining:
            return "shutting_down", "the server is shutting down: it admits no new session", None
        if self.waiting_for is not None:
            message = f"the server is not ready yet (waiting for {self.waiting_for}); try again in {WARMING_RETRY_SECONDS} s"
            return "warming", message, WARMING_RETRY_SECONDS
        if self.behind():
            return "behind", (f"the server is behind: a viewer's media came within {SHORT_SECONDS} s of running out in the last "
                              f"{self.settings.behind_hold_seconds:g} s; try again in {RETRY_AFTER_SECONDS} s"), RETRY_AFTER_SECONDS  # fmt: skip
        limit = self.capacity or 1
        if len(self.sessions) + self._opening < limit:
            return None
        if self.settings.max_sessions is not None:
            reason, set_by = "limit", "--max-sessions"
        else:
            reason, set_by = "full", "measured at start-up; --max-sessions sets it"
        return reason, f"the server is at its limit of {limit} sessions at once ({set_by}); try again in {RETRY_AFTER_SECONDS} s", RETRY_AFTER_SECONDS

    def behind(self) -> bool:
        """A session's chunk came close to late lately (`LiveSession.short_at`): admitting more
        would make its viewers stall."""
        now, hold = time.monotonic(), self.settings.behind_hold_seconds
        return any(s.short_at is not None and now - s.short_at < hold for s in list(self.sessions.values()))

    def _admit(self, character: str) -> None:
        refused = self.refusal()
        if refused is None:
            return
        reason, message, retry = refused
        self.metrics.refused.labels(reason).inc()
        event("session_refused", "a new session (%r) was refused: %s", character, message, reason=reason, sessions=len(self.sessions))
        raise ApiError(503, message, {"Retry-After": str(retry)} if retry else None)

    # the observations /metrics reads (`metrics.Observed`)
    def sessions_held(self) -> int:
        return len(self.sessions)

    def capacity_now(self) -> int | None:
        return self.capacity

    def admitting(self) -> bool:
        return self.refusal() is None

    def buffers(self) -> list[float]:
        now = time.monotonic()
        return [s.clock.delivered - s.clock.position(now) for s in list(self.sessions.values()) if s.viewers and s.chunks]

    async def readiness(self) -> dict:
        if self.draining:
            return {"ready": False, "waiting_for": None, "error": "the server is shutting down"}
        if self.waiting_for is not None:
            return {"ready": False, "waiting_for": self.waiting_for, "error": f"not ready: waiting for {self.waiting_for}"}
        return {"ready": True, "sessions": len(self.sessions), "max_sessions": self.capacity}

    async def metrics_text(self) -> bytes:
        return self.metrics.text()

    # sessions --------------------------------------------------------------------------------
    async def create(self, make_request: Callable[[], StreamRequest], character: str, seed: int) -> LiveSession:
        self._admit(character)
        self._opening += 1
        t_request = time.monotonic()
        try:
            stream = await run_in_threadpool(self._open, make_request, seed)
        finally:
            self._opening -= 1
        assert self.loop is not None
        session = LiveSession(stream, self.loop, character, t_request, self.id_prefix, self.settings.measure_mouth, self.metrics)
        self.sessions[session.id] = session
        self.scheduler.add(session)
        self.metrics.admitted.inc()
        event("session_created", "session %s created (%s) in %.2f s; %d sessions", session.tag, character, time.monotonic() - t_request,
              len(self.sessions), session=session.tag, character=character, setup_s=round(time.monotonic() - t_request, 3),
              sessions=len(self.sessions))  # fmt: skip
        return session

    def _open(self, make_request: Callable[[], StreamRequest], seed: int) -> LiveStream:
        return LiveStream(self.pipe, make_request(), SessionSettings(steps=self.pipe.steps, seed=seed), self.decode_bf16)

    def end(self, session: LiveSession, why: str) -> None:
        if self.sessions.pop(session.id, None) is not None:
            session.close()
            self.scheduler.remove(session)
            why = "failed" if session.error and why == "viewer_left" else why
            event("session_closed", "session %s closed (%s) after %d chunks, %d stalls; %d sessions", session.tag, why, session.chunks,
                  session.clock.stalls, len(self.sessions), session=session.tag, reason=why, chunks=session.chunks, stalls=session.clock.stalls,
                  stall_s=round(session.clock.stall_seconds, 3), sessions=len(self.sessions))  # fmt: skip

    def close_idle(self, now: float) -> None:
        """Close the sessions nobody watches or touches for the idle timeout."""
        for session in [s for s in self.sessions.values() if s.viewers == 0 and now - s.last_active > self.settings.idle_timeout_seconds]:
            self.end(session, "idle")

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
        event("session_interrupted", "session %s interrupted: %d words kept", session.tag, kept, session=session.tag, words_total=kept)
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
        self.end(self.get(sid), "deleted")

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
        session.free_from = max(session.free_from, time.monotonic())
        self.scheduler.wake()
        try:
            yield Message(json={"type": "session", "id": session.id, "words": session.stream.transcript_words(),
                                "words_total": session.stream.session.words_total, "chunk_seconds": session.stream.period})  # fmt: skip
            while (m := await session.outbox.get()) is not None:
                yield m
        finally:
            session.viewers -= 1
            self.end(session, "viewer_left")

    async def command(self, sid: str, text: str | None) -> dict | None:
        """One message from the viewer; a bad one is answered with an error and changes nothing."""
        session = self.get(sid)
        session.last_active = time.monotonic()
        cmd, error = parse_command(text, self.settings.max_message_bytes)
        if error:
            return error
        kind = cmd.get("type")
        try:
            if kind == "position" and is_number(cmd.get("t")):
                session.clock.report(time.monotonic(), float(min(max(cmd["t"], -1e300), 1e300)))  # an int past a float's range: past the end
                if type(cmd.get("stalls")) is int:  # a count (JSON's true is not one)
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
