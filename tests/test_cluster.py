"""`streamchar serve --ray`: Ray Serve on this machine with two CPU replicas behind the gateway,
on a loopback port. New sessions go to the replica with most room; every call about a session
reaches the replica that holds it; bad input gets the same answers as from one server; the
metrics are every replica's, and SIGTERM tells the viewers, as one server does."""

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from serve_viewer import Viewer
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

# ray is looked for, not imported: importing ray.serve takes a second of every collection, the fast tier's too
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager"),
              pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the cluster extra (ray[serve])")]
TEXT = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from streamchar.errors import StreamcharError
    from streamchar.serving.bench import ServerProcess

    log = tmp_path_factory.mktemp("cluster") / "serve.log"
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        server = ServerProcess(2, log, extra=("--ray", "--replicas", "2", "--replica-cpus", "1", "--behind-hold", "0"), timeout=300, env=env)
    except StreamcharError:
        pytest.fail(f"the Ray server did not start:\n{log.read_text()[-4000:]}")
    try:
        deadline = time.monotonic() + 300
        while "serving on Ray Serve" not in log.read_text():  # printed once every replica runs; the gateway answers before
            if time.monotonic() > deadline:
                pytest.fail(f"the Ray replicas did not all start:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield server
    finally:
        server.stop()  # SIGTERM: the server shuts Ray Serve and Ray down
        ray = shutil.which("ray", path=os.path.dirname(sys.executable))
        left = _ray_processes()
        if ray:  # nothing of the cluster may outlive the test
            subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=60)
        assert not left, "Ray processes outlived the server"


def test_sessions_spread_over_replicas_and_each_is_served_by_its_own(cluster):
    host = cluster.host
    with httpx.Client(base_url=f"http://{host}", timeout=60) as c:
        a = c.post("/api/sessions", json={"character": "unseen-0", "text": TEXT}).json()
        b = c.post("/api/sessions", json={"character": "unseen-3", "text": TEXT, "seed": 1}).json()
        assert a["id"].split(".")[0] != b["id"].split(".")[0], "the second session goes to the replica with room"
        va, vb = Viewer(host, a), Viewer(host, b)
        try:
            assert all(ch["bytes"] > 0 for ch in va.chunks(2) + vb.chunks(2))
            assert va.media[4:8] == b"ftyp" and vb.media[4:8] == b"ftyp"
            added = c.post(f"/api/sessions/{b['id']}/append", json={"text": "Add the sum to the product of these three."})
            assert added.status_code == 200 and added.json()["words_total"] == len(b["words"]) + 9
            assert vb.until(lambda m: m["type"] == "text")["first_word"] == len(b["words"])
            for s in (a, b):
                status = c.get(f"/api/sessions/{s['id']}").json()
                assert status["id"] == s["id"] and status["chunks"] >= 2 and status["viewers"] == 1
            with pytest.raises(InvalidStatus) as denied:
                connect(f"ws://{host}{a['media']}", open_timeout=30)
            assert denied.value.response.status_code == 409, "one viewer per session, across the cluster too"
            va.send(b"\x00")
            assert va.until(lambda m: m["type"] == "error")["error"].startswith("binary messages are not accepted")
            va.send({"type": "status"})
            assert va.until(lambda m: m["type"] == "status")["id"] == a["id"]
        finally:
            va.close()
            vb.close()
        # a session ends with its viewer, on its replica
        deadline = time.monotonic() + 30
        while c.get(f"/api/sessions/{a['id']}").status_code != 404:
            assert time.monotonic() < deadline, "the session outlived its viewer"
            time.sleep(0.5)


def test_bad_input_is_answered_as_by_one_server(cluster):
    with httpx.Client(base_url=f"http://{cluster.host}", timeout=60) as c:
        assert c.get("/api/sessions/nosuchreplica.abc").status_code == 404
        assert c.get("/api/sessions/no-separator").status_code == 404
        assert c.post("/api/sessions", json={"text": "x" * 5000}).status_code == 413
        assert c.post("/api/sessions", json={"text": TEXT, "extra": 1}).status_code == 422
        s = c.post("/api/sessions", json={"text": TEXT}).json()
        r = c.post(f"/api/sessions/{s['id']}/append", json={"text": "   "})
        assert r.status_code == 400 and "empty" in r.json()["error"], "the replica's own error, with its status"
        assert c.delete(f"/api/sessions/{s['id']}").status_code == 204
        assert c.get(f"/api/sessions/{s['id']}").status_code == 404
        health = c.get("/api/health").json()
        assert health["max_sessions"] == 2  # each replica's limit


def test_each_replica_in_the_metrics(cluster):
    from prometheus_client.parser import text_string_to_metric_families

    with httpx.Client(base_url=f"http://{cluster.host}", timeout=60) as c:
        ready = c.get("/api/ready")
        assert ready.status_code == 200 and ready.json()["ready"]
        families = {f.name: f for f in text_string_to_metric_families(c.get("/metrics").text)}
        chunks = [s for s in families["streamchar_chunks"].samples if s.name == "streamchar_chunks_total"]
        assert len({s.labels["replica"] for s in chunks}) == 2, "each replica's metrics, labelled with it"


def test_a_closing_message_on_sigterm(cluster):
    """Last in the module: it stops the server."""
    import signal

    with httpx.Client(base_url=f"http://{cluster.host}", timeout=60) as c:
        v = Viewer(cluster.host, c.post("/api/sessions", json={"character": "unseen-0", "text": TEXT}).json())
        v.chunks(1)
        t0 = time.monotonic()
        cluster.proc.send_signal(signal.SIGTERM)
        try:
            assert v.until(lambda m: m["type"] == "closing", timeout=15)["reason"] == "the server is shutting down"
            assert time.monotonic() - t0 < 10
        finally:
            cluster.proc.wait(timeout=120)


def _ray_processes() -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        if "raylet" in text or "gcs_server" in text:
            found.append(text[:120])
    return found
