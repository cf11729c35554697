"""`streamchar serve`: the live server (the page at /, the API under /api, OpenAPI at /docs)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Optional

import typer

from streamchar.cli.common import AudioCodecOpt, CheckpointConfigOpt, CheckpointOpt, VideoCodecOpt, console
from streamchar.errors import StreamcharError

MIN_TOKEN_CHARS = 16


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
    threads: Optional[int] = typer.Option(None, "--threads", help="worker threads that make and render chunks, one torch thread "
                                          "each (default: one per core)"),
    decode_precision: str = typer.Option("auto", "--decode-precision", help="the video decoder's precision: auto (bf16 where the "
                                         "machine has bfloat16 instructions), bf16 or fp32"),
    video_codec: Optional[Path] = VideoCodecOpt,
    audio_codec: Optional[Path] = AudioCodecOpt,
    measure_mouth: bool = typer.Option(False, "--measure-mouth", help="measure each chunk's mouth opening for the sessions' status "
                                       "(a benchmark's check: `bench serve` asks for it)"),  # fmt: skip
    ray: bool = typer.Option(False, "--ray", help="serve on Ray Serve: a gateway and --replicas replicas, each session on one replica "
                             "(needs streamchar[cluster])"),
    replicas: int = typer.Option(2, "--replicas", min=1, help="with --ray: replicas holding sessions, one per GPU or group of cores"),
    replica_cpus: float = typer.Option(1.0, "--replica-cpus", min=0.0, help="with --ray: cores per replica (its worker threads)"),
    replica_gpus: float = typer.Option(0.0, "--replica-gpus", min=0.0, help="with --ray: GPUs per replica"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="with --ray: a running Ray cluster to join ('auto' finds "
                                              "one; default: start one on this machine)"),
) -> None:
    """Serve the character live: open the printed address in a browser, type, and watch it speak."""
    token = read_token(token_file, host)
    settings = _settings(max_sessions=max_sessions, max_batch=max_batch, buffer_seconds=buffer, idle_timeout_seconds=idle_timeout,
                         decode_precision=decode_precision, measure_mouth=measure_mouth,
                         **({"threads": threads} if threads is not None else {}))  # fmt: skip
    load = {"checkpoint": checkpoint, "video_codec": video_codec, "audio_codec": audio_codec, "config": config}
    if ray:
        _serve_ray(host, port, token, settings, load, replicas, replica_cpus, replica_gpus, ray_address)
    else:
        _serve_local(host, port, token, settings, load)


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
    import uvicorn

    from streamchar.serving.app import create_app
    from streamchar.serving.state import ServerState
    from streamchar.streaming.pipeline import Pipeline

    pipe = Pipeline.load(**load)
    state = ServerState(pipe, settings, token)
    with console.status("warming up" if settings.max_sessions else "measuring how many sessions stay real time"):
        state.warm_up()
    if state.measured is not None:
        m = state.measured
        console.print(f"capacity: {state.capacity} sessions (a chunk: {m.generate_s[1]:.2f} s through the model alone, "
                      f"{m.generate_s[max(m.generate_s)] / max(m.generate_s):.2f} s each in a batch of {max(m.generate_s)}, "
                      f"{m.render_s:.2f} s to render, on {m.workers} workers; period {m.period_s:.3f} s)")
    console.print(f"video decoding in {'bf16' if state.decode_bf16 else 'fp32'} (--decode-precision)")
    config = uvicorn.Config(create_app(state), host=host, port=port, ws_max_size=settings.max_message_bytes, log_level="info",
                            ws="websockets-sansio")  # fmt: skip
    console.print(f"streamchar serving {pipe.meta.get('name')} on {_address(host, port, token)}")
    uvicorn.Server(config).run()


def _serve_ray(host: str, port: int, token: str | None, settings, load: dict, replicas: int, cpus: float, gpus: float,  # noqa: ANN001
               address: str | None) -> None:
    import signal
    import time

    import ray
    from ray import serve

    from streamchar.serving.cluster import cluster_app

    ray.init(address=address, include_dashboard=False, configure_logging=False)
    serve.start(http_options={"host": host, "port": port})
    with console.status(f"starting {replicas} replicas on Ray Serve"):
        serve.run(cluster_app(settings, token, load, replicas, cpus, gpus))
    console.print(f"streamchar serving on Ray Serve ({replicas} replicas) on {_address(host, port, token)}")
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop shuts Serve and Ray down as Ctrl-C does
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
