"""`streamchar generate` and `streamchar demo`: stream a character speaking a transcript into a playable MP4."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer
from rich.live import Live
from rich.table import Table

from streamchar.cli.common import (
    AudioCodecOpt,
    CheckpointConfigOpt,
    CheckpointOpt,
    DeviceOpt,
    DtypeOpt,
    MemoryModeOpt,
    SeedOpt,
    ThreadsOpt,
    VideoCodecOpt,
    console,
    err_console,
)
from streamchar.errors import StreamcharError


def _check_output(path: Path) -> None:
    if path.suffix.lower() != ".mp4":
        raise StreamcharError(f"--out must be an .mp4 file, got {path}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab"):
            pass
    except OSError as e:
        raise StreamcharError(f"cannot write {path}: {e.strerror}") from None


def stream_with_table(pipe, request, settings, out: Path, t_request: float):  # noqa: ANN001, ANN201
    """Stream to `out` with a live table of chunks on stderr."""
    table = Table("chunk", "compute s", "real-time factor", "words spoken", "stall s", title=f"streaming to {out} ({settings.steps} steps)")
    with Live(table, console=err_console, refresh_per_second=4):
        return pipe.stream_to_mp4(request, settings, out, t_request, on_chunk=lambda r: table.add_row(
            str(r.index), f"{r.compute_s:.3f}", f"{r.real_time_factor:.2f}", f"{r.words_spoken:.1f} / {r.words_total}", f"{r.stall_s:.2f}"))


@dataclass(frozen=True)
class GenerateOptions:
    """What `streamchar generate` streams, with its defaults: `demo` names only what it sets, so an
    option added to `generate` cannot reach it as an unparsed typer default."""

    out: Path = Path("out/stream.mp4")
    text: Optional[str] = None
    text_file: Optional[Path] = None
    character: Optional[str] = None
    reference_image: Optional[Path] = None
    reference_voice: Optional[Path] = None
    prompt: str = ""
    checkpoint: Optional[str] = None
    steps: Optional[int] = None
    no_sink: bool = False
    guidance: float = 1.0
    report_path: Optional[Path] = None
    seed: int = 0
    threads: int = 2
    video_codec: Optional[Path] = None
    audio_codec: Optional[Path] = None
    config: Optional[Path] = None
    device: str = "auto"
    dtype: str = "auto"
    memory_mode: str = "resident"


def stream_generate(o: GenerateOptions) -> None:
    """Stream a talking character into `o.out`, with a live table of chunks and a summary line."""
    import torch

    from streamchar.streaming.engine import SessionSettings
    from streamchar.streaming.inputs import character_request, file_request
    from streamchar.streaming.pipeline import Pipeline
    from streamchar.streaming.placement import Placement

    t_request = time.perf_counter()
    text = o.text
    if (o.text is None) == (o.text_file is None):
        raise StreamcharError("give the words to speak with exactly one of --text or --text-file")
    if o.text_file is not None:
        try:
            text = o.text_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise StreamcharError(f"cannot read --text-file {o.text_file}: {e}") from None
    if o.character is None and (o.reference_image is None or o.reference_voice is None):
        raise StreamcharError("give --character, or --reference-image and --reference-voice (with --prompt)")
    if not str(text).strip():
        raise StreamcharError(f"{'--text' if o.text is not None else '--text-file ' + str(o.text_file)} is empty; give the words to speak")
    placement = Placement.parse(o.device, o.dtype, o.memory_mode)  # before --out is touched
    _check_output(o.out)
    torch.set_num_threads(o.threads)
    pipe = placement.apply(Pipeline.load(o.checkpoint, o.video_codec, o.audio_codec, o.config))
    cfg = pipe.cfg
    assert text is not None
    if o.character is not None:
        request = character_request(o.character, text, cfg)
    else:
        request = file_request(text, o.reference_image, o.reference_voice, o.prompt, cfg)  # type: ignore[arg-type]
    for notice in request.notices:
        err_console.print(f"[yellow]notice:[/] {notice}")
    settings = SessionSettings(steps=o.steps or pipe.steps, sink=not o.no_sink, seed=o.seed, guidance=o.guidance)
    report = stream_with_table(pipe, request, settings, o.out, t_request)
    if o.report_path:
        report.write(o.report_path)
    s = report.summary()
    console.print(f"{o.out}: {s['chunks']} chunks ({s['seconds']:.1f} s), first chunk after {s['first_chunk_latency_s']:.2f} s, "
                  f"real-time factor {s['real_time_factor_mean']:.2f} (max {s['real_time_factor_max']:.2f}), {s['stalls']} stalls")


def generate(
    text: Optional[str] = typer.Option(None, "--text", help="the words to speak"),
    text_file: Optional[Path] = typer.Option(None, "--text-file", help="or: a UTF-8 file with the words to speak"),
    character: Optional[str] = typer.Option(None, "--character", help="a SynthTalk character (unseen-0..7, train-0..47, a seed)"),
    reference_image: Optional[Path] = typer.Option(None, "--reference-image", help="or: the character's picture (PNG)"),
    reference_voice: Optional[Path] = typer.Option(None, "--reference-voice", help="and a WAV of its voice (1-10 s)"),
    prompt: str = typer.Option("", "--prompt", help="and a description of the scene"),
    checkpoint: Optional[str] = CheckpointOpt,
    config: Optional[Path] = CheckpointConfigOpt,
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="denoising steps per chunk (default: the checkpoint's, student 4, teacher 50)"),
    no_sink: bool = typer.Option(False, "--no-sink", help="do not attend to the first chunk (ablation)"),
    guidance: float = typer.Option(1.0, "--guidance", min=0.0, help="classifier-free guidance on prompt and reference (1: off; doubles the "
                                   "DiT's work)"),
    out: Path = typer.Option(Path("out/stream.mp4"), "--out", help="fragmented MP4, playable while it is written"),
    report_path: Optional[Path] = typer.Option(None, "--report", help="real-time accounting as JSON"),
    seed: int = SeedOpt,
    threads: int = ThreadsOpt,
    video_codec: Optional[Path] = VideoCodecOpt,
    audio_codec: Optional[Path] = AudioCodecOpt,
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
    memory_mode: str = MemoryModeOpt,
) -> None:
    """Stream a talking character: chunks of 33 frames and 1.375 s of audio until the transcript is spoken."""
    stream_generate(GenerateOptions(text=text, text_file=text_file, character=character, reference_image=reference_image,
                                    reference_voice=reference_voice, prompt=prompt, checkpoint=checkpoint, steps=steps, no_sink=no_sink,
                                    guidance=guidance, out=out, report_path=report_path, seed=seed, threads=threads,
                                    video_codec=video_codec, audio_codec=audio_codec, config=config, device=device, dtype=dtype,
                                    memory_mode=memory_mode))  # fmt: skip


def demo(
    out: Path = typer.Option(Path("out/demo.mp4"), "--out", help="the stream (fragmented MP4) and, beside it, its report"),
    text: Optional[str] = typer.Option(None, "--text", help="the words to speak (default: three held-out Harvard sentences)"),
    character: str = typer.Option("unseen-0", "--character", help="a SynthTalk character never seen in training"),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="default: the shipped student, else the shipped teacher"),
    seed: int = SeedOpt,
) -> None:
    """The main job: the shipped model streams a character it never saw speaking sentences it never heard."""
    from streamchar.data.harvard import split_sentences

    stream_generate(GenerateOptions(text=text or " ".join(split_sentences("test")[:3]), character=character, checkpoint=checkpoint,
                                    out=out, report_path=out.with_suffix(".json"), seed=seed))
    console.print(f"the stream is at {out.resolve()} (play it with any video player); its report is at {out.with_suffix('.json').resolve()}")
