"""`streamchar serve`'s API against a real uvicorn on a loopback port: a session's life (create,
media, append, interrupt, status, close), the limits, the token, isolation and bad input.

The test viewer claims to have played all it has received; the server holds every viewer to
real time since its first chunk, so the streams here run at playback speed."""

import gc
import io
import json
import random
import threading
import time

import httpx
import pytest
from serve_viewer import Viewer, wait_until
from upload_samples import png_header, sample_png, sample_wav, silent_wav
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

def test_uploaded_character_and_its_limits(live_server):
    host, _ = live_server(max_upload_bytes=256 * 1024)
    with httpx.Client(base_url=f"http://{host}", timeout=30) as c:
        png, wav = sample_png(), sample_wav(2.0)

        def upload(image=png, voice=wav, **form):
            return c.post("/api/sessions/upload", files={"image": ("a.png", image), "voice": ("v.wav", voice)}, data=form)

        r = upload(text=TEXT, prompt="a person talks")
        assert r.status_code == 201 and r.json()["words_total"] == 8
        c.delete(f"/api/sessions/{r.json()['id']}")
        cases = [(upload(image=b"GIF89a" + b"\0" * 100), 415, "PNG or JPEG"), (upload(voice=b"ID3" + b"\0" * 100), 415, "WAV"),
                 (upload(voice=sample_wav(0.5)), 422, "1-10 s"), (upload(voice=sample_wav(12.0, 8000)), 422, "1-10 s"),
                 (upload(image=b"\x89PNG\r\n\x1a\n" + b"\0" * 270_000), 413, "limit of 262144 bytes"),
                 (upload(image=b"\x89PNG\r\n\x1a\n" + b"\0" * 50), 400, "cannot read the reference image"),
                 # a small file that says it is huge is refused by its header, before a pixel is decoded
                 (upload(image=png_header(13_000, 13_000)), 413, "13000x13000 pixels"),
                 (upload(image=png[: len(png) // 2]), 400, "cannot read the reference image"),  # cut short
                 (upload(image=b"\xff\xd8\xff" + b"\x17" * 200), 400, "cannot read the reference image"),  # a JPEG in name only
                 (upload(image=b""), 422, "empty"), (upload(voice=b""), 422, "empty"),
                 (upload(voice=silent_wav(2.0, rate=1)), 422, "sample rate is 1 Hz"),
                 (upload(voice=silent_wav(0.1, rate=400_000)), 422, "sample rate is 400000 Hz"),
                 (upload(image=png_header(20_000, 20_000)), 413, "too large to open"),  # over PIL's own bomb limit
                 (upload(voice=silent_wav(2.0, width=1)), 400, "16-bit"),
                 (upload(voice=wav[:-3]), 201, ""),  # its header promises 3 bytes more than it holds: the whole frames are read
                 (upload(voice=silent_wav(2.0, rate=8000, channels=6)), 201, "")]  # fmt: skip
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
        wait_until(lambda: c.get(f"/api/sessions/{a['id']}").status_code == 404, "session a ended with its viewer's socket", 10, every=0.1)
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


def test_the_playback_clock_takes_only_positions_a_player_could_be_at():
    """A viewer's reports move its clock forward within what it was handed: a late, false or
    backward one changes nothing (the fuzzer's stray position once held a stream back 15 s)."""
    from streamchar.serving.sessions import PlaybackClock

    clock = PlaybackClock()
    clock.deliver(100.0, 2.0)
    clock.deliver(101.0, 4.0)
    clock.report(102.0, 1.5)
    assert clock.position(102.0) == pytest.approx(1.5)
    for false in (1.0, -5.0, 4.5):  # back, before the start, past the media
        clock.report(102.5, false)
    assert clock.position(102.5) == pytest.approx(2.0)
    clock.report(103.0, 1.5)  # the same place again: a paused player
    assert clock.position(103.0) == pytest.approx(1.5)


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
        assert c.get("/metrics").status_code == 401 and c.get("/api/ready").status_code == 401, "the operations' routes take the token too"
        assert c.get("/metrics", headers=auth).status_code == 200 and c.get("/api/ready", headers=auth).status_code == 200
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
        # (asking for the session's status would keep it alive)
        wait_until(lambda: c.get("/api/health").json()["sessions"] == 0, "an unwatched session closed at its timeout", 10, every=0.3)
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
        wait_until(lambda: not state.sessions and c.get("/api/health").json()["sessions"] == 0, "no session left behind", 15, every=0.1)
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


# operations: metrics, readiness, logs, shutdown -------------------------------------------------
def _metrics(c: httpx.Client) -> dict[tuple[str, tuple], float]:
    """/metrics as {(sample name, labels): value}, parsed as Prometheus parses it."""
    from prometheus_client.parser import text_string_to_metric_families

    r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(r.text) for s in f.samples}


def test_metrics_count_chunks_refusals_and_readiness(live_server):
    host, state = live_server(max_sessions=1)
    with httpx.Client(base_url=f"http://{host}", timeout=30) as c:
        ready = c.get("/api/ready")
        assert ready.status_code == 200 and ready.json()["ready"] and ready.json()["max_sessions"] == 1
        before = _metrics(c)
        assert before[("streamchar_chunks_total", ())] == 0 and before[("streamchar_admitting", ())] == 1
        s = _create(c, text=TEXT)
        v = Viewer(host, s)
        v.chunks(2)
        first = _metrics(c)
        v.chunks(2)
        second = _metrics(c)
        assert 2 <= first[("streamchar_chunks_total", ())] < second[("streamchar_chunks_total", ())], "the chunk counter grows as the session streams"
        assert second[("streamchar_chunk_compute_seconds_count", ())] == second[("streamchar_chunks_total", ())]
        assert second[("streamchar_chunk_real_time_factor_count", ())] == second[("streamchar_chunks_total", ())]
        assert second[("streamchar_queue_wait_seconds_count", ())] >= 4 and second[("streamchar_buffer_at_delivery_seconds_count", ())] >= 3
        assert second[("streamchar_sessions", ())] == 1 and second[("streamchar_sessions_admitted_total", ())] == 1
        assert ("streamchar_buffered_seconds_min", ()) in second and ("streamchar_stalls_total", ()) in second
        # one more than --max-sessions is refused, and counted by its reason
        r = c.post("/api/sessions", json={"character": "unseen-1"})
        assert r.status_code == 503 and "limit of 1 sessions" in r.json()["error"]
        after = _metrics(c)
        assert after[("streamchar_sessions_refused_total", (("reason", "limit"),))] == 1
        assert after[("streamchar_sessions_refused_total", (("reason", "full"),))] == 0 and after[("streamchar_admitting", ())] == 0
        v.close()


def test_sessions_decoded_in_their_batch_stream_as_before(live_server):
    """`decode_batched` (a GPU's way, forced here on the CPU): the worker that made a batch's
    chunks decodes them together; each viewer still gets its chunks in order, playable."""
    host, state = live_server(max_sessions=2, max_batch=2, decode_batched="on")
    assert state.scheduler.decode_batched
    with httpx.Client(base_url=f"http://{host}", timeout=30) as c:
        viewers = [Viewer(host, _create(c, text=TEXT, seed=k)) for k in range(2)]
        for v in viewers:
            assert [ch["index"] for ch in v.chunks(3)] == [0, 1, 2] and v.media[4:8] == b"ftyp"
        assert _metrics(c)[("streamchar_chunks_total", ())] >= 6
        for v in viewers:
            v.close()


def _chunks_while_one_is_made(scheduler, session):
    """The session's delivered chunks, read while a worker is making its next one (so that one
    is not among them); None while none is being made. Read under the scheduler's lock, which a
    worker holds to mark a chunk begun or made."""
    with scheduler._work:
        return session.chunks if session.id in scheduler._generating else None


def test_a_server_behind_admits_no_one_and_says_so(live_server):
    """Chunks held back until a viewer's media runs out (as when the cores are short): the server
    counts itself behind, refuses newcomers with that reason and shows it, though it has room."""
    host, state = live_server(max_sessions=2, behind_hold_seconds=20)
    with httpx.Client(base_url=f"http://{host}", timeout=30) as c:
        s = _create(c, text=TEXT)
        v = Viewer(host, s)
        v.chunks(2)
        assert _metrics(c)[("streamchar_behind", ())] == 0
        session = state.sessions[s["id"]]
        state.scheduler.hold()
        wait_until(lambda: not state.scheduler.busy(), "the chunks begun before the hold were delivered", 20)
        time.sleep(session.clock.delivered - session.clock.position(time.monotonic()) + 0.3)  # the viewer's media runs out
        delivered = session.chunks
        state.scheduler.holding = False  # the cores are back
        state.scheduler.wake()
        wait_until(lambda: session.chunks > delivered, "a chunk came after the hold", 20)
        r = c.post("/api/sessions", json={"character": "unseen-1"})
        assert r.status_code == 503 and r.json()["error"].startswith("the server is behind") and r.headers["Retry-After"] == "30"
        m = _metrics(c)
        assert m[("streamchar_behind", ())] == 1 and m[("streamchar_admitting", ())] == 0 and m[("streamchar_stalls_total", ())] >= 1
        assert m[("streamchar_sessions_refused_total", (("reason", "behind"),))] == 1
        v.close()


def test_a_drain_delivers_the_chunk_in_hand_then_says_goodbye(live_server):
    """What SIGTERM starts (`ServerState.drain`): no new session, the chunk being made reaches
    its viewer whole, then the closing message, and the session ends."""
    import asyncio

    host, state = live_server()
    with httpx.Client(base_url=f"http://{host}", timeout=30) as c:
        s = _create(c, text=TEXT)
        v = Viewer(host, s)
        v.chunks(1)
        session = state.sessions[s["id"]]
        in_hand = wait_until(lambda: _chunks_while_one_is_made(state.scheduler, session), "a chunk was being made", 20)
        drained = asyncio.run_coroutine_threadsafe(state.drain(), state.loop)
        assert v.until(lambda m: m["type"] == "closing")["reason"] == "the server is shutting down"
        drained.result(timeout=10)
        assert session.chunks > in_hand, "the chunk in hand was finished and delivered"
        assert sum(m["bytes"] for m in v.messages if m["type"] == "chunk") == len(v.media)
        assert not state.sessions and session.closed
        r = c.post("/api/sessions", json={"character": "unseen-0"})
        assert r.status_code == 503 and "shutting down" in r.json()["error"] and c.get("/api/ready").status_code == 503
        assert _metrics(c)[("streamchar_sessions_refused_total", (("reason", "shutting_down"),))] == 1


def test_a_server_not_yet_warm_is_alive_but_not_ready(shipped_pipeline):
    """Before its warm-up (and capacity measurement) a server refuses sessions, saying why."""
    import asyncio

    from streamchar.serving.guard import ApiError
    from streamchar.serving.settings import ServerSettings
    from streamchar.serving.state import ServerState

    state = ServerState(shipped_pipeline, ServerSettings(max_sessions=2))
    answer = asyncio.run(state.readiness())
    assert not answer["ready"] and "warm-up" in answer["waiting_for"] and "warm-up" in answer["error"]
    assert asyncio.run(state.health())["sessions"] == 0
    with pytest.raises(ApiError) as refused:
        asyncio.run(state.create_character("unseen-0", TEXT, 0))
    assert refused.value.status == 503 and "not ready" in str(refused.value) and refused.value.headers["Retry-After"].isdigit()
    counted = state.metrics.registry.get_sample_value
    assert counted("streamchar_sessions_refused_total", {"reason": "warming"}) == 1 and counted("streamchar_sessions_admitted_total") == 0
    state.draining = True
    assert asyncio.run(state.readiness())["error"] == "the server is shutting down" and state.refusal()[0] == "shutting_down"


def test_json_log_lines_carry_time_level_event_and_session():
    import logging

    from streamchar.serving.logs import JsonFormatter, MaskSecrets, event, log

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(MaskSecrets())
    access = logging.getLogger("uvicorn.access")
    saved = [(logger, logger.level, logger.propagate) for logger in (log, access)]
    for logger in (log, access):
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        event("session_created", "session %s created (%s)", "AbCdEfGh", "unseen-0", session="AbCdEfGh", character="unseen-0", setup_s=0.5)
        event("stall", "session %s stalled", "AbCdEfGh", level=logging.WARNING, session="AbCdEfGh", stall_s=0.2)
        event("shutting_down", "shutting down", sessions=3)
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/api/sessions/AbCdEfGhIjKlMnOp/media?token=s3cret-token-xyz", "1.1", 200)
    finally:
        for logger, level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["event"] for r in lines] == ["session_created", "stall", "shutting_down", "http_request"]
    for r in lines:
        assert {"time", "level", "event", "message"} <= r.keys() and r["time"].endswith("Z")
    assert lines[0]["session"] == "AbCdEfGh" and lines[0]["character"] == "unseen-0" and lines[0]["level"] == "info"
    assert lines[1]["level"] == "warning" and lines[1]["stall_s"] == 0.2 and "session" not in lines[2] and lines[2]["sessions"] == 3
    assert lines[3]["status"] == 200 and lines[3]["path"] == "/api/sessions/AbCdEfGh.../media?token=***"
    assert "s3cret" not in out.getvalue() and "IjKlMnOp" not in out.getvalue(), "tokens and whole session ids stay out of the log"


@pytest.mark.slow
def test_sigterm_tells_each_viewer_and_exits_within_10_s(tmp_path):
    """`streamchar serve` as a service manager stops it: the viewer gets its whole chunks, then
    the closing message, and the process is gone within 10 s."""
    import signal

    from streamchar.serving.bench import ServerProcess

    server = ServerProcess(2, tmp_path / "serve.log", extra=("--log-format", "json"))
    try:
        with httpx.Client(base_url=f"http://{server.host}", timeout=30) as c:
            v = Viewer(server.host, _create(c, text=TEXT))
            v.chunks(2)
            t0 = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            closing = v.until(lambda m: m["type"] == "closing", timeout=10)
            assert closing["reason"] == "the server is shutting down"
            chunks = [m for m in v.messages if m["type"] == "chunk"]
            assert sum(m["bytes"] for m in chunks) == len(v.media), "every chunk begun reaches the viewer whole"
            rc = server.proc.wait(timeout=max(0.1, 10 - (time.monotonic() - t0)))
            assert rc in (0, -signal.SIGTERM) and time.monotonic() - t0 < 10
    finally:
        server.stop()
    events = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert "server_ready" in names and "session_created" in names and "shutting_down" in names
    closed = [e for e in events if e["event"] == "session_closed"]
    assert len(closed) == 1 and closed[0]["reason"] == "shutdown" and closed[0]["session"]
