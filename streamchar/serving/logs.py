"""The server's log: one record per event (a session created, refused, interrupted or closed, a
stall, the server ready or shutting down), to stderr as text or, with `serve --log-format json`,
as one JSON object a line: `time`, `level`, `event`, `message`, `session` where there is one, and
the event's own fields. uvicorn's log (its start, each request) goes the same way. A token in a
logged address is masked, and a session appears by its tag (the first characters of its id),
never its whole id: knowing the id is what lets a client use the session."""

from __future__ import annotations

import copy
import json
import logging
import re
from datetime import UTC, datetime
from typing import Any, Literal

log = logging.getLogger("streamchar.serve")
LogFormat = Literal["text", "json"]
TOKEN_IN_ADDRESS = re.compile(r"(token=)[^&\s\"']+")
SESSION_IN_ADDRESS = re.compile(r"(/api/sessions/(?:[\w-]+\.)?[\w-]{8})[\w-]+")  # (a replica's id and its separator, in a cluster)
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "color_message", "event", "session"}


def event(name: str, message: str, *args: object, level: int = logging.INFO, session: str | None = None, exc_info: bool = False,
          **fields: Any) -> None:
    """Log one event: `message % args` for a reader, `name`, `session` and `fields` for a machine."""
    log.log(level, message, *args, exc_info=exc_info, extra={"event": name, "session": session, **fields})


def masked(text: str) -> str:
    """`text` with the token in an address masked, and a session's id cut to its tag."""
    return SESSION_IN_ADDRESS.sub(r"\1...", TOKEN_IN_ADDRESS.sub(r"\1***", text))


class MaskSecrets(logging.Filter):
    """What a logged address holds that lets a client in (the page's or the WebSocket's `?token=`,
    a session's id) is masked, in uvicorn's log as in the server's."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):  # uvicorn's log: the address is an argument
            record.args = tuple(masked(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = masked(record.msg)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", None) or ("uvicorn" if record.name.startswith("uvicorn") else "log"),
            "message": record.getMessage(),
            "logger": record.name,
        }
        if getattr(record, "session", None):
            out["session"] = record.session
        out.update({k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS and not k.startswith("_")})
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, version, status = record.args
            out.update(event="http_request", client=client, method=method, path=path, http_version=version, status=status)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def log_config(fmt: LogFormat) -> dict:
    """A `logging.config.dictConfig` for uvicorn's log and the server's own, in `fmt`: uvicorn's
    own look for text, JSON lines on stderr for json."""
    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["filters"] = {"mask_secrets": {"()": MaskSecrets}}
    if fmt == "json":
        cfg["formatters"] = {"json": {"()": JsonFormatter}}
        cfg["handlers"] = {"default": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}}
        cfg["loggers"]["uvicorn.access"]["handlers"] = ["default"]
    for handler in cfg["handlers"].values():
        handler["filters"] = ["mask_secrets"]
    cfg["loggers"]["streamchar"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return cfg
