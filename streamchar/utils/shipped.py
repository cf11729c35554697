"""Where shipped weights are found by name.

The wheel holds what streaming and evaluation need (`streamchar/assets/<kind>/<name>/`); the
teacher and codecs no shipped model uses stay in the repository's `checkpoints/<name>/`, found
by name from a source checkout and named with their place in the repository otherwise."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from streamchar.errors import StreamcharError

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"  # a source checkout's; absent from a wheel install


def packaged(kind: str, name: str) -> Path:
    return Path(str(resources.files("streamchar").joinpath(f"assets/{kind}/{name}")))


def shipped_dir(kind: str, name: str) -> Path:
    """The folder of shipped weights `name` of `kind` (models, codecs, eval): in the package, or
    in the source checkout's `checkpoints/`; a clear error when neither holds it."""
    for path in (packaged(kind, name), CHECKPOINTS / name):
        if path.is_dir():
            return path
    raise StreamcharError(f"{name!r} is not in this install: it is kept in the repository, not the wheel, "
                          f"under checkpoints/{name}/: clone the source repository and pass that folder")
