"""Commands on speech and footage: `bench voices` (the judge's WER per engine's voice),
`bench align` (forced alignment against Festival's word times) and `data prepare` (your own
clips as a training set)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from streamchar.cli.common import ConfigOpt, PresetOpt, clip_progress, console, err_console, report
from streamchar.errors import StreamcharError

ResultOpt = typer.Option(None, "--out", help="write the result JSON here")


def bench_voices_cmd(
    voices: str = typer.Option("", "--voices", help="ENGINE:NAME,... (default: every engine's candidates)"),
    sentences: int = typer.Option(30, "--sentences", help="test-split Harvard sentences per voice"),
    audio_codec: Optional[str] = typer.Option("tiny-audio-3engines", "--audio-codec", help="also WER after this codec's round trip ('' for none)"),
    out: Optional[Path] = ResultOpt,
) -> None:
    """WER of the project's judge on each engine's voices (and after the audio codec's round
    trip); SynthTalk keeps voices at or under 10%."""
    from streamchar.codecs.store import load_audio_codec
    from streamchar.config import load_config
    from streamchar.evaluation.bench_speech import CANDIDATES, bench_voices

    specs = tuple(v.strip() for v in voices.split(",") if v.strip()) or CANDIDATES
    codec = load_audio_codec(load_config("tiny"), audio_codec) if audio_codec else None
    with clip_progress("voices") as update:
        result = bench_voices(specs, sentences, codec, on_progress=update)
    result["audio_codec"] = audio_codec or None
    report(result, out)


def bench_align_cmd(
    sentences: int = typer.Option(30, "--sentences", help="test-split Harvard sentences per Festival voice"),
    out: Optional[Path] = ResultOpt,
) -> None:
    """Forced alignment's word times against those Festival reports for its own speech."""
    from streamchar.evaluation.bench_speech import bench_align

    with clip_progress("sentences") as update:
        result = bench_align(sentences, on_progress=update)
    report(result, out)


def data_prepare_cmd(
    src: Path = typer.Option(..., "--in", help="folder of <name>.mp4 videos, each with its transcript <name>.txt", show_default=False),
    out: Path = typer.Option(..., "--out", help="the training folder (created; rerun to resume)", show_default=False),
    workers: int = typer.Option(1, "--workers", help="processes"),
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Your own talking-head footage as a training set: face-centred crops at the preset's size
    and 24 fps, audio resampled, word timings by forced alignment."""
    from streamchar.config import load_config
    from streamchar.data.prepare import REPORT, prepare_folder

    if workers <= 0:
        raise StreamcharError(f"--workers must be at least 1, got {workers}")
    with clip_progress("clips") as update:
        result = prepare_folder(src, out, load_config(preset, config), workers, on_progress=update)
    for name, reason in sorted(result["skipped"].items()):
        err_console.print(f"[yellow]skipped[/] {name}: {reason}")
    console.print(f"{len(result['prepared'])} clips prepared in {out}, {len(result['skipped'])} skipped (listed in {out / REPORT})")


def bench_pointer_cmd(
    videos: Path = typer.Option(..., "--videos", help="a folder `streamchar eval render` wrote", show_default=False),
    data: Optional[Path] = typer.Option(None, "--data", help="the SynthTalk set it rendered, to report each speech engine apart"),
    clips: Optional[int] = typer.Option(None, "--clips", help="the first N streams only"),
    out: Optional[Path] = ResultOpt,
) -> None:
    """The pointer's reading and the reader's count of words spoken at each chunk's end, against
    forced alignment of the stream's own audio (mean error in words)."""
    from streamchar.data.inspect import clip_engines
    from streamchar.evaluation.bench_pointer import bench_pointer

    with clip_progress("streams") as update:
        result = bench_pointer(videos, clip_engines(data) if data else None, clips, on_progress=update)
    report(result, out)
