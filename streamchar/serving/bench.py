"""`streamchar bench serve`: the live server measured as its viewers meet it, on a real socket.

One `streamchar serve` process is started on a free loopback port and measured from outside:
1. the page in Chromium: request to first frame painted, an idle append to its first word
   heard, interrupt to silence, the audio-video offset at the browser (`bench_browser`);
2. concurrency: 1, 2, ... sessions at once for `seconds` each, text appended every few
   seconds, until one stalls; the most with zero stalls is reported;
3. a soak: `soak_sessions` sessions for `soak_minutes`, the server's resident memory sampled.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx
import numpy as np

from streamchar.data.harvard import split_sentences
from streamchar.errors import StreamcharError
from streamchar.serving.bench_browser import probe_page
from streamchar.serving.bench_viewers import ViewerResult, watch_many

BATCHED = 4  # the batch the batched runs allow (the server's default)
SOAK_MARKS_MINUTES = (1, 10, 30)  # resident memory is compared at these minutes (scaled to a shorter soak)


def free_port(low: int = 20000, high: int = 32000) -> int:
    """A free loopback port below Linux's ephemeral range (32768 and up): a port the OS hands out
    for port 0 could be given to another process (one of Ray's, say) before the server binds it."""
    rng = np.random.default_rng()
    for _ in range(200):
        port = int(rng.integers(low, high))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise StreamcharError(f"no free loopback port between {low} and {high}")


class ServerProcess:
    """`streamchar serve` in a child process on a free loopback port."""

    def __init__(self, max_sessions: int | None, log: Path, max_batch: int = BATCHED, extra: tuple[str, ...] = (), timeout: float = 120,
                 env: dict[str, str] | None = None):  # fmt: skip
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log = open(log, "w")  # noqa: SIM115 - closed in stop()
        limit = ["--max-sessions", str(max_sessions)] if max_sessions else []  # none: the server measures its capacity
        args = ["serve", "--port", str(self.port), *limit, "--max-batch", str(max_batch), "--idle-timeout", "60", "--measure-mouth", *extra]
        self.proc = subprocess.Popen([sys.executable, "-m", "streamchar", *args], stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while True:  # until it is ready: warm, its capacity measured
            try:
                r = httpx.get(f"http://{self.host}/api/ready", timeout=5)
                if r.status_code == 200 and "max_sessions" in r.text:  # this server's answer, not another's on the port
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise StreamcharError(f"the server did not start; its log is {log}")
            time.sleep(0.3)

    def health(self) -> dict:
        return httpx.get(f"http://{self.host}/api/health", timeout=5).json()

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise StreamcharError("cannot read the server's resident memory")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _summary(results: list[ViewerResult]) -> dict:
    first = [r.first_chunk_s for r in results if r.first_chunk_s is not None]
    silent = [r.status.get("mouth_silent") for r in results if r.status.get("mouth_silent") is not None]
    speaking = [r.status.get("mouth_speaking") for r in results if r.status.get("mouth_speaking") is not None]
    return {"sessions": len(results), "stalls": sum(r.stalls for r in results), "stall_s": sum(r.stall_s for r in results),
            "errors": [e for r in results for e in r.errors], "chunks": sum(r.chunks for r in results), "appended": sum(r.appended for r in results),
            "first_chunk_s_max": max(first) if first else None,
            "real_time_factor": [r.status.get("real_time_factor") for r in results],
            "mouth_silent": float(np.mean(silent)) if silent else None, "mouth_speaking": float(np.mean(speaking)) if speaking else None}  # fmt: skip


def concurrency(host: str, seconds: float, sizes: Iterable[int], sentences: list[str], characters: list[str],
                say: Callable[[str], None]) -> tuple[int, list[dict]]:
    """The most of `sizes` (in order) sessions that stream `seconds` with no stall or error (0:
    not even the first), stopping at the first that does not, and each size's run."""
    runs, best = [], 0
    for n in sizes:
        run = _summary(asyncio.run(watch_many(host, n, seconds, sentences, characters)))
        runs.append(run)
        say(f"{n} sessions x {seconds:g} s: {run['stalls']} stalls, {len(run['errors'])} errors, first chunk <= {run['first_chunk_s_max']}")
        if run["stalls"] or run["errors"]:
            break
        best = n
    return best, runs


async def _soak(server: ServerProcess, sessions: int, minutes: float, sentences: list[str], characters: list[str]) -> tuple[list[ViewerResult], list]:
    samples: list[tuple[float, float]] = []

    async def sample() -> None:
        t0 = time.perf_counter()
        while True:
            samples.append(((time.perf_counter() - t0) / 60, server.rss_mb()))
            await asyncio.sleep(10)

    sampler = asyncio.create_task(sample())
    try:
        results = await watch_many(server.host, sessions, minutes * 60, sentences, characters)
    finally:
        sampler.cancel()
    return results, samples


def soak(server: ServerProcess, sessions: int, minutes: float, sentences: list[str], characters: list[str]) -> dict:
    results, samples = asyncio.run(_soak(server, sessions, minutes, sentences, characters))
    marks = [m * minutes / SOAK_MARKS_MINUTES[-1] for m in SOAK_MARKS_MINUTES]
    t, rss = np.array([s[0] for s in samples]), np.array([s[1] for s in samples])
    at = [float(rss[np.argmin(np.abs(t - m))]) for m in marks]
    return {**_summary(results), "minutes": minutes, "rss_minutes": marks, "rss_mb": at,
            "rss_change": (max(at) - min(at)) / at[0], "rss_trace": samples}  # fmt: skip


def admitted_capacity() -> int:
    """The sessions a server admits when it measures its own capacity at start-up."""
    server = ServerProcess(None, Path("out") / "bench-serve-capacity.log")
    try:
        return int(server.health()["max_sessions"])
    finally:
        server.stop()


def bench_serve(seconds: float, soak_minutes: float, soak_sessions: int | None, max_try: int, trials: int, out: Path,
                say: Callable[[str], None], search: bool = True) -> dict:
    """The page in Chromium, the most sessions without a stall batched and one at a time (unless
    not `search`), the capacity a server admits by itself, and a soak of that many sessions (or
    `soak_sessions`): what the server promises is what is soaked."""
    out.parent.mkdir(parents=True, exist_ok=True)
    Path("out").mkdir(exist_ok=True)
    sentences = split_sentences("test")
    characters = [f"unseen-{k}" for k in range(8)]
    long_text = " ".join(sentences[:5])
    admitted = admitted_capacity()
    say(f"a server measuring its own capacity admits {admitted} sessions")
    unbatched, unbatched_runs = None, []  # None: not looked for
    if search:
        unbatched_server = ServerProcess(max_try + 1, Path("out") / "bench-serve-unbatched.log", max_batch=1)
        try:
            unbatched, unbatched_runs = concurrency(unbatched_server.host, seconds, range(1, max_try + 1), sentences, characters,
                                                    lambda m: say(f"unbatched: {m}"))  # fmt: skip
        finally:
            unbatched_server.stop()
    server = ServerProcess(max_try + 1, Path("out") / "bench-serve-server.log", max_batch=BATCHED)
    try:
        say(f"server on {server.host} (pid {server.proc.pid}); the page in Chromium, {trials} trials")
        page = probe_page(server.host, trials, sentences, long_text)
        say(f"page: {json.dumps(page)}")
        best, runs = concurrency(server.host, seconds, range(1, max_try + 1), sentences, characters,
                                 lambda m: say(f"batched: {m}")) if search else (None, [])  # fmt: skip
        soak_n = soak_sessions or admitted
        say(f"soak: {soak_n} sessions for {soak_minutes:g} min")
        soaked = soak(server, soak_n, soak_minutes, sentences, characters) if soak_minutes > 0 else None
    finally:
        server.stop()
    result = _result(page, best, runs, unbatched, unbatched_runs, admitted, soaked, seconds, soak_minutes, soak_n)
    out.write_text(json.dumps(result, indent=1))
    _plot(result, out.with_suffix(".png"))
    return result


def _result(page: dict, best: int | None, runs: list[dict], unbatched: int | None, unbatched_runs: list[dict], admitted: int, soaked: dict | None,
            seconds: float, soak_minutes: float, soak_n: int) -> dict:
    offsets = [lag["sound_lag_frames"] for lag in page["av_lags"]]
    at_max = runs[best - 1]["first_chunk_s_max"] if best else None
    measured = runs[0] if runs else (soaked or {})
    return {
        "first_frame_s": float(np.mean(page["first_frame_s"])), "first_frame_s_max": float(np.max(page["first_frame_s"])),
        "append_to_heard_s": float(np.mean(page["append_to_heard_s"])), "append_to_heard_s_max": float(np.max(page["append_to_heard_s"])),
        "interrupt_to_silence_s": float(np.mean(page["interrupt_to_silence_s"])),
        "interrupt_to_silence_s_max": float(np.max(page["interrupt_to_silence_s"])),
        "av_offset_frames": offsets, "av_offset_ms": [lag.get("av_offset_ms") for lag in page["av_lags"]],
        "av_offset_vs_file_ms": [lag.get("av_offset_vs_file_ms") for lag in page["av_lags"]],
        "max_sessions_no_stall": best, "unbatched_max_sessions_no_stall": unbatched,
        "first_frame_s_at_max": at_max, "admitted_sessions": admitted, "seconds_per_session": seconds,
        "soak_minutes": soak_minutes, "soak_sessions": soak_n,
        "soak_rss_mb": soaked["rss_mb"] if soaked else None, "soak_rss_change": soaked["rss_change"] if soaked else None,
        "soak_stalls": soaked["stalls"] if soaked else None, "soak_errors": len(soaked["errors"]) if soaked else None,
        "mouth_silent": measured.get("mouth_silent"), "mouth_speaking": measured.get("mouth_speaking"),
        "page": page, "concurrency": runs, "unbatched_concurrency": unbatched_runs, "soak": soaked, "cpu_count": os.cpu_count(),
    }  # fmt: skip


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    runs = result["concurrency"] or result["unbatched_concurrency"]
    a.bar([r["sessions"] for r in runs], [r["stalls"] for r in runs], color=["tab:green" if not r["stalls"] else "tab:red" for r in runs])
    a.set(xlabel="sessions at once", ylabel="stalls", title=f"{result['seconds_per_session']:g} s per session")
    if result["soak"]:
        trace = np.array(result["soak"]["rss_trace"])
        b.plot(trace[:, 0], trace[:, 1])
        b.set(xlabel="minutes", ylabel="server resident memory (MB)", title=f"soak: {result['soak_sessions']} sessions")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
