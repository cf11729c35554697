"""A test viewer of a live session's media WebSocket (the API tests and the cluster test), and
the polling those tests wait on."""

import json
import time

from websockets.sync.client import connect


def wait_until(check, what: str, seconds: float, every: float = 0.005):
    """`check()`'s first answer that is neither None nor False, polled every `every` seconds; a
    test failure naming `what` if none comes within `seconds`."""
    deadline = time.monotonic() + seconds
    while (answer := check()) is None or answer is False:
        assert time.monotonic() < deadline, f"not seen in {seconds:g} s: {what}"
        time.sleep(every)
    return answer


class Viewer:
    """A WebSocket viewer that claims to have played all it has (it reports its position at the
    end of what it received), collecting messages and media bytes."""

    def __init__(self, host: str, session: dict, token: str | None = None):
        q = f"?token={token}" if token else ""
        self.ws = connect(f"ws://{host}{session['media']}{q}", open_timeout=10)
        self.messages, self.media, self.end = [], b"", 0.0

    def until(self, check, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            if isinstance(m, bytes):
                self.media += m
                self.ws.send(json.dumps({"type": "position", "t": self.end}))
                continue
            msg = json.loads(m)
            self.messages.append(msg)
            if msg["type"] == "chunk":
                self.end = msg["media_start"] + msg["seconds"]
            if check(msg):
                return msg
        raise AssertionError(f"no such message within {timeout} s; got {[m['type'] for m in self.messages[-5:]]}")

    def chunks(self, n: int) -> list[dict]:
        got = []
        self.until(lambda m: m["type"] == "chunk" and got.append(m) is None and len(got) >= n)
        return got

    def send(self, message) -> None:
        self.ws.send(message if isinstance(message, (str, bytes)) else json.dumps(message))

    def close(self) -> None:
        self.ws.close()
