"""`streamchar serve`: the live server (the page at /, the API under /api, OpenAPI at /docs)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Optional

import typer

from streamchar.cli.common import AudioCodecOpt, CheckpointConfigOpt, VideoCodecOpt, console
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
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="generator directory or shipped name (default: the shipped student)"),
    config: Optional[Path] = CheckpointConfigOpt,
    max_sessions: Optional[int] = typer.Option(None, "--max-sessions", help="sessions at once; one more is answered 503 with a retry "
                                               "hint (default: as many as stay real time, measured at start-up)"),
    max_batch: int = typer.Option(1, "--max-batch", help="sessions whose chunks go through the model together (1: one at a time)"),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="a file holding the token every request must carry"),
    buffer: float = typer.Option(1.2, "--buffer", help="seconds of media generated ahead of each viewer, at most"),
    idle_timeout: float = typer.Option(120.0, "--idle-timeout", help="close a session nobody watches or touches for this long (s)"),
    threads: int = typer.Option(2, "--threads", help="torch threads"),
    video_codec: Optional[Path] = VideoCodecOpt,
    audio_codec: Optional[Path] = AudioCodecOpt,
) -> None:
    """Serve the character live: open the printed address in a browser, type, and watch it speak."""
    import uvicorn
    from pydantic import ValidationError

    from streamchar.serving.app import create_app
    from streamchar.serving.settings import ServerSettings
    from streamchar.serving.state import ServerState
    from streamchar.streaming.pipeline import Pipeline

    token = read_token(token_file, host)
    try:
        settings = ServerSettings(max_sessions=max_sessions, max_batch=max_batch, buffer_seconds=buffer, idle_timeout_seconds=idle_timeout,
                                  threads=threads)
    except ValidationError as e:
        err = e.errors()[0]
        raise StreamcharError(f"--{str(err['loc'][0]).replace('_seconds', '').replace('_', '-')}: {err['msg']}") from None
    pipe = Pipeline.load(checkpoint, video_codec, audio_codec, config)
    state = ServerState(pipe, settings, token)
    with console.status("warming up" if max_sessions else "measuring how many sessions stay real time"):
        state.warm_up()
    if state.measured is not None:
        m = state.measured
        console.print(f"capacity: {state.capacity} sessions (a chunk: {m.generate_s[1]:.2f} s through the model alone, "
                      f"{m.generate_s[max(m.generate_s)] / max(m.generate_s):.2f} s each in a batch of {max(m.generate_s)}, "
                      f"{m.render_s:.2f} s to render; period {m.period_s:.3f} s)")
    app = create_app(state)
    config = uvicorn.Config(app, host=host, port=port, ws_max_size=settings.max_message_bytes, log_level="info", ws="websockets-sansio")
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    hint = " - open it with ?token=TOKEN" if token else ""
    console.print(f"streamchar serving {pipe.meta.get('name')} on http://{shown}:{port}/ (API docs at /docs){hint}")
    server.run()
