"""`streamchar serve`: the live server (the page at /, the API under /api, OpenAPI at /docs)."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Optional

import typer

from streamchar.cli.common import AudioCodecOpt, CheckpointConfigOpt, CheckpointOpt, DeviceOpt, DtypeOpt, MemoryModeOpt, VideoCodecOpt, console
from streamchar.errors import StreamcharError

MIN_TOKEN_CHARS = 16
LOG_FORMATS = ("text", "json")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path: Path | None, host: str) -> str | None:
    """The token from `path`; refused when missing for an address other than loopback."""
    if path is None:
        if not _is_loopback(host):
            raise StreamcharError(f"serving on {host} (not loopback) needs a token: pass --token-file FILE (a file holding a secret "
                                  f"of at least {MIN_TOKEN_CHARS} characters)")  # fmt: skip
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise StreamcharError(f"cannot read --token-file {path}: {e}") from None
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise StreamcharError(f"the token in {path} must be at least {MIN_TOKEN_CHARS} characters with no spaces")
    return token


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (anything but loopback needs --token-file)"),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    checkpoint: Optional[str] = CheckpointOpt,
    config: Optional[Path] = CheckpointConfigOpt,
    max_sessions: Optional[int] = typer.Option(None, "--max-sessions", help="sessions at once; one more is answered 503 with a retry "
                                               "hint (default: as many as stay real time, measured at start-up)"),
    max_batch: int = typer.Option(4, "--max-batch", help="sessions whose chunks go through the model together (1: one at a time)"),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="a file holding the token every request must carry"),
    buffer: float = typer.Option(1.2, "--buffer", help="seconds of media generated ahead of each viewer, at most"),
    idle_timeout: float = typer.Option(120.0, "--idle-timeout", help="close a session nobody watches or touches for this long (s)"),
    behind_hold: float = typer.Option(20.0, "--behind-hold", help="after a chunk reaches its viewer late or nearly, refuse new sessions "
                                      "this long (s; 0: never)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="worker threads that make and render chunks, one torch thread "
                                          "each (default: one per core)"),
    decode_precision: str = typer.Option("auto", "--decode-precision", help="the video decoder's precision: auto (bf16 where the "
                                         "machine has bfloat16 instructions), bf16 or fp32"),
    decode_batched: str = typer.Option("auto", "--decode-batched", help="decode a model batch's chunks together: auto (on a GPU), "
                                       "on or off"),
    video_codec: Optional[Path] = VideoCodecOpt,
    audio_codec: Optional[Path] = AudioCodecOpt,
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
    memory_mode: str = MemoryModeOpt,
    measure_mouth: bool = typer.Option(False, "--measure-mouth", help="measure each chunk's mouth opening for the sessions' status "
                                       "(a benchmark's check: `bench serve` asks for it)"),  # fmt: skip
    log_format: str = typer.Option("text", "--log-format", help="the log on stderr: text, or json (one object a line: time, level, "
                                   "event, session, ...)"),
    ray: bool = typer.Option(False, "--ray", help="serve on Ray Serve: a gateway and --replicas replicas, each session on one replica "
                             "(needs streamchar[cluster])"),
    replicas: int = typer.Option(2, "--replicas", min=1, help="with --ray: replicas holding sessions, one per GPU or group of cores"),
    replica_cpus: float = typer.Option(1.0, "--replica-cpus", min=0.0, help="with --ray: cores per replica (its worker threads)"),
    replica_gpus: float = typer.Option(0.0, "--replica-gpus", min=0.0, help="with --ray: GPUs per replica"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="with --ray: a running Ray cluster to join ('auto' finds "
                                              "one; default: start one on this machine)"),
) -> None:
    """Serve the character live: open the printed address in a browser, type, and watch it speak."""
    if log_format not in LOG_FORMATS:
        raise StreamcharError(f"--log-format: {log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    token = read_token(token_file, host)
    settings = _settings(max_sessions=max_sessions, max_batch=max_batch, buffer_seconds=buffer, idle_timeout_seconds=idle_timeout,
                         behind_hold_seconds=behind_hold, decode_precision=decode_precision, decode_batched=decode_batched,
                         measure_mouth=measure_mouth,
                         **({"threads": threads} if threads is not None else {}))  # fmt: skip
    load = {"checkpoint": checkpoint, "video_codec": video_codec, "audio_codec": audio_codec, "config": config, "device": device,
            "dtype": dtype, "memory_mode": memory_mode}  # fmt: skip
    if not ray:  # (a Ray replica checks its own: its GPUs are the ones Ray gives it)
        from streamchar.streaming.placement import Placement

        Placement.parse(device, dtype, memory_mode)
    _log_to(log_format)
    if ray:
        _serve_ray(host, port, token, settings, load, (replicas, replica_cpus, replica_gpus), ray_address, log_format)
    else:
        _serve_local(host, port, token, settings, load)


def _log_to(log_format: str) -> None:
    import logging.config

    from streamchar.serving.logs import log_config

    logging.config.dictConfig(log_config(log_format))


def _settings(**fields: object):  # noqa: ANN202 - ServerSettings, imported with the serve extra
    from pydantic import ValidationError

    from streamchar.serving.settings import ServerSettings

    try:
        return ServerSettings(**fields)
    except ValidationError as e:
        err = e.errors()[0]
        raise StreamcharError(f"--{str(err['loc'][0]).replace('_seconds', '').replace('_', '-')}: {err['msg']}") from None


def _address(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    hint = " - open it with ?token=TOKEN" if token else ""
    return f"http://{shown}:{port}/ (API docs at /docs){hint}"


def _serve_local(host: str, port: int, token: str | None, settings, load: dict) -> None:  # noqa: ANN001
    """The server answers at once (/api/health) and is ready (/api/ready) once warm: the warm-up,
    or the measurement of how many sessions it keeps, runs beside it. Stopped, it ends its
    sessions well (`GracefulServer`)."""
    import threading

    import uvicorn

    from streamchar.serving.app import GracefulServer, create_app
    from streamchar.serving.logs import event
    from streamchar.serving.state import DRAIN_SECONDS, ServerState
    from streamchar.streaming.placement import load_placed

    pipe = load_placed(**load)
    state = ServerState(pipe, settings, token)
    config = uvicorn.Config(create_app(state), host=host, port=port, ws_max_size=settings.max_message_bytes, log_level="info",
                            ws="websockets-sansio", log_config=None, timeout_graceful_shutdown=1)  # fmt: skip
    server = GracefulServer(config, state, DRAIN_SECONDS)
    threading.Thread(target=_warm_up, args=(state, server), name="streamchar-warm-up", daemon=True).start()
    event("serving", "streamchar serving %s on %s; ready for sessions once warm (/api/ready)", pipe.meta.get("name"),
          _address(host, port, token), model=pipe.meta.get("name"), address=_address(host, port, None))  # fmt: skip
    server.run()


def _warm_up(state, server) -> None:  # noqa: ANN001 - ServerState, GracefulServer
    try:
        state.warm_up()
    except Exception:  # noqa: BLE001 - a server that cannot warm up stops, saying why
        logging.getLogger("streamchar.serve").exception("the warm-up failed; the server stops")
        server.should_exit = True


def _serve_ray(host: str, port: int, token: str | None, settings, load: dict, shape: tuple[int, float, float],  # noqa: ANN001
               address: str | None, log_format: str) -> None:
    """`shape`: the replicas, and the cores and GPUs of each."""
    import signal
    import time

    import ray
    from ray import serve

    from streamchar.serving.cluster import cluster_app
    from streamchar.serving.state import DRAIN_SECONDS

    replicas, cpus, gpus = shape
    ray.init(address=address, include_dashboard=False, configure_logging=False)
    serve.start(http_options={"host": host, "port": port})
    with console.status(f"starting {replicas} replicas on Ray Serve"):
        serve.run(cluster_app(settings, token, load, replicas, cpus, gpus, log_format), logging_config={"encoding": log_format.upper()})
    console.print(f"streamchar serving on Ray Serve ({replicas} replicas) on {_address(host, port, token)}")
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop shuts Serve and Ray down as Ctrl-C does
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        try:  # the sessions end well first: each viewer is told, as by one server
            serve.get_deployment_handle("Gateway", app_name="default").drain.remote(DRAIN_SECONDS).result(timeout_s=DRAIN_SECONDS + 2)
        except Exception as e:  # noqa: BLE001 - Serve and Ray are shut down all the same
            logging.getLogger("streamchar.serve").warning("the sessions could not all be ended well: %r", e)
        serve.shutdown()
        ray.shutdown()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
