"""The HTTP + WebSocket API and the page, one FastAPI app: sessions are created, fed text,
interrupted, watched and closed here; their media leave by WebSocket as fragmented MP4."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Annotated

import uvicorn
from fastapi import FastAPI, File, Form, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from streamchar.errors import StreamcharError
from streamchar.serving.guard import ApiError, BodyLimit, SessionNotFound, TokenGuard, api_error
from streamchar.serving.logs import log
from streamchar.serving.metrics import CONTENT_TYPE
from streamchar.serving.service import SessionService
from streamchar.serving.sessions import Message

STATIC = Path(str(resources.files("streamchar").joinpath("serving/static")))
FLUSH_SECONDS = 3.0  # how long an ended session's last messages may take to reach its viewer


class ApiErrorBody(BaseModel):
    error: str = Field(..., description="what was wrong: the limit broken, or what to send instead")


REFUSED = {"4XX": {"model": ApiErrorBody, "description": "refused: the one error shape, `{\"error\": \"...\"}`"}}
NO_ROOM = {503: {"model": ApiErrorBody, "description": "no session now: at the limit (Retry-After says when to try again), warming up, "
                                                       "or shutting down"}}  # fmt: skip


class CreateSession(BaseModel):
    model_config = ConfigDict(extra="forbid")
    character: str = Field("unseen-0", max_length=32, description="a SynthTalk character: unseen-0..7, train-0..47 or a seed")
    text: str = Field("", description="the first words to speak (may be empty: the character listens)")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="noise seed")


class AppendText(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(..., description="words to speak after those already given")


def create_app(service: SessionService) -> FastAPI:
    """The app over `service`: one server's state, or a cluster's gateway."""
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        service.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(title="streamchar", version="0.1.0", lifespan=lifespan, responses=REFUSED,
                  description="Live streaming of a talking character's speech and video from text. Create a session, open its media "
                              "WebSocket (fragmented MP4 for Media Source Extensions, with JSON messages saying which words each chunk "
                              "speaks), then append text, interrupt and close. With a token, send `Authorization: Bearer TOKEN` "
                              "(or `?token=TOKEN` on the page and the WebSocket).")  # fmt: skip
    guard = TokenGuard(service.token)
    app.middleware("http")(guard.http)
    app.add_middleware(BodyLimit, max_bytes=2 * service.settings.max_upload_bytes + 64 * 1024)
    _add_error_handlers(app)
    _add_page_routes(app, service)
    _add_create_routes(app, service)
    _add_session_routes(app, service)
    _add_media_socket(app, service, guard)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StreamcharError)
    async def _bad_input(request: Request, e: StreamcharError) -> JSONResponse:
        return api_error(getattr(e, "status", 400), str(e), getattr(e, "headers", None))

    @app.exception_handler(SessionNotFound)
    async def _no_session(request: Request, e: SessionNotFound) -> JSONResponse:
        return api_error(404, "no such session (closed, timed out, or never created)")

    @app.exception_handler(HTTPException)  # the framework's own refusals (no such route or method, a body it cannot parse)
    async def _refused(request: Request, e: HTTPException) -> JSONResponse:
        return api_error(e.status_code, str(e.detail), e.headers)

    @app.exception_handler(Exception)  # a failure of the server's own: still the one shape (and its traceback in the log)
    async def _failed(request: Request, e: Exception) -> JSONResponse:
        return api_error(500, f"the server failed on this request ({type(e).__name__}); its log says where")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'][1:]) or 'body'}: {err['msg']}" for err in e.errors())
        return api_error(422, f"the request is not valid: {problems}")


def _add_page_routes(app: FastAPI, service: SessionService) -> None:
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/health", summary="Alive: sessions held and the limit (answers at once, warm or not)")
    async def health() -> dict:
        return await service.health()

    @app.get("/api/ready", summary="Ready for sessions: 200 once the model is warm and the capacity measured, else 503 saying what it waits for",
             responses={503: {"description": "warming up, or shutting down"}})  # fmt: skip
    async def ready() -> JSONResponse:
        answer = await service.readiness()
        return JSONResponse(answer, status_code=200 if answer.get("ready") else 503)

    @app.get("/metrics", summary="Prometheus metrics: sessions, chunks, compute, stalls, buffers, queue wait, admissions and refusals")
    async def metrics() -> Response:
        return Response(await service.metrics_text(), media_type=CONTENT_TYPE)

    @app.get("/api/characters", summary="The shipped characters a session may take")
    async def characters() -> dict:
        return await service.character_list()


def _add_create_routes(app: FastAPI, service: SessionService) -> None:
    @app.post("/api/sessions", status_code=201, summary="Create a session for a SynthTalk character", responses=NO_ROOM)
    async def create(body: CreateSession) -> dict:
        return await service.create_character(body.character, body.text, body.seed)

    @app.post("/api/sessions/upload", status_code=201, summary="Create a session from a reference image (PNG/JPEG) and voice (WAV, 1-10 s)",
              responses=NO_ROOM)
    async def create_upload(image: Annotated[UploadFile, File()], voice: Annotated[UploadFile, File()], prompt: Annotated[str, Form()] = "",
                            text: Annotated[str, Form()] = "", seed: Annotated[int, Form(ge=0, le=2**31 - 1)] = 0) -> dict:  # fmt: skip
        limit = service.settings.max_upload_bytes
        image_bytes, voice_bytes = await _read_upload(image, "image", limit), await _read_upload(voice, "voice", limit)
        return await service.create_upload(image_bytes, voice_bytes, prompt, text, seed)


async def _read_upload(upload: UploadFile, what: str, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, f"the reference {what} is over the limit of {limit} bytes")
    if not data:
        raise ApiError(422, f"the reference {what} is empty")
    return data


def _add_session_routes(app: FastAPI, service: SessionService) -> None:
    @app.post("/api/sessions/{sid}/append", summary="Append text: spoken after the words already given")
    async def append(sid: str, body: AppendText) -> dict:
        return await service.append_text(sid, body.text)

    @app.post("/api/sessions/{sid}/interrupt", summary="Drop the words not yet begun; the character stops at the next word or chunk")
    async def interrupt(sid: str) -> dict:
        return await service.interrupt_session(sid)

    @app.get("/api/sessions/{sid}", summary="Status: words heard and pending, real-time factor, buffer, stalls")
    async def status(sid: str) -> dict:
        return await service.session_status(sid)

    @app.delete("/api/sessions/{sid}", status_code=204, summary="Close a session and free it")
    async def close(sid: str) -> Response:
        await service.close_session(sid)
        return Response(status_code=204)


def _add_media_socket(app: FastAPI, service: SessionService, guard: TokenGuard) -> None:
    @app.websocket("/api/sessions/{sid}/media")
    async def media(ws: WebSocket, sid: str) -> None:
        if not guard.allows(ws.headers, ws.query_params, ws.cookies):
            await _deny(ws, 401, "a token is required: ?token=TOKEN")
            return
        stream = service.watch(sid)
        try:
            greeting = await anext(stream)
        except SessionNotFound:
            await _deny(ws, 404, "no such session")
            return
        except ApiError as e:
            await _deny(ws, e.status, str(e))
            return
        await ws.accept()
        await _watch(service, sid, stream, greeting, ws)


async def _deny(ws: WebSocket, status: int, message: str) -> None:
    try:
        await ws.send_denial_response(api_error(status, message))
    except RuntimeError:  # a server without the denial extension: refuse the handshake plainly
        await ws.close(code=1008, reason=message)


async def _watch(service: SessionService, sid: str, stream: AsyncIterator[Message], greeting: Message, ws: WebSocket) -> None:
    """Stream the session to this viewer and take its commands; when the viewer goes, so does the session."""
    sender = asyncio.create_task(_send(stream, greeting, ws))
    gone = True  # the viewer left (or its socket failed); False: the session ended first
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            try:
                reply = await service.command(sid, message.get("text"))
            except SessionNotFound:  # ended (closed, shut down): what it posted last is still on its way
                gone = False
                break
            if reply is not None:
                try:
                    await ws.send_json(reply)
                except RuntimeError:  # the socket closed while the command ran (Starlette: 'Cannot call "send" once a close message has been sent')
                    break
    except WebSocketDisconnect:
        pass
    finally:
        if not gone:  # let the sender hand over the session's last messages (a closing message) and close
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(sender), FLUSH_SECONDS)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
        with contextlib.suppress(Exception):
            await stream.aclose()  # which ends the session


async def _send(stream: AsyncIterator[Message], greeting: Message, ws: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await ws.send_json(greeting.json)
        async for m in stream:
            if m.json is not None:
                await ws.send_json(m.json)
            if m.data is not None:
                await ws.send_bytes(m.data)
        await ws.close()


class GracefulServer(uvicorn.Server):
    """uvicorn that, stopped (SIGTERM, Ctrl-C), first lets the service end its sessions well
    (`SessionService.drain`: no new session, the chunks in hand delivered, each viewer told)
    while the sockets are still open, and only then closes the connections as uvicorn does."""

    def __init__(self, config: uvicorn.Config, service: SessionService, drain_seconds: float):
        super().__init__(config)
        self.service, self.drain_seconds = service, drain_seconds

    async def shutdown(self, sockets: list | None = None) -> None:
        if not self.force_exit:  # a second Ctrl-C skips it
            try:
                await asyncio.wait_for(self.service.drain(self.drain_seconds), self.drain_seconds + 1)
            except Exception:  # noqa: BLE001 - the server stops all the same
                log.exception("the sessions could not all be ended well")
        await super().shutdown(sockets)
