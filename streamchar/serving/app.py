"""The HTTP + WebSocket API and the page, one FastAPI app: sessions are created, fed text,
interrupted, watched and closed here; their media leave by WebSocket as fragmented MP4."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from importlib import resources
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from streamchar.errors import StreamcharError
from streamchar.serving.guard import BodyLimit, SessionNotFound, TokenGuard, api_error
from streamchar.serving.sessions import LiveSession
from streamchar.serving.state import ServerState

STATIC = Path(str(resources.files("streamchar").joinpath("serving/static")))
REAP_EVERY_SECONDS = 2.0


class CreateSession(BaseModel):
    model_config = ConfigDict(extra="forbid")
    character: str = Field("unseen-0", max_length=32, description="a SynthTalk character: unseen-0..7, train-0..47 or a seed")
    text: str = Field("", description="the first words to speak (may be empty: the character listens)")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="noise seed")


class AppendText(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(..., description="words to speak after those already given")


def create_app(state: ServerState) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        state.attach(asyncio.get_running_loop())
        reaper = asyncio.create_task(_reap(state))
        try:
            yield
        finally:
            reaper.cancel()
            state.shutdown()

    app = FastAPI(title="streamchar", version="0.1.0", lifespan=lifespan,
                  description="Live streaming of a talking character's speech and video from text. Create a session, open its media "
                              "WebSocket (fragmented MP4 for Media Source Extensions, with JSON messages saying which words each chunk "
                              "speaks), then append text, interrupt and close. With a token, send `Authorization: Bearer TOKEN` "
                              "(or `?token=TOKEN` on the page and the WebSocket).")  # fmt: skip
    guard = TokenGuard(state.token)
    app.middleware("http")(guard.http)
    app.add_middleware(BodyLimit, max_bytes=2 * state.settings.max_upload_bytes + 64 * 1024)
    _add_error_handlers(app)
    _add_page_routes(app, state)
    _add_create_routes(app, state)
    _add_session_routes(app, state)
    _add_media_socket(app, state, guard)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StreamcharError)
    async def _bad_input(request: Request, e: StreamcharError) -> JSONResponse:
        return api_error(getattr(e, "status", 400), str(e), getattr(e, "headers", None))

    @app.exception_handler(SessionNotFound)
    async def _no_session(request: Request, e: SessionNotFound) -> JSONResponse:
        return api_error(404, "no such session (closed, timed out, or never created)")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'][1:]) or 'body'}: {err['msg']}" for err in e.errors())
        return api_error(422, f"the request is not valid: {problems}")


def _add_page_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/health", summary="Sessions held and the limit")
    async def health() -> dict:
        return {"sessions": len(state.sessions), "max_sessions": state.capacity, "model": state.pipe.meta.get("name")}

    @app.get("/api/characters", summary="The shipped characters a session may take")
    async def characters() -> dict:
        return {"characters": state.characters, "default": state.characters[0]}


def _add_create_routes(app: FastAPI, state: ServerState) -> None:
    @app.post("/api/sessions", status_code=201, summary="Create a session for a SynthTalk character")
    async def create(body: CreateSession) -> dict:
        session = await state.create(lambda: state.character_request(body.character, body.text), body.character, body.seed)
        return _created(session)

    @app.post("/api/sessions/upload", status_code=201, summary="Create a session from a reference image (PNG/JPEG) and voice (WAV, 1-10 s)")
    async def create_upload(image: Annotated[UploadFile, File()], voice: Annotated[UploadFile, File()], prompt: Annotated[str, Form()] = "",
                            text: Annotated[str, Form()] = "", seed: Annotated[int, Form(ge=0, le=2**31 - 1)] = 0) -> dict:  # fmt: skip
        image_bytes, voice_bytes = await state.read_upload(image, "image"), await state.read_upload(voice, "voice")
        session = await state.create(lambda: state.upload_request(image_bytes, voice_bytes, prompt, text), "upload", seed)
        return _created(session)


def _add_session_routes(app: FastAPI, state: ServerState) -> None:
    @app.post("/api/sessions/{sid}/append", summary="Append text: spoken after the words already given")
    async def append(sid: str, body: AppendText) -> dict:
        return await state.append(state.get(sid), body.text)

    @app.post("/api/sessions/{sid}/interrupt", summary="Drop the words not yet begun; the character stops at the next word or chunk")
    async def interrupt(sid: str) -> dict:
        return await state.interrupt(state.get(sid))

    @app.get("/api/sessions/{sid}", summary="Status: words heard and pending, real-time factor, buffer, stalls")
    async def status(sid: str) -> dict:
        session = state.get(sid)
        session.last_active = time.monotonic()
        return session.status()

    @app.delete("/api/sessions/{sid}", status_code=204, summary="Close a session and free it")
    async def close(sid: str) -> Response:
        state.end(state.get(sid))
        return Response(status_code=204)


def _add_media_socket(app: FastAPI, state: ServerState, guard: TokenGuard) -> None:
    @app.websocket("/api/sessions/{sid}/media")
    async def media(ws: WebSocket, sid: str) -> None:
        if not guard.allows(ws.headers, ws.query_params, ws.cookies):
            await _deny(ws, 401, "a token is required: ?token=TOKEN")
            return
        session = state.sessions.get(sid)
        if session is None:
            await _deny(ws, 404, "no such session")
            return
        if session.viewers:
            await _deny(ws, 409, "the session already has a viewer")
            return
        await ws.accept()
        await _watch(state, session, ws)


def _created(session: LiveSession) -> dict:
    return {"id": session.id, "media": f"/api/sessions/{session.id}/media", "words_total": session.stream.session.words_total,
            "words": session.stream.transcript_words(), "setup_s": round(time.monotonic() - session.created, 3)}  # fmt: skip


async def _deny(ws: WebSocket, status: int, message: str) -> None:
    try:
        await ws.send_denial_response(api_error(status, message))
    except RuntimeError:  # a server without the denial extension: refuse the handshake plainly
        await ws.close(code=1008, reason=message)


async def _watch(state: ServerState, session: LiveSession, ws: WebSocket) -> None:
    """Stream the session to this viewer and take its commands; when the viewer goes, so does the session."""
    session.viewers += 1
    state.scheduler.wake()
    await ws.send_json({"type": "session", "id": session.id, "words": session.stream.transcript_words(),
                        "words_total": session.stream.session.words_total, "chunk_seconds": session.stream.period})  # fmt: skip
    sender = asyncio.create_task(_send(session, ws))
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            reply = await _command(state, session, message)
            if reply is not None:
                await ws.send_json(reply)
    except WebSocketDisconnect:
        pass
    finally:
        sender.cancel()
        session.viewers -= 1
        state.end(session)


async def _send(session: LiveSession, ws: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while (m := await session.outbox.get()) is not None:
            if m.json is not None:
                await ws.send_json(m.json)
            if m.data is not None:
                await ws.send_bytes(m.data)
        await ws.close()


async def _command(state: ServerState, session: LiveSession, message: dict) -> dict | None:
    """One message from the viewer; a bad one is answered with an error and changes nothing."""
    session.last_active = time.monotonic()
    text = message.get("text")
    if text is None:
        return {"type": "error", "error": "binary messages are not accepted: send JSON text such as {\"type\": \"append\", \"text\": \"...\"}"}
    if len(text) > state.settings.max_message_bytes:
        return {"type": "error", "error": f"a message may be at most {state.settings.max_message_bytes} bytes"}
    try:
        cmd = json.loads(text)
    except json.JSONDecodeError as e:
        return {"type": "error", "error": f"not valid JSON ({e.msg} at character {e.pos})"}
    kind = cmd.get("type") if isinstance(cmd, dict) else None
    try:
        if kind == "position" and isinstance(cmd.get("t"), (int, float)):
            session.clock.report(time.monotonic(), float(cmd["t"]))
            if isinstance(cmd.get("stalls"), int):
                session.client_stalls = cmd["stalls"]
            return None
        if kind == "append" and isinstance(cmd.get("text"), str):
            await state.append(session, cmd["text"])
            return None
        if kind == "interrupt":
            await state.interrupt(session)
            return None
        if kind == "status":
            return {"type": "status", **session.status()}
    except StreamcharError as e:
        return {"type": "error", "error": str(e)}
    return {"type": "error", "error": "unknown message: send {\"type\": \"append\", \"text\": ...}, {\"type\": \"interrupt\"}, "
                                      "{\"type\": \"status\"} or {\"type\": \"position\", \"t\": seconds}"}  # fmt: skip


async def _reap(state: ServerState) -> None:
    while True:
        await asyncio.sleep(REAP_EVERY_SECONDS)
        state.close_idle(time.monotonic())
