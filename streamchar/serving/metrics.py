"""What an operator reads off a running server at `/metrics`, in Prometheus' text format. Each
server has its own registry (several apps may live in one process, as in the tests). The numbers
are counted where the serving layer already accounts for them: a chunk's compute, the viewer's
buffer and stalls where a session takes its chunk (`LiveSession.deliver`), queue wait where a
worker takes the sessions that need a chunk (`Scheduler._take`), admissions and refusals where a
session is admitted (`ServerState.create`); sessions, capacity, whether the server admits and the
buffers ahead of the viewers are read off the server when scraped."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

NAMESPACE = "streamchar"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# why a new session is refused: the model still warming up (or its capacity being measured), a
# session's chunk lately near late (the server is behind), the measured capacity reached, the
# operator's --max-sessions reached, the server shutting down
REFUSAL_REASONS = ("warming", "behind", "full", "limit", "shutting_down")
SECONDS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
FACTORS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0)
WAITS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)


class Observed(Protocol):
    """What the scrape reads off the server."""

    def sessions_held(self) -> int: ...
    def capacity_now(self) -> int | None: ...
    def admitting(self) -> bool: ...
    def behind(self) -> bool: ...
    def buffers(self) -> list[float]: ...


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.observed: Observed | None = None
        own = {"namespace": NAMESPACE, "registry": self.registry}
        self.chunks = Counter("chunks", "Chunks made, rendered and handed to viewers", **own)
        self.compute = Histogram("chunk_compute_seconds", "A chunk's compute: through the model (a batch's time counted whole for each "
                                 "of its sessions), decoding and muxing", buckets=SECONDS, **own)  # fmt: skip
        self.real_time_factor = Histogram("chunk_real_time_factor", "A chunk's compute over the media it holds (over 1: slower than "
                                          "real time)", buckets=FACTORS, **own)  # fmt: skip
        self.buffer_at_delivery = Histogram("buffer_at_delivery_seconds", "Media the viewer had left to play when its next chunk "
                                            "arrived (0: it waited, a stall)", buckets=SECONDS, **own)  # fmt: skip
        self.stalls = Counter("stalls", "Times a viewer's playback ran out of media before its next chunk", **own)
        self.stall_seconds = Counter("stall_seconds", "Seconds viewers' playback waited for media, in all", **own)
        self.queue_wait = Histogram("queue_wait_seconds", "How long a session that needed its next chunk waited for a worker to begin it",
                                    buckets=WAITS, **own)  # fmt: skip
        self.admitted = Counter("sessions_admitted", "New sessions admitted", **own)
        self.refused = Counter("sessions_refused", "New sessions refused (503), by reason", ["reason"], **own)
        for reason in REFUSAL_REASONS:
            self.refused.labels(reason)  # every reason exported from 0, so that a rate over it is defined
        self.registry.register(_ScrapeTime(self))

    def observe(self, observed: Observed) -> None:
        self.observed = observed

    def chunk(self, compute_s: float, period_s: float, buffer_s: float | None, stalled_s: float | None) -> None:
        """One chunk handed to its viewer: its compute, the media its viewer had left (None for a
        session's first chunk) and, where playback waited for it, how long."""
        self.chunks.inc()
        self.compute.observe(compute_s)
        self.real_time_factor.observe(compute_s / period_s)
        if buffer_s is not None:
            self.buffer_at_delivery.observe(max(0.0, buffer_s))
        if stalled_s is not None:
            self.stalls.inc()
            self.stall_seconds.inc(stalled_s)

    def text(self) -> bytes:
        return generate_latest(self.registry)


class _ScrapeTime:
    """The gauges read off the server when scraped."""

    def __init__(self, metrics: ServerMetrics):
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        seen = self.metrics.observed
        if seen is None:
            return
        yield _gauge("sessions", "Sessions held (watched or not)", seen.sessions_held())
        capacity = seen.capacity_now()
        if capacity is not None:
            yield _gauge("capacity_sessions", "Sessions admitted at once: measured at start-up, or --max-sessions", capacity)
        yield _gauge("admitting", "1 while a new session would be admitted, else 0 (warming up, behind, full or shutting down)",
                     int(seen.admitting()))  # fmt: skip
        yield _gauge("behind", "1 while a session's chunk lately came near late (the server admits no one meanwhile), else 0",
                     int(seen.behind()))  # fmt: skip
        buffers = seen.buffers()
        if buffers:
            yield _gauge("buffered_seconds_min", "The least media any watched session holds ahead of its viewer's playback", min(buffers))
            yield _gauge("buffered_seconds_mean", "The mean media the watched sessions hold ahead of their viewers' playback",
                         sum(buffers) / len(buffers))


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{NAMESPACE}_{name}", documentation, value=value)


def merge_labelled(texts: Iterable[tuple[str, str]], label: str) -> bytes:
    """Several servers' metrics (`(value, text)` pairs) as one exposition, each sample labelled
    `label=value`: a cluster gateway's view of its replicas."""
    families: dict[str, Metric] = {}
    for value, text in texts:
        for family in text_string_to_metric_families(text):
            merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type, family.unit))
            for s in family.samples:
                merged.samples.append(s._replace(labels={label: value, **s.labels}))
    registry = CollectorRegistry()
    registry.register(_Fixed(list(families.values())))
    return generate_latest(registry)


class _Fixed:
    def __init__(self, families: list[Metric]):
        self.families = families

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        return self.families

