"""What stands between a client and the sessions: the token, the body-size limit, the reading
of a viewer's messages, and the errors a client gets back (one JSON shape, `{"error": "..."}`,
with a 4xx or 503 status)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Mapping

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from streamchar.errors import StreamcharError

COOKIE = "streamchar_token"


class ApiError(StreamcharError):
    """A client's request that breaks a limit: its HTTP status and what the limit is."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers or {}

    def __reduce__(self) -> tuple:  # rebuilt whole where it crosses processes (a cluster's replica to its gateway)
        return ApiError, (self.status, str(self), self.headers)


class SessionNotFound(Exception):
    pass


def api_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class TokenGuard:
    """With a token, every request carries it: `Authorization: Bearer TOKEN`, `?token=TOKEN` (the
    page's address and the WebSocket, where a browser cannot set headers), or the cookie the
    page's answer sets for its own scripts and styles."""

    def __init__(self, token: str | None):
        self.token = token

    def allows(self, headers: Mapping[str, str], query: Mapping[str, str], cookies: Mapping[str, str]) -> bool:
        if self.token is None:
            return True
        auth = headers.get("authorization", "")
        offered = [auth[7:] if auth.lower().startswith("bearer ") else "", query.get("token", ""), cookies.get(COOKIE, "")]
        return any(o and hmac.compare_digest(o.encode(), self.token.encode()) for o in offered)

    async def http(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if not self.allows(request.headers, request.query_params, request.cookies):
            return api_error(401, "a token is required: send 'Authorization: Bearer TOKEN' (the token the server was started with, "
                                  "--token-file), or open the page as /?token=TOKEN", {"WWW-Authenticate": "Bearer"})  # fmt: skip
        response = await call_next(request)
        if self.token is not None and request.url.path == "/" and request.query_params.get("token"):
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
        return response


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413, by its declared length or, for
    a body sent in chunks, as it arrives (the app never sees more than the limit)."""

    def __init__(self, app, max_bytes: int):  # noqa: ANN001
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is over the server's limit of {self.max_bytes} bytes"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await api_error(413, message)(scope, receive, send)
            return
        seen, started = 0, False

        async def counted():  # noqa: ANN202
            nonlocal seen
            m = await receive()
            if m["type"] == "http.request":
                seen += len(m.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return m

        async def watched(m) -> None:  # noqa: ANN001
            nonlocal started
            started = started or m["type"] == "http.response.start"
            await send(m)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if not started:
                await api_error(413, message)(scope, receive, send)


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
    except (ValueError, RecursionError):  # an integer of more digits than Python reads (4,300), arrays or objects nested too deep
        return {}, {"type": "error", "error": "not JSON this server reads: a number with too many digits, or values nested too deep"}
    return (cmd if isinstance(cmd, dict) else {}), None  # not an object: an unknown message


def is_number(value: object) -> bool:
    """A JSON number (JSON's `true` reads as Python's `True`, an `int`, and is not one)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
