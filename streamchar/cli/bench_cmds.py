"""`streamchar bench …`: the benchmarks behind the speed and quality targets: the model's scale and
speed (paper, stream, dit), speech (voices, align, pointer), SynthTalk (synth), the codecs (codec),
the transcript's reading (pace, text) and the live server (serve)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from streamchar.cli.common import (
    AudioCodecOpt,
    ConfigOpt,
    DeviceOpt,
    DtypeOpt,
    HeldOutSplitOpt,
    MemoryModeOpt,
    PresetOpt,
    ResultOpt,
    ThreadsOpt,
    VideoCodecOpt,
    WorkersOpt,
    clip_progress,
    console,
    err_console,
    report,
)
from streamchar.config import load_config
from streamchar.errors import StreamcharError
from streamchar.utils.files import atomic_write_text

bench_app = typer.Typer(help="Benchmarks (speed and quality targets).", no_args_is_help=True)


@bench_app.command("paper")
def bench_paper(
    device: str = typer.Option("cuda", "--device", help="cuda (full size, bfloat16) or cpu (with --reduced)"),
    reduced: bool = typer.Option(False, "--reduced", help="stand-ins with depth and width cut down, written, assembled and loaded"),
    chunks: int = typer.Option(4, "--chunks", min=2, help="chunks of the 4-step stream (the first also warms up)"),
    teacher_chunks: int = typer.Option(3, "--teacher-chunks", help="full size: chunks of the 50-step stream (0: none)"),
    modes: str = typer.Option("resident,offload,fp8", "--modes", help="full size: memory modes, in this order"),
    out: Path = typer.Option(Path("paper-bench.mp4"), "--out", help="the stream's MP4 (full size: one per mode, the mode in its name)"),
    result: Optional[Path] = typer.Option(None, "--result", help="write the result JSON here too (full size: after each mode)"),
    pointer_words: Optional[float] = typer.Option(None, "--pointer-words", help="reduced: stream until the pointer ends it (about --chunks "
                                                  "chunks), the pointer scripted to say this many words a chunk (random weights do not read)"),
) -> None:
    """The paper preset end to end with random weights: per-chunk time split as the paper does
    (LLM + DiT, VAE decode, preprocessing, writing), and on a GPU peak memory per memory mode.
    With --reduced --pointer-words, the paper's pointer-driven reading over a full history window
    to the stream's own end."""
    import torch

    from streamchar.evaluation.bench_paper import bench_full, bench_reduced

    if device not in ("cpu", "cuda") or (device == "cuda" and not torch.cuda.is_available()):
        raise StreamcharError(f"--device takes cpu or cuda (where a CUDA GPU is present), got {device!r}")
    if pointer_words is not None and not reduced:
        raise StreamcharError("--pointer-words runs with --reduced (random stand-ins whose pointer is scripted)")
    if reduced:
        report(bench_reduced(torch.device(device), chunks, out, pointer_words=pointer_words), result)
        return

    def save(partial: dict) -> None:
        if result:
            atomic_write_text(result, json.dumps(partial, indent=1))

    res = bench_full(torch.device(device), chunks, teacher_chunks, tuple(m.strip() for m in modes.split(",") if m.strip()), out, save)
    print(json.dumps(res))


@bench_app.command("stream")
def bench_stream_cmd(
    seconds: float = typer.Option(60.0, "--seconds", help="length of the 4-step stream"),
    teacher_seconds: float = typer.Option(14.0, "--teacher-seconds", help="length of the 50-step stream"),
    memory_minutes: str = typer.Option("1,10,30", "--memory-minutes", help="stream minutes at which resident memory is read"),
    threads: int = ThreadsOpt,
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
    memory_mode: str = MemoryModeOpt,
    out: Optional[Path] = ResultOpt,
) -> None:
    """Streaming speed with random weights: steady time per chunk, first playable bytes, stalls, memory."""
    import torch

    from streamchar.streaming.bench import bench_stream
    from streamchar.streaming.placement import Placement

    placement = Placement.parse(device, dtype, memory_mode)

    if seconds <= 0 or teacher_seconds <= 0:  # typer's ranges have no open bound
        raise StreamcharError("--seconds and --teacher-seconds must be positive")
    try:
        marks = tuple(float(m) for m in memory_minutes.split(",") if m.strip())
    except ValueError:
        raise StreamcharError(f"--memory-minutes takes numbers separated by commas, got {memory_minutes!r}") from None
    torch.set_num_threads(threads)
    with clip_progress("streamed chunks") as update:
        result = bench_stream(load_config(preset, config), seconds, teacher_seconds, marks, on_progress=update, placement=placement)
    report(result, out)


@bench_app.command("voices")
def bench_voices_cmd(
    voices: str = typer.Option("", "--voices", help="ENGINE:NAME,... (default: every engine's candidates)"),
    sentences: int = typer.Option(30, "--sentences", help="test-split Harvard sentences per voice"),
    audio_codec: Optional[str] = typer.Option("tiny-audio-3engines", "--audio-codec", help="also WER after this codec's round trip ('' for none)"),
    out: Optional[Path] = ResultOpt,
) -> None:
    """WER of the project's judge on each engine's voices (and after the audio codec's round
    trip); SynthTalk keeps voices at or under 10%."""
    from streamchar.codecs.store import load_audio_codec
    from streamchar.evaluation.bench_speech import CANDIDATES, bench_voices

    specs = tuple(v.strip() for v in voices.split(",") if v.strip()) or CANDIDATES
    codec = load_audio_codec(load_config("tiny"), audio_codec) if audio_codec else None
    with clip_progress("voices") as update:
        result = bench_voices(specs, sentences, codec, on_progress=update)
    result["audio_codec"] = audio_codec or None
    report(result, out)


@bench_app.command("align")
def bench_align_cmd(
    sentences: int = typer.Option(30, "--sentences", help="test-split Harvard sentences per Festival voice"),
    out: Optional[Path] = ResultOpt,
) -> None:
    """Forced alignment's word times against those Festival reports for its own speech."""
    from streamchar.evaluation.bench_speech import bench_align

    with clip_progress("sentences") as update:
        result = bench_align(sentences, on_progress=update)
    report(result, out)


@bench_app.command("pointer")
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


@bench_app.command("synth")
def bench_synth(
    clips: int = typer.Option(16, "--clips", min=1, help="clips to make"),
    seconds: float = typer.Option(10.0, "--seconds", help="target clip length (s)"),
    workers: Optional[int] = WorkersOpt,
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
    out: Optional[Path] = ResultOpt,
) -> None:
    """SynthTalk generation speed (clips/s for ~10 s clips), pocketsphinx WER, mouth/loudness correlation."""
    from streamchar.evaluation.bench_synth import bench_synthtalk

    cfg = load_config(preset, config)
    with clip_progress("benchmark clips") as update:
        result = bench_synthtalk(cfg, clips=clips, seconds=seconds, workers=workers, on_progress=update)
    report(result, out)


@bench_app.command("codec")
def bench_codec(
    data: Path = typer.Option(..., "--data", help="a SynthTalk set"),
    clips: int = typer.Option(24, "--clips", help="held-out clips to round-trip"),
    split: str = HeldOutSplitOpt,
    threads: int = typer.Option(2, "--threads", help="torch CPU threads for the speed measurement"),
    video_codec: Optional[Path] = VideoCodecOpt,
    audio_codec: Optional[Path] = AudioCodecOpt,
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
    out: Optional[Path] = ResultOpt,
) -> None:
    """Codec round trip on held-out clips: PSNR (frame, mouth), WER before/after, seams, decode speed."""
    import torch

    from streamchar.codecs.store import load_audio_codec, load_video_codec
    from streamchar.evaluation.bench_codec import bench_codecs

    torch.set_num_threads(threads)
    cfg = load_config(preset, config)
    result = bench_codecs(data, cfg, load_video_codec(cfg, video_codec), load_audio_codec(cfg, audio_codec), clips=clips, split=split)
    report(result, out)


@bench_app.command("pace")
def bench_pace_cmd(
    cache: Path = typer.Option(..., "--cache", help="a latent cache (streamchar data encode): its train split is fitted"),
    split: str = typer.Option("test-unseen", "--split", help="held-out split whose word timings the plans are measured on"),
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="also measure this model's learned plan (its duration head)"),
    out: Optional[Path] = ResultOpt,
) -> None:
    """Word-start errors of the plans on held-out timings, by engine: the learned one, and letters, espeak-ng and even pace fitted here."""
    from streamchar.evaluation.bench_pace import bench_pace

    report(bench_pace(cache, load_config(preset, config), split=split, checkpoint=checkpoint), out)


@bench_app.command("dit")
def bench_dit(
    steps: int = typer.Option(4, "--steps", help="denoising steps per chunk (student 4, teacher 50)"),
    threads: int = ThreadsOpt,
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
    dtype: str = typer.Option("float32", "--dtype", help="float32 or bfloat16"),
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
    out: Optional[Path] = ResultOpt,
) -> None:
    """Time per denoising step of one chunk (orchestrator + DiT), with cached condition keys/values and without."""
    import torch

    from streamchar.evaluation.bench_model import bench_denoise

    if dtype not in ("float32", "bfloat16"):
        raise StreamcharError(f"--dtype must be float32 or bfloat16, got {dtype!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise StreamcharError("--device cuda: no CUDA device here")
    torch.set_num_threads(threads)
    report(bench_denoise(load_config(preset, config), steps=steps, device=device, dtype=getattr(torch, dtype)), out)


@bench_app.command("text")
def bench_text(
    checkpoint: str = typer.Option("tiny-teacher", "--checkpoint", help="generator directory or shipped name"),
    cache: Path = typer.Option(..., "--cache", help="a latent cache (streamchar data encode)"),
    split: str = HeldOutSplitOpt,
    windows: int = typer.Option(64, "--windows", min=2, help="held-out later-chunk windows (transcripts are rotated between them)"),
    threads: int = ThreadsOpt,
    out: Optional[Path] = ResultOpt,
) -> None:
    """Does the generator read its transcript? Losses with true against rotated transcripts."""
    import torch

    from streamchar.evaluation.bench_text import bench_text_reading

    torch.set_num_threads(threads)
    report(bench_text_reading(checkpoint, cache, split=split, windows=windows), out)


@bench_app.command("serve")
def bench_serve_cmd(
    seconds: float = typer.Option(120.0, "--seconds", help="how long each session of the concurrency runs lasts"),
    soak_minutes: float = typer.Option(30.0, "--soak-minutes", min=0.0, help="length of the soak (0: none)"),
    soak_sessions: Optional[int] = typer.Option(None, "--soak-sessions", min=1, help="sessions during the soak (default: as many as a "
                                                "server measuring its own capacity admits)"),
    search: bool = typer.Option(True, "--search/--no-search", help="look for the most sessions without a stall, batched and one at "
                                "a time (the longest part)"),
    max_sessions: int = typer.Option(10, "--max-sessions", min=1, help="the most sessions at once to try"),
    trials: int = typer.Option(3, "--trials", min=1, help="page loads in Chromium (first frame, append, interrupt, A/V offset)"),
    out: Path = typer.Option(Path("benchmarks/results/serve.json"), "--out", help="results JSON (a PNG of stalls and memory beside it)"),
) -> None:
    """The live server as viewers meet it: first frame, append and interrupt latency, A/V offset (Chromium), sessions without stalls, a soak."""
    from streamchar.serving.bench import bench_serve

    if seconds <= 0:  # typer's ranges have no open bound
        raise StreamcharError(f"--seconds must be positive, got {seconds:g}")
    result = bench_serve(seconds, soak_minutes, soak_sessions, max_sessions, trials, out, say=lambda m: err_console.print(m), search=search)
    keys = ("first_frame_s", "append_to_heard_s", "interrupt_to_silence_s", "av_offset_ms", "av_offset_vs_file_ms", "max_sessions_no_stall",
            "unbatched_max_sessions_no_stall", "first_frame_s_at_max", "admitted_sessions", "soak_sessions", "soak_rss_mb", "soak_rss_change",
            "soak_stalls", "soak_errors", "mouth_silent", "mouth_speaking")  # fmt: skip
    console.print(f"results: {out}")
    print(json.dumps({k: result[k] for k in keys}))
