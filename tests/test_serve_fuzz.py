"""Bad input, tried systematically against a live `streamchar serve` (issue 42): requests generated
from the server's own OpenAPI schema by schemathesis, valid and invalid, on every operation (no
answer is a 5xx; every error is the one JSON shape `{"error": "..."}`), and a WebSocket fuzzer on
live sessions (random text and binary frames, frames over the limit, broken frames, JSON that is
invalid or says unknown and out-of-order commands, rapid connects): the server, and a session
watched beside them, go on.

Both are repeatable: hypothesis is derandomized and the WebSocket fuzzer's generator seeded (hypothesis
also draws some values from the constants of the project's modules loaded, so the requests shift a
little with the other tests run in the same process)."""

import contextlib
import json
import logging
import random
import socket
import struct
import threading
import time
from collections import Counter

import httpx
import numpy as np
import pytest
import requests
from serve_viewer import Viewer, wait_until
from upload_samples import sample_png, sample_wav
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

TEXT = "The birch canoe slid on the smooth planks."
EXAMPLES = 60  # per operation and mode (valid, invalid): the 3 with a body both ways, the 3 with only a session id valid; 548 in all
CREATES = ("/api/sessions", "/api/sessions/upload")
LONG_NUMBERS = "$" + "9" * 400 + " and 1" + "0" * 310 + "th."  # past the largest number num2words reads (10^306)
BY_HAND = [  # (method, path, JSON body): no route or method, and inputs too rare to be generated
    ("PUT", "/api/health", None), ("PATCH", "/api/sessions", None), ("GET", "/api/nothing", None), ("GET", "/static/nothing.js", None),
    ("POST", "/api/sessions", "[" * 6000 + "]" * 6000),  # nested deeper than Python's JSON reader recurses
    ("POST", "/api/sessions", '{"seed": ' + "9" * 5000 + "}"),  # more digits than Python reads
    ("POST", "/api/sessions", json.dumps({"character": "unseen-0", "text": "9" * 400})),
    ("POST", "/api/sessions/{sid}/append", json.dumps({"text": LONG_NUMBERS})),
]  # fmt: skip
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager")]


# uvicorn's own answer to a text frame that is not UTF-8 (its websockets-sansio protocol, before the app sees a frame): it
# closes the socket with 1007 as RFC 6455 says, and logs the decoding error at ERROR with its traceback. Only a session's own
# viewer can send one, and it ends only that session; the log line is uvicorn's, left as it is.
UVICORN_UTF8 = "Invalid UTF-8 sequence received from client."


class ServerLog(logging.Handler):
    """The server's log records at WARNING and above (uvicorn's "Exception in ASGI application"
    with its traceback, the server's own failures), kept to be shown by a failing check."""

    LOGGERS = ("uvicorn", "uvicorn.error", "streamchar")

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.name} {record.levelname}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            text += f" [{type(record.exc_info[1]).__name__}: {record.exc_info[1]}]"
        self.records.append(text)

    def __enter__(self) -> "ServerLog":
        for name in self.LOGGERS:  # uvicorn's loggers do not propagate to the root: the handler goes on each
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)

    def failures(self) -> list[str]:
        return [r for r in self.records if ("Exception" in r or "Traceback" in r or " ERROR:" in r or " CRITICAL:" in r) and UVICORN_UTF8 not in r]
def _one_shape(status: int, content_type: str, content: bytes) -> str | None:
    """What is wrong with an error answer, or None when it is the one JSON shape."""
    try:
        body = json.loads(content)
    except ValueError:
        return f"{status} is not JSON: {content[:200]!r}"
    if not content_type.startswith("application/json"):
        return f"{status} is sent as {content_type!r}"
    if not (isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]):
        return f"{status} is not {{'error': '...'}}: {content[:200]!r}"
    return None


class Fuzzer:
    """Sends the generated requests and checks each answer; holds the sessions they create."""

    def __init__(self, base: str):
        self.base, self.http = base, requests.Session()
        self.sent, self.statuses, self.by_operation = 0, Counter(), Counter()
        self.problems: list[str] = []
        self.by_hand = Counter()  # statuses of the requests made by hand
        self.created: list[str] = []  # sessions the generated requests made, deleted when the server is full
        self.keeper: str | None = None  # a real session that the generated session ids are sometimes replaced with
        self.png, self.wav = sample_png(), sample_wav()
        from schemathesis.core.failures import FailureGroup
        from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

        self.conformance, self.failures = [status_code_conformance, response_schema_conformance], FailureGroup

    def real_session(self) -> str:
        if self.keeper is None or self.http.get(f"{self.base}/api/sessions/{self.keeper}", timeout=30).status_code != 200:
            self.free()
            r = self.http.post(f"{self.base}/api/sessions", json={"character": "unseen-1"}, timeout=60)
            assert r.status_code == 201, r.text
            self.keeper = r.json()["id"]
        return self.keeper

    def free(self) -> None:
        while self.created:
            self.http.delete(f"{self.base}/api/sessions/{self.created.pop()}", timeout=30)

    def send(self, case, real: bool) -> None:
        """One generated request; with `real`, one that reaches a real session or creates one."""
        path = case.operation.path
        if real and "sid" in (case.path_parameters or {}):
            case.path_parameters = {**case.path_parameters, "sid": self.real_session()}
        if real and path == "/api/sessions" and isinstance(case.body, dict):
            case.body = {**case.body, "character": f"unseen-{self.sent % 8}"}
        if real and path == "/api/sessions/upload" and isinstance(case.body, dict):
            case.body = {**case.body, "image": self.png, "voice": self.wav}
        self.sent += 1
        try:
            response = case.call(base_url=self.base, session=self.http, timeout=60)
        except requests.RequestException as e:
            self.statuses["no answer"] += 1
            self.problems.append(f"no answer: {case.operation.label}: {e!r}: {case.as_curl_command()[:300]}")
            return
        status = response.status_code
        self.statuses[status] += 1
        self.by_operation[f"{case.operation.label} {status}"] += 1
        where = f"{case.operation.label} -> {status}: {case.as_curl_command()[:300]}"
        content_type = (response.headers.get("content-type") or [""])[0]
        try:  # the answer is one the schema documents, its body as the schema says (an error's: {"error": "..."})
            case.validate_response(response, checks=self.conformance)
        except (AssertionError, self.failures) as e:  # schemathesis's failures, listed at the end
            self.problems.append(f"not as documented: {where}: {' '.join(str(e).split())[:400]}")
        if status >= 500 and not (status == 503 and path in CREATES):
            self.problems.append(f"server error: {where}: {response.content[:300]!r}")
        elif status >= 400 and (wrong := _one_shape(status, content_type, response.content)):
            self.problems.append(f"another shape: {where}: {wrong}")
        if status == 503 and path in CREATES:  # the session limit: it says when to come back, and the fuzzer makes room
            if not (response.headers.get("retry-after") or [""])[0].isdigit():
                self.problems.append(f"a refusal without Retry-After: {where}")
            self.free()
        if status == 201 and path in CREATES:
            self.created.append(response.json()["id"])

    def by_hand_request(self, method: str, path: str, body: str | None) -> None:
        where = f"by hand: {method} {path} {(body or '')[:40]}..."
        try:
            r = self.http.request(method, f"{self.base}{path}", data=body, headers={"content-type": "application/json"}, timeout=30)
        except requests.RequestException as e:
            self.problems.append(f"{where}: no answer: {e!r}")
            return
        self.by_hand[r.status_code] += 1
        if r.status_code == 201:
            self.created.append(r.json()["id"])
        elif r.status_code < 400 or r.status_code >= 500:
            self.problems.append(f"{where}: {r.status_code} {r.content[:200]!r}")
        elif wrong := _one_shape(r.status_code, r.headers.get("content-type", ""), r.content):
            self.problems.append(f"{where}: {wrong}")

    def fuzz(self, operation, mode) -> None:
        from hypothesis import HealthCheck, Phase, Verbosity, given, settings
        from hypothesis import strategies as st
        from hypothesis.errors import Unsatisfiable

        @given(case=operation.as_strategy(generation_mode=mode), real=st.booleans())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet)  # fmt: skip
        def one(case, real):
            self.send(case, real)

        with contextlib.suppress(Unsatisfiable):  # an operation that takes no input has no invalid request
            one()


def test_generated_requests_get_no_server_error_and_one_error_shape(live_server):
    """At least 500 requests from the OpenAPI schema, valid and invalid, on every operation (the
    multipart upload too), some with a real session's id or a real image and voice: no 5xx
    (but the session limit's 503, with Retry-After), every 4xx `{"error": "..."}`."""
    import schemathesis  # here, not at collection: it takes a second to import
    from schemathesis import GenerationMode

    host, state = live_server(max_sessions=4)
    base = f"http://{host}"
    t0 = time.monotonic()
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /api/sessions/upload", "POST /api/sessions/{sid}/append", "DELETE /api/sessions/{sid}"}
    fuzzer = Fuzzer(base)
    with ServerLog() as server_log:
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzzer.fuzz(operation, mode)
        for method, path, body in BY_HAND:  # beside the schema: no such route or method, inputs too rare to be generated
            fuzzer.by_hand_request(method, path.format(sid=fuzzer.real_session()), body)
        fuzzer.free()
        if fuzzer.keeper:
            fuzzer.http.delete(f"{base}/api/sessions/{fuzzer.keeper}", timeout=30)
        health = fuzzer.http.get(f"{base}/api/health", timeout=30)
    elapsed = time.monotonic() - t0
    print(f"\n{fuzzer.sent} generated requests in {elapsed:.0f} s, by status: {dict(sorted(fuzzer.statuses.items(), key=str))}; "
          f"{sum(fuzzer.by_hand.values())} by hand: {dict(sorted(fuzzer.by_hand.items()))}")
    print("\n".join(f"  {k}: {n}" for k, n in sorted(fuzzer.by_operation.items())))
    assert not fuzzer.problems, f"{len(fuzzer.problems)} bad answers:\n" + "\n".join(fuzzer.problems[:20])
    assert not server_log.failures(), "\n".join(server_log.failures()[:10])
    assert fuzzer.sent >= 500 and len(fuzzer.statuses) >= 5
    assert fuzzer.statuses[201] > 0 and fuzzer.statuses[200] > 0, "real sessions were made and reached"
    assert health.status_code == 200 and health.json()["sessions"] == 0 and not state.sessions


# the WebSocket fuzzer ---------------------------------------------------------------------------
class Watched(threading.Thread):
    """A good viewer of a session, reading its stream on its own thread while the fuzzer works."""

    def __init__(self, host: str, session: dict):
        super().__init__(daemon=True)
        self.viewer, self.stop = Viewer(host, session), threading.Event()
        self.arrivals: list[float] = []
        self.failure: BaseException | None = None

    def run(self) -> None:
        def seen(m: dict) -> bool:
            if m["type"] == "chunk":
                self.arrivals.append(time.monotonic())
            return m["type"] in ("chunk", "closing")

        try:
            while not self.stop.is_set():
                self.viewer.until(seen, timeout=30)
        except BaseException as e:  # noqa: BLE001 - shown by the test
            self.failure = e

    def chunks_since(self, t: float) -> int:
        return sum(a >= t for a in self.arrivals)


def _random_text(rng: random.Random, n: int) -> str:
    alphabet = [chr(rng.randrange(0x20, 0x7F)) for _ in range(20)] + ["\u2603", "\u00e9", "\U0001f600", "\u202e", "\x00", "\n", '"', "{", "}"]
    return "".join(rng.choice(alphabet) for _ in range(n))


def _commands(rng: random.Random, limit: int) -> list:
    """JSON texts and raw frames a viewer could send: wrong, unknown, out of order, at the edge."""
    deep = "[" * 6000 + "]" * 6000  # nested deeper than Python's JSON reader recurses, within the size limit
    texts = ["", "null", "[]", "1", '"append"', "{", "{oops", "\ufeff{}", deep, '{"type": ' + deep + "}",
             '{"type": "position", "t": ' + "9" * 5000 + "}",  # an integer with more digits than Python reads
             '{"type": "position", "t": 1' + "0" * 400 + "}", '{"type": "position", "t": 1e400}',
             '{"type": "position", "t": NaN}', '{"type": "position", "t": -Infinity}', '{"type": "append", "text": "a", "text": 5}']  # fmt: skip
    objects = [{"type": t} for t in ("dance", "APPEND", "append ", None, 7, [1], {"type": "append"}, "close", "session", "chunk")]
    objects += [{"type": "interrupt"}, {"type": "interrupt"}, {"type": "status"}, {"type": "position"}, {"type": "position", "t": "soon"},
                {"type": "position", "t": True}, {"type": "position", "t": -5, "stalls": -1}, {"type": "position", "t": 1e9, "stalls": 10**40},
                {"type": "append"}, {"type": "append", "text": None}, {"type": "append", "text": ["hi"]}, {"type": "append", "text": ""},
                {"type": "append", "text": "   "}, {"type": "append", "text": "\u2603 \u2603"}, {"type": "append", "text": "x" * 3000},
                {"type": "append", "text": "9" * 400}, {"type": "append", "text": LONG_NUMBERS},
                {"type": "append", "text": "word " * 700}, {"type": "append", "text": TEXT},
                {"type": "append", "text": TEXT, "extra": {}}]  # fmt: skip
    frames = texts + [json.dumps(o) for o in objects]
    frames += [_random_text(rng, rng.randrange(1, 300)) for _ in range(40)]
    frames += [rng.randbytes(rng.randrange(0, 2000)) for _ in range(20)] + [b"", b"{}", json.dumps({"type": "status"}).encode()]
    frames += [json.dumps({"type": rng.choice(["append", "interrupt", "status", "position"]), "text": _random_text(rng, 40),
                           "t": rng.uniform(-10, 10)}) for _ in range(40)]  # fmt: skip
    rng.shuffle(frames)
    assert all(len(f.encode() if isinstance(f, str) else f) <= limit for f in frames)
    return frames


def _raw_handshake(host: str, path: str) -> socket.socket:
    """A WebSocket opened by hand, for frames no client library would send."""
    h, p = host.split(":")
    s = socket.create_connection((h, int(p)), timeout=10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())  # fmt: skip
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head[:200]
    return s


def _frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = True, rsv: int = 0, length: int | None = None) -> bytes:
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    head = bytes([first]) + (bytes([(0x80 if masked else 0) | n]) if n < 126 else bytes([(0x80 if masked else 0) | 127]) + struct.pack(">Q", n))
    if not masked:
        return head + payload
    key = b"\x37\xfa\x21\x3d"  # any key: clients choose one per frame
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


BROKEN = [  # frames against the protocol: each should get the connection closed, and nothing else
    _frame(0x1, b"\xff\xfe not utf-8"),  # a text frame that is not UTF-8
    _frame(0x3, b"reserved opcode"), _frame(0xB, b"reserved control opcode"),
    _frame(0x1, b'{"type": "status"}', masked=False),  # a client's frame must be masked
    _frame(0x1, b'{"type": "status"}', rsv=0b111),  # reserved bits, no extension negotiated
    _frame(0x9, b"p" * 200),  # a ping over the 125 bytes a control frame may hold
    _frame(0x0, b"a continuation with nothing to continue"),
    _frame(0x1, b'{"type": ', fin=False) + _frame(0x2, b"binary in the middle of a text message"),
    _frame(0x2, b"", length=2**62),  # says 4 EiB follow
    _frame(0x8, b"\x03\xe8" + b"bye") + _frame(0x1, b'{"type": "status"}'),  # a frame after the close frame
    random.Random(7).randbytes(64),  # no frame at all
]  # fmt: skip


def _session(c: httpx.Client, **body) -> dict:
    r = c.post("/api/sessions", json={"character": "unseen-2", **body})
    assert r.status_code == 201, r.text
    return r.json()


def _until_gone(c: httpx.Client, sid: str) -> None:
    wait_until(lambda: c.get(f"/api/sessions/{sid}").status_code == 404, "the session ended with its viewer's socket", 10, every=0.05)


def _fuzz_one_socket(host: str, c: httpx.Client, frames: list, tally: Counter) -> None:
    """Every frame on one fuzzer's socket of its own session: each is answered (an error, a
    status) or taken silently, and the socket and session stay open throughout."""
    s = _session(c)
    ws = connect(f"ws://{host}{s['media']}", open_timeout=10, max_size=None)
    for frame in frames:
        ws.send(frame)
        tally["frames"] += 1
    status = json.dumps({"type": "status"})
    ws.send(status)
    deadline, statuses = time.monotonic() + 60, frames.count(status) + 1
    while statuses:  # until the answer to the last frame
        m = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(m, str):
            kind = json.loads(m)["type"]
            tally[kind] += 1
            statuses -= kind == "status"
    assert c.get(f"/api/sessions/{s['id']}").status_code == 200, "the fuzzer's own session is still there"
    ws.close()
    _until_gone(c, s["id"])


def test_websocket_fuzz_hurts_no_one_else(live_server):
    """Random and hostile frames on other sessions' sockets, and on the watched session's own,
    while a good viewer watches: it keeps getting its stream, and the server keeps serving."""
    host, state = live_server(max_sessions=4)
    limit = state.settings.max_message_bytes
    rng = random.Random(42)
    tally = Counter()
    with httpx.Client(base_url=f"http://{host}", timeout=60) as c, ServerLog() as server_log:
        good = _session(c, text=TEXT)
        watched = Watched(host, good)
        watched.start()
        deadline = time.monotonic() + 60
        while not watched.arrivals:
            assert time.monotonic() < deadline and watched.failure is None, watched.failure
            time.sleep(0.05)
        t_fuzz = time.monotonic()

        frames = _commands(rng, limit)
        _fuzz_one_socket(host, c, frames, tally)
        # frames over the limit, text and binary: the socket is closed (1009, too big) and its session ends
        for big in ("x" * (limit + 1), rng.randbytes(4 * limit), json.dumps({"type": "append", "text": "word " * limit})):
            s = _session(c)
            ws = connect(f"ws://{host}{s['media']}", open_timeout=10)
            ws.send(big)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
            tally["over the limit"] += 1
            _until_gone(c, s["id"])
        # frames against the protocol itself, each on a socket opened by hand
        for broken in BROKEN:
            s = _session(c)
            raw = _raw_handshake(host, s["media"])
            raw.sendall(broken)
            raw.settimeout(10)
            try:
                while raw.recv(65536):  # until the server closes it (a socket the server kept open times out here)
                    pass
            except ConnectionResetError:
                pass
            raw.close()
            tally["broken"] += 1
            _until_gone(c, s["id"])
        # the watched session's own id: a second viewer is refused; its own socket's bad frames are answered, its stream goes on
        for _ in range(5):
            with pytest.raises(InvalidStatus) as denied:
                connect(f"ws://{host}{good['media']}?token={rng.randbytes(8).hex()}", open_timeout=10)
            assert denied.value.response.status_code == 409
        for frame in rng.sample(frames, 30):
            watched.viewer.send(frame)
        # rapid connect and disconnect: sessions ended by their viewer at once, and addresses with no session
        for k in range(20):
            if k % 2:
                with pytest.raises(InvalidStatus) as denied:
                    connect(f"ws://{host}/api/sessions/{rng.randbytes(12).hex()}/media", open_timeout=10)
                assert denied.value.response.status_code == 404
            else:
                s = _session(c)
                connect(f"ws://{host}{s['media']}", open_timeout=10).close()
                _until_gone(c, s["id"])
            tally["rapid"] += 1
        # and once more, a fuzzer's socket: the server's state after all that still takes a session
        _fuzz_one_socket(host, c, rng.sample(frames, 40), tally)

        t_end = time.monotonic()
        time.sleep(2.0)
        watched.stop.set()
        watched.join(timeout=40)
        assert watched.failure is None, f"the good viewer's stream broke: {watched.failure!r}"
        assert c.get("/api/health").status_code == 200 and c.get(f"/api/sessions/{good['id']}").status_code == 200
        after = _session(c, text=TEXT)
        v = Viewer(host, after)
        assert v.chunks(2), "a new session streams"
        v.close()
        watched.viewer.close()
        _until_gone(c, good["id"])
        _until_gone(c, after["id"])
    messages = watched.viewer.messages
    indices = [m["index"] for m in messages if m["type"] == "chunk"]
    gaps = np.diff([t_fuzz] + [a for a in watched.arrivals if a >= t_fuzz])
    replies = sum(m["type"] == "error" for m in messages)
    print(f"\nWebSocket fuzz: {dict(tally)}; the watched viewer got {len(indices)} chunks, {watched.chunks_since(t_fuzz)} during "
          f"{t_end - t_fuzz:.0f} s of fuzzing (longest gap {gaps.max():.2f} s), {replies} error replies")  # fmt: skip
    assert not server_log.failures(), "\n".join(server_log.failures()[:10])
    assert indices == list(range(len(indices))), "one unbroken stream"
    assert watched.chunks_since(t_fuzz) >= 10 and gaps.max() < 5.0, "the watched stream went on while the fuzzer worked"
    assert not any(m["type"] == "closing" or (m["type"] == "error" and "failed" in m["error"]) for m in messages)
    assert replies >= 5, "the watched viewer's own bad frames were answered"
    assert not state.sessions
