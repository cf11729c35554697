"""How many sessions this machine keeps real time, measured before the first viewer: a server
admits no more, so that it degrades by refusing newcomers, never by stalling everyone."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from streamchar.streaming.live import LiveStream, generate_together

# Share of each chunk's period the workers may fill with the work as measured alone. Served, the
# same work runs slower (two workers share the cores' caches and the interpreter) and serving
# itself (muxing, sockets, the viewers' reports) takes its part; on 2 cores 0.65 admits the most
# sessions that ran without a stall, batched and one at a time (docs/serving.md).
BUDGET = 0.65
TRIED = (1, 2, 4, 8, 12, 16)  # batch sizes timed; others are interpolated
RENDER_SAMPLE = 4  # chunks whose rendering is timed


@dataclass
class Capacity:
    sessions: int  # the most sessions whose chunks are made and rendered within BUDGET of a period
    generate_s: dict[int, float]  # one batch of n sessions' chunks through the model
    render_s: float  # decoding and muxing one session's chunk
    period_s: float
    workers: int = 1  # worker threads sharing the work, one torch thread each

    def round_seconds(self, n: int, max_batch: int) -> float:
        """A period's work for n sessions, spread over the workers: their chunks in batches of at
        most `max_batch`, each rendered."""
        batches, last = divmod(n, max_batch)
        work = batches * self._generate(max_batch) + (self._generate(last) if last else 0.0) + n * self.render_s
        return work / self.workers

    def _generate(self, n: int) -> float:
        sizes = sorted(self.generate_s)
        if n in self.generate_s:
            return self.generate_s[n]
        below = max([s for s in sizes if s < n], default=sizes[0])
        above = min([s for s in sizes if s > n], default=sizes[-1])
        if above == below:
            return self.generate_s[below] * n / below
        w = (n - below) / (above - below)
        return (1 - w) * self.generate_s[below] + w * self.generate_s[above]


def measure_capacity(open_stream: Callable[[int], LiveStream], period: float, max_batch: int, workers: int, most: int = TRIED[-1]) -> Capacity:
    """Time one batch through the model for each size in TRIED (up to `max_batch`) and the
    rendering of one chunk, on one torch thread as a worker runs them, on as few streams as that
    needs; the capacity is then the most sessions, up to `most`, whose round of work fits a period."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cap = _measure(open_stream, period, max_batch, workers, most)
    finally:
        torch.set_num_threads(threads)
    cap.sessions = max([n for n in range(1, most + 1) if cap.round_seconds(n, max_batch) <= BUDGET * period], default=1)
    return cap


def _measure(open_stream: Callable[[int], LiveStream], period: float, max_batch: int, workers: int, most: int) -> Capacity:
    sizes = [n for n in TRIED if n <= min(most, max_batch)]
    streams = [open_stream(k) for k in range(max(sizes[-1], RENDER_SAMPLE))]
    try:
        for k in range(0, len(streams), max_batch):  # first chunks (no sink yet) and every layer's first pass
            _render(streams[k : k + max_batch], _generate(streams[k : k + max_batch]))
        generate_s = {}
        for n in sizes:
            t0 = time.perf_counter()
            results = _generate(streams[:n])
            generate_s[n] = time.perf_counter() - t0
            _render(streams[:n], results)
        sample = streams[:RENDER_SAMPLE]
        results = _generate(sample)
        t0 = time.perf_counter()
        _render(sample, results)
        render_s = (time.perf_counter() - t0) / len(sample)
    finally:
        for stream in streams:
            stream.close()
    return Capacity(0, generate_s, render_s, period, workers)


def _generate(streams: list[LiveStream]) -> list:
    results = generate_together(streams)
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


def _render(streams: list[LiveStream], results: list) -> None:
    for stream, result in zip(streams, results):
        stream.render(*result)
