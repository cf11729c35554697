"""`streamchar serve`'s API against a real uvicorn on a loopback port: a session's life (create,
media, append, interrupt, status, close), the limits, the token, isolation and bad input.

The test viewer claims to have played all it has received; the server holds every viewer to
real time since its first chunk, so the streams here run at playback speed."""

import gc
import io
import json
import random
import struct
import threading
import time
import wave
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image
from serve_viewer import Viewer
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from streamchar.cli.serve_cmd import read_token
from streamchar.errors import StreamcharError
from streamchar.serving.sessions import LiveSession
from streamchar.utils.text import word_matches

TEXT = "The birch canoe slid on the smooth planks."
pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager")


def _create(client: httpx.Client, **body) -> dict:
    r = client.post("/api/sessions", json={"character": "unseen-0", **body})
    assert r.status_code == 201, r.text
    return r.json()


@pytest.mark.slow
def test_a_session_lives_speaks_is_interrupted_and_closes(live_server):
    host, state = live_server(measure_mouth=True)
    with httpx.Client(base_url=f"http://{host}", timeout=30) as c:
        s = _create(c, text=TEXT)
        assert s["words_total"] == 8 and s["words"][:2] == ["The", "birch"] and len(s["id"]) >= 24
        v = Viewer(host, s)
        hello = v.until(lambda m: m["type"] == "session")
        assert hello["words_total"] == 8
        first = v.until(lambda m: m["type"] == "chunk")
        assert first["index"] == 0 and first["mime"].startswith('video/mp4; codecs="avc1.') and first["bytes"] > 0
        v.chunks(6)  # the sentence, then silence
        spoken = [m for m in v.messages if m["type"] == "chunk"]
        heard = sorted({w[0] for m in spoken for w in m["words"]})
        assert heard == list(range(8)), "every word is placed in the chunk that speaks it"
        assert spoken[-1]["words_spoken"] == 8 and not spoken[-1]["speaking"], "with nothing pending the stream goes on in silence"

        r = c.post(f"/api/sessions/{s['id']}/append", json={"text": "Glue the sheet to the dark blue background. " * 3})
        assert r.status_code == 200 and r.json()["first_word"] == 8 and r.json()["words_total"] == 32
        v.until(lambda m: m["type"] == "text" and m["words_total"] == 32)
        v.until(lambda m: m["type"] == "chunk" and any(w[0] >= 8 for w in m["words"]))  # the new words are spoken
        r = c.post(f"/api/sessions/{s['id']}/interrupt")
        kept = r.json()["words_total"]
        assert r.status_code == 200 and 8 < kept < 32, "the words not begun are dropped"
        v.until(lambda m: m["type"] == "interrupted" and m["words_total"] == kept)
        after = v.chunks(4)
        assert all(w[0] < kept for m in after for w in m["words"]) and not after[-1]["speaking"]

        status = c.get(f"/api/sessions/{s['id']}").json()
        for key in ("words_heard", "words_pending", "real_time_factor", "buffered_s", "stalls", "first_chunk_s"):
            assert key in status
        assert status["words_total"] == kept and status["words_pending"] == 0 and status["chunks"] >= 10
        assert status["mouth_silent"] < 0.25 * status["mouth_speaking"], "the mouth rests while nothing is said"

        assert c.delete(f"/api/sessions/{s['id']}").status_code == 204
        assert c.get(f"/api/sessions/{s['id']}").status_code == 404
        v.close()
    assert not state.sessions
    # the media is one playable fragmented MP4: header once, then fragments
    assert v.media[4:8] == b"ftyp" and v.media.count(b"moov") == 1 and v.media.count(b"moof") > 100


@pytest.mark.slow
def test_a_session_may_start_listening_and_continue_the_same_stream(live_server):
    host, _ = live_server()
    with httpx.Client(base_url=f"http://{host}", timeout=30) as c:
        s = _create(c)
        assert s["words_total"] == 0
        v = Viewer(host, s)
        idle = v.chunks(3)
        assert all(not m["speaking"] for m in idle)
        c.post(f"/api/sessions/{s['id']}/append", json={"text": TEXT})
        speaking = v.until(lambda m: m["type"] == "chunk" and m["speaking"])
        assert speaking["index"] >= 3 and speaking["words"][0][1] >= speaking["media_start"], "new words start in a chunk not yet made"
        indices = [m["index"] for m in v.messages if m["type"] == "chunk"]
        assert indices == list(range(len(indices))), "one unbroken stream"
        v.close()


def _wav(seconds: float, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        t = np.arange(int(seconds * rate)) / rate
        w.writeframes((3000 * np.sin(2 * np.pi * 180 * t)).astype("<i2").tobytes())
    return buf.getvalue()


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 80), (180, 150, 120)).save(buf, "PNG")
    return buf.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header says width x height, with no pixels after it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def _wav_with(seconds: float, rate: int = 16000, channels: int = 1, width: int = 2) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels), w.setsampwidth(width), w.setframerate(rate)
        w.writeframes(bytes(int(seconds * rate) * channels * width))
    return buf.getvalue()


def test_uploaded_character_and_its_limits(live_server):
    host, _ = live_server(max_upload_bytes=256 * 1024)
    with httpx.Client(base_url=f"http://{host}", timeout=30) as c:
        png, wav = _png(), _wav(2.0)

        def upload(image=png, voice=wav, **form):
            return c.post("/api/sessions/upload", files={"image": ("a.png", image), "voice": ("v.wav", voice)}, data=form)

        r = upload(text=TEXT, prompt="a person talks")
        assert r.status_code == 201 and r.json()["words_total"] == 8
        c.delete(f"/api/sessions/{r.json()['id']}")
        cases = [(upload(image=b"GIF89a" + b"\0" * 100), 415, "PNG or JPEG"), (upload(voice=b"ID3" + b"\0" * 100), 415, "WAV"),
                 (upload(voice=_wav(0.5)), 422, "1-10 s"), (upload(voice=_wav(12.0, 8000)), 422, "1-10 s"),
                 (upload(image=b"\x89PNG\r\n\x1a\n" + b"\0" * 270_000), 413, "limit of 262144 bytes"),
                 (upload(image=b"\x89PNG\r\n\x1a\n" + b"\0" * 50), 400, "cannot read the reference image"),
                 # a small file that says it is huge is refused by its header, before a pixel is decoded
                 (upload(image=_png_header(13_000, 13_000)), 413, "13000x13000 pixels"),
                 (upload(image=png[: len(png) // 2]), 400, "cannot read the reference image"),  # cut short
                 (upload(image=b"\xff\xd8\xff" + b"\x17" * 200), 400, "cannot read the reference image"),  # a JPEG in name only
                 (upload(image=b""), 422, "empty"), (upload(voice=b""), 422, "empty"),
                 (upload(voice=_wav_with(2.0, rate=1)), 422, "sample rate is 1 Hz"),
                 (upload(voice=_wav_with(0.1, rate=400_000)), 422, "sample rate is 400000 Hz"),
                 (upload(image=_png_header(20_000, 20_000)), 413, "too large to open"),  # over PIL's own bomb limit
                 (upload(voice=_wav_with(2.0, width=1)), 400, "16-bit"),
                 (upload(voice=wav[:-3]), 201, ""),  # its header promises 3 bytes more than it holds: the whole frames are read
                 (upload(voice=_wav_with(2.0, rate=8000, channels=6)), 201, "")]  # fmt: skip
        for response, status, words in cases:
            assert response.status_code == status and words in response.json().get("error", ""), response.text
            if status == 201:
                c.delete(f"/api/sessions/{response.json()['id']}")


def test_limits_are_named_and_the_server_keeps_serving(live_server):
    host, state = live_server(max_sessions=2, max_text_chars=300, max_pending_words=40)
    with httpx.Client(base_url=f"http://{host}", timeout=30) as c:
        a, b = _create(c, text=TEXT), _create(c)
        r = c.post("/api/sessions", json={"character": "unseen-1"})
        assert r.status_code == 503 and "limit of 2 sessions" in r.json()["error"] and r.headers["retry-after"].isdigit()
        r = c.post(f"/api/sessions/{a['id']}/append", json={"text": "word " * 100})
        assert r.status_code == 413 and "at most 300" in r.json()["error"]
        r = c.post(f"/api/sessions/{a['id']}/append", json={"text": "one two three four five six seven eight nine ten. " * 4})
        assert r.status_code == 429 and "at most 40" in r.json()["error"]
        bad = [c.post("/api/sessions", content=b"{not json", headers={"content-type": "application/json"}),
               c.post("/api/sessions", json={"character": "unseen-0", "voice": "loud"}),
               c.post(f"/api/sessions/{a['id']}/append", json={"text": "   "}),
               c.post(f"/api/sessions/{a['id']}/append", json={"text": "☃ ☃"}),
               c.post("/api/sessions/nope/append", json={"text": "hi"})]  # fmt: skip
        assert [r.status_code for r in bad] == [422, 422, 400, 400, 404]
        assert "JSON" in bad[0].json()["error"] and "voice" in bad[1].json()["error"] and "empty" in bad[2].json()["error"]
        r = c.post("/api/sessions", content=b"x" * (2 * state.settings.max_upload_bytes + 70_000), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert c.get(f"/api/sessions/{a['id']}").status_code == 200 and c.get("/api/health").json()["sessions"] == 2
        c.delete(f"/api/sessions/{b['id']}")
        r = c.post("/api/sessions", json={"character": "unseen-99"})
        assert r.status_code == 400 and "unseen-0..unseen-7" in r.json()["error"]
        c.delete(f"/api/sessions/{a['id']}")


@pytest.mark.slow
def test_bad_messages_on_the_websocket_hurt_no_one(live_server):
    host, _ = live_server()
    with httpx.Client(base_url=f"http://{host}", timeout=30) as c:
        a, b = _create(c, text=TEXT), _create(c, text=TEXT)
        va, vb = Viewer(host, a), Viewer(host, b)
        va.chunks(1)
        errors = []
        for garbage in (b"\x00\xff" * 50, "{oops", json.dumps({"type": "dance"}), json.dumps([1, 2]), json.dumps({"type": "append", "text": ""})):
            va.send(garbage)
            errors.append(va.until(lambda m: m["type"] == "error")["error"])
        assert "binary" in errors[0] and "JSON" in errors[1] and "unknown message" in errors[2] and "empty" in errors[4]
        va.send({"type": "append", "text": "It is easy to tell the depth of a well."})
        va.until(lambda m: m["type"] == "text" and m["words_total"] == 18)
        assert va.chunks(2) and vb.chunks(4), "both sessions keep streaming"
        with pytest.raises(InvalidStatus) as denied:
            connect(f"ws://{host}{a['media']}", open_timeout=10)
        assert denied.value.response.status_code == 409, "a session has one viewer; another cannot watch it"
        # closing a's WebSocket ends a, and only a
        va.close()
        deadline = time.monotonic() + 10
        while c.get(f"/api/sessions/{a['id']}").status_code != 404:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert vb.chunks(2) and c.get(f"/api/sessions/{b['id']}").status_code == 200
        vb.close()


@pytest.mark.slow
def test_a_viewer_cannot_hurry_its_stream(live_server):
    """Claims of a position ahead of real time since the first chunk do not buy chunks faster
    than playback (the model is shared)."""
    host, state = live_server()
    period = state.pipe.cfg.stream.chunk_seconds
    with httpx.Client(base_url=f"http://{host}", timeout=30) as c:
        v = Viewer(host, _create(c, text=TEXT))
        v.chunks(1)
        t0 = time.monotonic()
        for t in (1e6, -5, "soon"):
            v.send({"type": "position", "t": t})
        got = []
        with pytest.raises((AssertionError, TimeoutError)):  # no message ends the wait: it runs out
            v.until(lambda m: m["type"] == "chunk" and got.append(m) is None and False, timeout=4 * period)
        elapsed = time.monotonic() - t0
        assert len(got) >= 2, "the stream goes on at playback speed"
        assert len(got) <= (elapsed + state.settings.buffer_seconds) / period + 1
        v.close()


def test_a_token_guards_every_request(live_server, tmp_path):
    token = "s3cret-token-for-tests"
    host, _ = live_server(token=token)
    with httpx.Client(base_url=f"http://{host}", timeout=30) as c:
        assert c.get("/api/health").status_code == 401 and "--token-file" in c.get("/api/health").json()["error"]
        assert c.get("/").status_code == 401 and c.get("/docs").status_code == 401
        assert c.get("/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
        page = c.get(f"/?token={token}")
        assert page.status_code == 200 and "streamchar" in page.text
        assert c.get("/static/app.js").status_code == 200, "the page's cookie lets its own scripts load"
        c.cookies.clear()
        auth = {"Authorization": f"Bearer {token}"}
        s = c.post("/api/sessions", json={"character": "unseen-0", "text": TEXT}, headers=auth).json()
    with pytest.raises(InvalidStatus) as denied:
        connect(f"ws://{host}{s['media']}", open_timeout=10)
    assert denied.value.response.status_code == 401
    v = Viewer(host, s, token=token)
    assert v.chunks(1)
    v.close()
    # no token: loopback only
    with pytest.raises(StreamcharError, match="--token-file"):
        read_token(None, "0.0.0.0")
    assert read_token(None, "127.0.0.1") is None and read_token(None, "::1") is None
    (tmp_path / "t").write_text("short\n")
    with pytest.raises(StreamcharError, match="at least 16"):
        read_token(tmp_path / "t", "0.0.0.0")
    (tmp_path / "t").write_text(token + "\n")
    assert read_token(tmp_path / "t", "0.0.0.0") == token


@pytest.mark.slow
def test_idle_sessions_are_closed(live_server):
    host, state = live_server(idle_timeout_seconds=0.5)
    with httpx.Client(base_url=f"http://{host}", timeout=30) as c:
        s = _create(c)
        deadline = time.monotonic() + 10
        while c.get("/api/health").json()["sessions"]:  # (asking for the session's status would keep it alive)
            assert time.monotonic() < deadline, "an unwatched session outlives its timeout"
            time.sleep(0.3)
        assert c.get(f"/api/sessions/{s['id']}").status_code == 404


@pytest.mark.slow
def test_random_churn_leaves_nothing_behind(live_server):
    """Sessions appended to, interrupted and dropped at random moments: afterwards no session,
    no thread and no session object is left."""
    host, state = live_server(max_sessions=3)
    threads_before = threading.active_count()
    rng = random.Random(5)
    with httpx.Client(base_url=f"http://{host}", timeout=30) as c:
        for _ in range(4):
            viewers = [(Viewer(host, s), s) for s in (_create(c, text=TEXT) for _ in range(rng.randint(1, 3)))]
            for _ in range(rng.randint(2, 4)):
                v, s = rng.choice(viewers)
                action = rng.choice(["append", "interrupt", "chunks", "ws-append", "ws-interrupt"])
                if action == "append":
                    c.post(f"/api/sessions/{s['id']}/append", json={"text": "A pot of tea helps to pass the evening."})
                elif action == "interrupt":
                    c.post(f"/api/sessions/{s['id']}/interrupt")
                elif action == "ws-append":
                    v.send({"type": "append", "text": "Rice is often served in round bowls."})
                elif action == "ws-interrupt":
                    v.send({"type": "interrupt"})
                v.chunks(rng.randint(1, 2))
            for v, s in viewers:  # some leave by closing the socket, some by DELETE
                if rng.random() < 0.5:
                    v.close()
                else:
                    c.delete(f"/api/sessions/{s['id']}")
                    v.close()
        deadline = time.monotonic() + 15
        while state.sessions or c.get("/api/health").json()["sessions"]:
            assert time.monotonic() < deadline, "sessions left behind"
            time.sleep(0.1)
    time.sleep(0.5)
    gc.collect()
    assert threading.active_count() <= threads_before + 1  # the thread pool may keep one worker
    held = [o for o in gc.get_objects() if type(o) is LiveSession]
    assert not held, "a closed session is still held"
    assert len(word_matches(TEXT)) == 8


def test_an_api_error_crosses_processes_whole():
    """A cluster replica's refusal reaches its gateway with its status and headers."""
    import pickle

    from streamchar.serving.guard import ApiError

    e = pickle.loads(pickle.dumps(ApiError(503, "full", {"Retry-After": "30"})))
    assert (e.status, str(e), e.headers) == (503, "full", {"Retry-After": "30"})
