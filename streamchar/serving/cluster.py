"""Past one process: Ray Serve runs the same app on a gateway deployment (the FastAPI ingress) and
the sessions on `Character` replicas, one per GPU or per group of CPU cores, each holding a
pipeline, a scheduler and its sessions (a whole `ServerState`). A session's id begins with its
replica's id; `SessionRouter`, Ray Serve's request-router extension, sends every call about a
session to that replica and a new session to the least loaded one, by the sessions and capacity
each replica reports; a call naming a `replica_index` goes to that replica of the ones running (by
id), which is how the gateway reads every replica's metrics and ends every replica's sessions
when the server stops. Needs `pip install 'streamchar[cluster]'`."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ray import serve
from ray.exceptions import RayTaskError
from ray.serve import context as serve_context
from ray.serve.config import RequestRouterConfig
from ray.serve.request_router import PendingRequest, ReplicaID, RequestRouter, RunningReplica

from streamchar.serving.metrics import merge_labelled
from streamchar.serving.sessions import Message
from streamchar.serving.settings import ServerSettings

ID_SEPARATOR = "."  # between the replica's id and the session's own (token_urlsafe never has one)
STATS_PERIOD_SECONDS = 1.0  # how often each replica reports its sessions and capacity to the routers
PLACED_MEMORY_SECONDS = 3.0  # a placement the router made counts against its replica until the replica's report shows it
READY_WAIT_SECONDS = 5.0  # /api/ready waits this long for a replica's answer before saying it waits for one


def session_replica(sid: str) -> str | None:
    head, sep, _ = sid.partition(ID_SEPARATOR)
    return head if sep else None


def own_request(send: Callable[[], Any]) -> Any:
    """`send()` (a handle's `.remote(...)`) as a request of its own. Ray Serve gives every call
    made while serving one request that request's internal id, and its router keeps one pending
    call per id: two calls from one request in flight at once (the gateway asking every replica,
    a viewer's command beside its stream) leave the second unrouted for ever. A blank id makes
    Ray draw a new one; the rest of the request's context (its route, its client) stays."""

    def fresh() -> Any:
        current = serve_context._get_serve_request_context()
        serve_context._serve_request_context.set(dataclasses.replace(current, _internal_request_id=""))
        return send()

    return contextvars.copy_context().run(fresh)


class SessionRouter(RequestRouter):
    """Calls naming a session go to the replica holding it; others (a new session, health) go to
    the replica with the most room: the fewest sessions for its capacity, counting the sessions it
    was just given and has not reported yet."""

    def initialize_state(self, **kwargs: Any) -> None:
        self._placed: dict[ReplicaID, list[float]] = {}

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:  # fmt: skip
        kwargs = pending_request.kwargs if pending_request is not None else {}
        if pending_request is not None:  # a replica that cannot take it now: Ray waits before asking again (else it spins)
            pending_request.routing_context.should_backoff = True
        if kwargs.get("replica_index") is not None:  # one replica in turn: the gateway asks each
            ordered = sorted(candidate_replicas, key=lambda r: r.replica_id.unique_id)
            return [[ordered[kwargs["replica_index"] % len(ordered)]]] if ordered else [candidate_replicas]
        sid = kwargs.get("sid")
        if sid is not None:
            owner = session_replica(sid)
            held = [r for r in candidate_replicas if r.replica_id.unique_id == owner]
            return [held] if held else [candidate_replicas]  # a replica that is gone answers "no such session"
        ranked = sorted(candidate_replicas, key=self._load)
        if ranked and pending_request is not None and pending_request.metadata.call_method in ("create_character", "create_upload"):
            # counted when chosen: Ray calls the router back after sending only in some of its modes
            self._placed.setdefault(ranked[0].replica_id, []).append(time.monotonic())
        return [[r] for r in ranked]

    def _load(self, replica: RunningReplica) -> float:
        stats = replica.routing_stats or {}
        now = time.monotonic()
        recent = [t for t in self._placed.get(replica.replica_id, []) if now - t < PLACED_MEMORY_SECONDS]
        self._placed[replica.replica_id] = recent
        return (stats.get("sessions", 0) + len(recent)) / max(1, stats.get("capacity") or 1)


@serve.deployment(max_ongoing_requests=10_000,  # each watched session holds a streaming call open for its whole life
                  request_router_config=RequestRouterConfig(request_router_class=SessionRouter,
                                                            request_routing_stats_period_s=STATS_PERIOD_SECONDS))  # fmt: skip
class Character:
    """One replica: the model and the sessions it streams, as one `streamchar serve` holds them."""

    def __init__(self, settings: dict, load: dict, log_format: str = "text") -> None:
        import logging.config

        from streamchar.serving.logs import log_config
        from streamchar.serving.state import ServerState
        from streamchar.streaming.placement import load_placed

        logging.config.dictConfig(log_config(log_format))  # the replica's events, to its stderr (which Ray relays to the driver's)
        replica = serve.get_replica_context().replica_id.unique_id
        self.replica = replica
        pipe = load_placed(**load)  # on this replica's GPU where Ray gave it one (`--device auto`)
        self.state = ServerState(pipe, ServerSettings(**settings), id_prefix=replica + ID_SEPARATOR)
        self.state.warm_up()
        self._started = False

    def _ready(self) -> Any:
        if not self._started:  # the replica's event loop exists only once a call runs on it
            self.state.start(asyncio.get_running_loop())
            self._started = True
        return self.state

    def record_routing_stats(self) -> dict:
        return {"sessions": len(self.state.sessions), "capacity": self.state.capacity or 1}

    async def health(self) -> dict:
        return await self._ready().health()

    async def readiness(self) -> dict:
        return await self._ready().readiness()

    async def metrics_text(self, *, replica_index: int) -> tuple[str, bytes]:
        return self.replica, await self._ready().metrics_text()

    async def drain(self, *, replica_index: int, seconds: float) -> None:
        await self._ready().drain(seconds)

    async def character_list(self) -> dict:
        return await self._ready().character_list()

    async def create_character(self, character: str, text: str, seed: int) -> dict:
        return await self._ready().create_character(character, text, seed)

    async def create_upload(self, image: bytes, voice: bytes, prompt: str, text: str, seed: int) -> dict:
        return await self._ready().create_upload(image, voice, prompt, text, seed)

    async def append_text(self, *, sid: str, text: str) -> dict:
        return await self._ready().append_text(sid, text)

    async def interrupt_session(self, *, sid: str) -> dict:
        return await self._ready().interrupt_session(sid)

    async def session_status(self, *, sid: str) -> dict:
        return await self._ready().session_status(sid)

    async def close_session(self, *, sid: str) -> None:
        await self._ready().close_session(sid)

    async def command(self, *, sid: str, text: str | None) -> dict | None:
        return await self._ready().command(sid, text)

    async def watch(self, *, sid: str) -> AsyncIterator[Message]:
        stream = self._ready().watch(sid)
        try:
            async for m in stream:
                yield m
        finally:
            await stream.aclose()  # the viewer went: the session ends


class ClusterService:
    """The gateway's side of `SessionService`: each call forwarded to the replica that holds its
    session (or, for a new one, has most room), its error raised here as the replica raised it."""

    def __init__(self, settings: ServerSettings, token: str | None, replicas: int = 1) -> None:
        self.settings, self.token, self.replicas = settings, token, replicas
        self._handle: Any = None

    @property
    def handle(self) -> Any:
        """The Character deployment's handle, looked up in the gateway replica (where this object
        arrives as a copy, apart from the gateway's own arguments)."""
        if self._handle is None:
            app = serve.get_replica_context().app_name
            self._handle = serve.get_deployment_handle(Character.name, app_name=app)
        return self._handle

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        pass

    def stop(self) -> None:
        pass

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await own_request(lambda: getattr(self.handle, method).remote(*args, **kwargs))
        except RayTaskError as e:
            raise e.cause from None

    async def health(self) -> dict:
        return await self._call("health")

    async def readiness(self) -> dict:
        """Ready once a replica is (warm, capacity measured: it is running); each measures its own."""
        try:
            return await asyncio.wait_for(self._call("readiness"), READY_WAIT_SECONDS)
        except TimeoutError:
            return {"ready": False, "waiting_for": "a replica", "error": "not ready: waiting for a replica to start"}

    async def _each_replica(self, method: str, **kwargs: Any) -> list:
        return await asyncio.gather(*(self._call(method, replica_index=k, **kwargs) for k in range(self.replicas)))

    async def metrics_text(self) -> bytes:
        """Every replica's metrics, each sample labelled with its `replica`."""
        texts = dict(await self._each_replica("metrics_text"))  # a replica asked twice (fewer running than configured) counts once
        return merge_labelled(((replica, text.decode()) for replica, text in sorted(texts.items())), "replica")

    async def drain(self, seconds: float) -> None:
        """Have every replica end its sessions well, admitting no more: the streams relayed here
        pass each viewer its closing message, and end."""
        await asyncio.wait_for(self._each_replica("drain", seconds=seconds), seconds + 1)

    async def character_list(self) -> dict:
        return await self._call("character_list")

    async def create_character(self, character: str, text: str, seed: int) -> dict:
        return await self._call("create_character", character, text, seed)

    async def create_upload(self, image: bytes, voice: bytes, prompt: str, text: str, seed: int) -> dict:
        return await self._call("create_upload", image, voice, prompt, text, seed)

    async def append_text(self, sid: str, text: str) -> dict:
        return await self._call("append_text", sid=sid, text=text)

    async def interrupt_session(self, sid: str) -> dict:
        return await self._call("interrupt_session", sid=sid)

    async def session_status(self, sid: str) -> dict:
        return await self._call("session_status", sid=sid)

    async def close_session(self, sid: str) -> None:
        await self._call("close_session", sid=sid)

    async def command(self, sid: str, text: str | None) -> dict | None:
        return await self._call("command", sid=sid, text=text)

    async def watch(self, sid: str) -> AsyncIterator[Message]:
        response = own_request(lambda: self.handle.options(stream=True).watch.remote(sid=sid))
        try:
            async for m in response:
                yield m
        except RayTaskError as e:
            raise e.cause from None
        finally:
            response.cancel()  # the viewer went: the replica's side ends, and with it the session


def cluster_app(settings: ServerSettings, token: str | None, load: dict, replicas: int, replica_cpus: float, replica_gpus: float,
                log_format: str = "text") -> Any:  # fmt: skip
    """The Ray Serve application: a gateway serving the page and the API, over `replicas`
    Character replicas, each loading its pipeline with `Pipeline.load(**load)` and given
    `replica_cpus` cores (its worker threads) and `replica_gpus` GPUs."""
    from streamchar.serving.app import create_app

    service = ClusterService(settings, token, replicas)

    @serve.deployment(max_ongoing_requests=10_000, ray_actor_options={"num_cpus": 0})  # it only forwards: the cores are the replicas'
    @serve.ingress(create_app(service))
    class Gateway:
        def __init__(self, characters: Any) -> None:
            """`characters`: bound here so that the application holds the Character replicas;
            the app's service finds their handle by name."""

        async def drain(self, seconds: float) -> None:
            """The server is stopping (`serve --ray` on SIGTERM): every replica ends its sessions
            well. (The app holds its own copy of the service, as Serve freezes it; this one only
            reaches the replicas.)"""
            await service.drain(seconds)

    workers = {**settings.model_dump(), "threads": max(1, int(replica_cpus))}
    characters = Character.options(num_replicas=replicas, ray_actor_options={"num_cpus": replica_cpus, "num_gpus": replica_gpus})
    return Gateway.bind(characters.bind(workers, load, log_format))
