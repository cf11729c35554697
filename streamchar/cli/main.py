"""The `streamchar` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from streamchar.cli.common import (
    AudioCodecOpt,
    ConfigOpt,
    PresetOpt,
    VideoCodecOpt,
    clip_progress,
    console,
    err_console,
    invoked_command,
    missing_extra,
    report,
    step_progress,
)
from streamchar.cli.data_cmds import data_corpus_cmd, data_long_cmd
from streamchar.cli.eval_cmds import eval_app
from streamchar.cli.generate_cmd import GenerateOptions, generate, stream_generate
from streamchar.cli.paper_cmds import bench_paper, bench_stream_cmd, checkpoint_app
from streamchar.cli.serve_cmd import serve
from streamchar.cli.speech_cmds import bench_align_cmd, bench_pointer_cmd, bench_voices_cmd, data_prepare_cmd
from streamchar.cli.train_cmds import train_app
from streamchar.config import load_config
from streamchar.config.load import override_config, read_overrides
from streamchar.errors import Interrupted, StreamcharError

app = typer.Typer(help="streamchar: real-time streaming generation of a talking character's speech and video from text.", no_args_is_help=True,
                  add_completion=False)
config_app = typer.Typer(help="Inspect the resolved configuration.", no_args_is_help=True)
data_app = typer.Typer(help="Make and inspect data sets (SynthTalk).", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks (speed and quality targets).", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")
codec_app = typer.Typer(help="Latent codecs: train the tiny ones.", no_args_is_help=True)
app.add_typer(codec_app, name="codec")
app.add_typer(eval_app, name="eval")
app.command("generate")(generate)
app.command("serve")(serve)
app.add_typer(train_app, name="train")
app.add_typer(checkpoint_app, name="checkpoint")
bench_app.command("paper")(bench_paper)
bench_app.command("stream")(bench_stream_cmd)
bench_app.command("voices")(bench_voices_cmd)
bench_app.command("align")(bench_align_cmd)
bench_app.command("pointer")(bench_pointer_cmd)
data_app.command("prepare")(data_prepare_cmd)
data_app.command("corpus")(data_corpus_cmd)
data_app.command("long")(data_long_cmd)

@config_app.command("reference")
def config_reference_cmd() -> None:
    """Print every config field with its value in each preset and what it does (docs/configuration.md)."""
    from streamchar.cli.config_doc import config_reference

    print(config_reference(), end="")


@config_app.command("show")
def config_show(preset: Optional[str] = PresetOpt, config: Optional[Path] = ConfigOpt) -> None:
    """Print the resolved config (preset plus overrides) as YAML."""
    cfg = load_config(preset, config)
    data = cfg.model_dump(mode="json")
    data["derived"] = {
        "chunk_frames": cfg.stream.chunk_frames,
        "chunk_seconds": cfg.stream.chunk_seconds,
        "chunk_samples": cfg.chunk_samples,
        "samples_per_frame": cfg.samples_per_frame,
        "latent_grid": [cfg.video.height // cfg.stream.vae_spatial_stride, cfg.video.width // cfg.stream.vae_spatial_stride],
    }
    console.print(yaml.safe_dump(data, sort_keys=False), end="", markup=False, highlight=False)


@data_app.command("synth")
def data_synth(
    out: Path = typer.Option(..., "--out", help="folder for the set (created; an unfinished set there is resumed)"),
    clips: int = typer.Option(..., "--clips", help="number of clips (> 0)"),
    seed: int = typer.Option(0, "--seed", help="the same seed gives the same data"),
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
    workers: Optional[int] = typer.Option(None, "--workers", help="processes (default: all cores)"),
    seconds: Optional[float] = typer.Option(None, "--seconds", help="aim each clip at about this many seconds (default: 1-4 sentences at random)"),
    engines: Optional[str] = typer.Option(None, "--engines", help="speech engines the characters' voices come from "
                                          "(default: espeak,festival,flite, unless a --config names synthtalk.engines)"),
) -> None:
    """Make a SynthTalk set: clips of a procedurally drawn character speaking Harvard sentences or open English (synthtalk.text)."""
    from streamchar.data.synth import synthesize_set

    cfg = load_config(preset, config)
    if engines is not None or "engines" not in read_overrides(config).get("synthtalk", {}):
        chosen = [e.strip() for e in (engines or "espeak,festival,flite").split(",") if e.strip()]
        cfg = override_config(cfg, {"synthtalk": {"engines": chosen}})
    if clips <= 0:
        raise StreamcharError(f"--clips must be a positive number of clips, got {clips}")
    if workers is not None and workers <= 0:
        raise StreamcharError(f"--workers must be at least 1, got {workers}")
    if seconds is not None and not 0 < seconds <= cfg.synthtalk.max_seconds:
        raise StreamcharError(f"--seconds must be in (0, {cfg.synthtalk.max_seconds:g}], got {seconds:g}")
    with clip_progress("synthesising clips") as update:
        summary = synthesize_set(out, clips, seed, cfg, workers=workers, target_seconds=seconds, on_progress=update)
    console.print(
        f"{summary['clips']} clips in {out} ({summary['made_now']} made now, {summary['resumed_from']} already there); "
        f"{summary['made_seconds_of_video']:.0f} s of video in {summary['wall_seconds']:.1f} s"
    )


def _print_stats(stats: dict) -> None:
    table = Table(title="SynthTalk set", show_header=False)
    for key, value in stats.items():
        shown = json.dumps(value) if isinstance(value, (dict, list)) else f"{value:.3g}" if isinstance(value, float) else str(value)
        table.add_row(key.replace("_", " "), shown)
    console.print(table)


@data_app.command("inspect")
def data_inspect(
    root: Path = typer.Argument(..., help="a SynthTalk set folder"),
    sheet: Optional[Path] = typer.Option(None, "--sheet", help="contact sheet PNG (default: ROOT/contact_sheet.png)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the statistics as JSON"),
) -> None:
    """Print a set's statistics and write a contact sheet of its characters and mouth shapes."""
    from streamchar.data.inspect import contact_sheet, load_records, set_statistics

    records = load_records(root)
    stats = set_statistics(records)
    _print_stats(stats)
    path = contact_sheet(records, sheet or root / "contact_sheet.png")
    console.print(f"contact sheet: {path}")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(stats, indent=1))


@bench_app.command("synth")
def bench_synth(
    clips: int = typer.Option(16, "--clips", help="clips to make"),
    seconds: float = typer.Option(10.0, "--seconds", help="target clip length (s)"),
    workers: Optional[int] = typer.Option(None, "--workers", help="processes (default: all cores)"),
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="write the result JSON here"),
) -> None:
    """SynthTalk generation speed (clips/s for ~10 s clips), pocketsphinx WER, mouth/loudness correlation."""
    from streamchar.evaluation.bench_synth import bench_synthtalk

    cfg = load_config(preset, config)
    if clips <= 0:
        raise StreamcharError(f"--clips must be a positive number of clips, got {clips}")
    with clip_progress("benchmark clips") as update:
        result = bench_synthtalk(cfg, clips=clips, seconds=seconds, workers=workers, on_progress=update)
    report(result, out)


@codec_app.command("train")
def codec_train(
    kind: str = typer.Option(..., "--kind", help="video or audio"),
    data: Path = typer.Option(..., "--data", help="a SynthTalk set (its train split is used)"),
    run: Path = typer.Option(..., "--run", help="folder for checkpoints, TensorBoard logs and the training log (resumed if present)"),
    out: Path = typer.Option(..., "--out", help="where the finished codec is written (model.safetensors + config.json)"),
    steps: int = typer.Option(6000, "--steps"),
    batch: int = typer.Option(8, "--batch"),
    lr: float = typer.Option(1e-3, "--lr"),
    max_clips: int = typer.Option(400, "--max-clips", help="training clips held in memory"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads"),
    init: Optional[str] = typer.Option(None, "--init", help="start from this codec's weights (tiny-video, tiny-audio or a directory)"),
    crop: int = typer.Option(64, "--crop", help="video: square training crops of this size, a multiple of 16 (0: whole frames)"),
    mouth_crops: float = typer.Option(0.0, "--mouth-crops", help="video: share of training crops placed over the mouth"),
    decoder_only: bool = typer.Option(False, "--decoder-only", help="train --init's decoder alone: its latents stay valid"),
    reference: bool = typer.Option(False, "--reference", help="video: the decoder also reads the stream's reference image"),
    previous_latent: bool = typer.Option(False, "--previous-latent", help="video: the decoder also reads the latent before each one"),
    frame_blend: bool = typer.Option(False, "--frame-blend", help="video: train gates alone that blend frames toward the one before"),
    blend_next: bool = typer.Option(False, "--blend-next", help="video: and gates that blend a latent's last frame toward the next"),
    reblend: bool = typer.Option(False, "--reblend", help="video: then blend first frames again toward the frame before"),
    seam_loss: float = typer.Option(0.0, "--seam-loss", help="video: weight of a loss on the frame-to-frame change (0: off)"),
    anchor: float = typer.Option(0.0, "--anchor", help="weight of a loss on the latents' move from --init's (0: off)"),
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Train a tiny codec on SynthTalk; rerun the same command to resume after an interruption.

    The video codec is built up from --init, one decoder part per run with --decoder-only: --reference, then
    --previous-latent, then blend gates trained alone (--frame-blend, then --blend-next, then --reblend, each with
    the ones before; --seam-loss weighs the change across blended frames). --anchor trains --init's encoder too,
    held near its latents, whose statistics stay --init's."""
    from streamchar.training.codec_training import CodecSettings, check_settings, train_codec

    cfg = load_config(preset, config)
    settings = CodecSettings(steps=steps, batch=batch, lr=lr, max_clips=max_clips, threads=threads, init=init, crop=crop or None,
                             mouth_crops=mouth_crops, decoder_only=decoder_only, reference=reference, previous_latent=previous_latent,
                             frame_blend=frame_blend, blend_next=blend_next, reblend=reblend, seam_loss=seam_loss, anchor=anchor)
    check_settings(kind, settings)  # before the progress bar shows
    with step_progress(f"training {kind} codec", steps) as on_step:
        summary = train_codec(kind, data, run, out, cfg, settings, on_step=on_step, command=invoked_command())
    console.print(json.dumps(summary))


@data_app.command("encode")
def data_encode(
    data: Path = typer.Option(..., "--data", help="a SynthTalk set or a folder of real clips"),
    out: Path = typer.Option(..., "--out", help="folder for the latent shards (resumed if present)"),
    video_codec: Optional[Path] = VideoCodecOpt,
    audio_codec: Optional[Path] = AudioCodecOpt,
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Encode a data set once into latent shards (safetensors), timings carried over."""
    from streamchar.codecs.store import DEFAULT, load_audio_codec, load_video_codec
    from streamchar.data.latents import encode_dataset

    cfg = load_config(preset, config)
    video = load_video_codec(cfg, video_codec)
    audio = load_audio_codec(cfg, audio_codec)
    names = {"video": str(video_codec or DEFAULT["video"]), "audio": str(audio_codec or DEFAULT["audio"])}
    with clip_progress("encoding clips") as update:
        summary = encode_dataset(data, out, cfg, video, audio, names, on_progress=update)
    console.print(json.dumps(summary))


@bench_app.command("codec")
def bench_codec(
    data: Path = typer.Option(..., "--data", help="a SynthTalk set"),
    clips: int = typer.Option(24, "--clips", help="held-out clips to round-trip"),
    split: str = typer.Option("test-unseen", "--split", help="held-out split (test-unseen: unseen sentences and characters)"),
    threads: int = typer.Option(2, "--threads", help="torch CPU threads for the speed measurement"),
    video_codec: Optional[Path] = VideoCodecOpt,
    audio_codec: Optional[Path] = AudioCodecOpt,
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="write the result JSON here"),
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
    out: Optional[Path] = typer.Option(None, "--out", help="write the result JSON here"),
) -> None:
    """Word-start errors of the plans on held-out timings, by engine: the learned one, and letters, espeak-ng and even pace fitted here."""
    from streamchar.evaluation.bench_pace import bench_pace

    report(bench_pace(cache, load_config(preset, config), split=split, checkpoint=checkpoint), out)


@bench_app.command("dit")
def bench_dit(
    steps: int = typer.Option(4, "--steps", help="denoising steps per chunk (student 4, teacher 50)"),
    threads: int = typer.Option(2, "--threads", help="torch CPU threads"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
    dtype: str = typer.Option("float32", "--dtype", help="float32 or bfloat16"),
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="write the result JSON here"),
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
    split: str = typer.Option("test-unseen", "--split", help="held-out split"),
    windows: int = typer.Option(64, "--windows", help="held-out later-chunk windows"),
    threads: int = typer.Option(2, "--threads", help="torch CPU threads"),
    out: Optional[Path] = typer.Option(None, "--out", help="write the result JSON here"),
) -> None:
    """Does the generator read its transcript? Losses with true against rotated transcripts."""
    import torch

    from streamchar.evaluation.bench_text import bench_text_reading

    if windows < 2:
        raise StreamcharError(f"--windows must be at least 2 (transcripts are rotated between windows), got {windows}")
    torch.set_num_threads(threads)
    report(bench_text_reading(checkpoint, cache, split=split, windows=windows), out)


@app.command("info")
def info(preset: Optional[str] = PresetOpt, config: Optional[Path] = ConfigOpt) -> None:
    """Parameter counts per module, computed on the meta device (no memory, no weights)."""
    from streamchar.model.streamchar_model import build_model, parameter_counts

    cfg = load_config(preset, config)
    counts = parameter_counts(build_model(cfg, "meta"))
    table = Table(title=f"streamchar parameters, preset {cfg.preset}")
    table.add_column("module")
    table.add_column("parameters", justify="right")
    for name, n in counts.items():
        table.add_row(name, f"{n / 1e9:.3f}B" if n >= 1e8 else f"{n / 1e6:.2f}M")
    console.print(table)


@app.command("demo")
def demo(
    out: Path = typer.Option(Path("out/demo.mp4"), "--out", help="the stream (fragmented MP4) and, beside it, its report"),
    text: Optional[str] = typer.Option(None, "--text", help="the words to speak (default: three held-out Harvard sentences)"),
    character: str = typer.Option("unseen-0", "--character", help="a SynthTalk character never seen in training"),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="default: the shipped student, else the shipped teacher"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """The main job: the shipped model streams a character it never saw speaking sentences it never heard."""
    from streamchar.data.harvard import split_sentences

    stream_generate(GenerateOptions(text=text or " ".join(split_sentences("test")[:3]), character=character, checkpoint=checkpoint,
                                    out=out, report_path=out.with_suffix(".json"), seed=seed))
    console.print(f"the stream is at {out.resolve()} (play it with any video player); its report is at {out.with_suffix('.json').resolve()}")


@bench_app.command("serve")
def bench_serve_cmd(
    seconds: float = typer.Option(120.0, "--seconds", help="how long each session of the concurrency runs lasts"),
    soak_minutes: float = typer.Option(30.0, "--soak-minutes", help="length of the soak (0: none)"),
    soak_sessions: Optional[int] = typer.Option(None, "--soak-sessions", help="sessions during the soak (default: the batched maximum)"),
    max_sessions: int = typer.Option(10, "--max-sessions", help="the most sessions at once to try"),
    trials: int = typer.Option(3, "--trials", help="page loads in Chromium (first frame, append, interrupt, A/V offset)"),
    out: Path = typer.Option(Path("benchmarks/results/serve.json"), "--out", help="results JSON (a PNG of stalls and memory beside it)"),
) -> None:
    """The live server as viewers meet it: first frame, append and interrupt latency, A/V offset (Chromium), sessions without stalls, a soak."""
    from streamchar.serving.bench import bench_serve

    if seconds <= 0 or soak_minutes < 0 or (soak_sessions is not None and soak_sessions < 1) or max_sessions < 1 or trials < 1:
        raise StreamcharError("--seconds must be positive, --soak-minutes 0 or more, --soak-sessions, --max-sessions and --trials at least 1")
    result = bench_serve(seconds, soak_minutes, soak_sessions, max_sessions, trials, out, say=lambda m: err_console.print(m))
    keys = ("first_frame_s", "append_to_heard_s", "interrupt_to_silence_s", "av_offset_frames", "max_sessions_no_stall",
            "unbatched_max_sessions_no_stall", "first_frame_s_at_max", "admitted_sessions", "soak_sessions", "soak_rss_mb", "soak_rss_change",
            "soak_stalls", "soak_errors", "mouth_silent", "mouth_speaking")  # fmt: skip
    console.print(f"results: {out}")
    print(json.dumps({k: result[k] for k in keys}))


def main() -> None:
    try:
        app()
    except Interrupted as e:
        err_console.print(f"[bold red]interrupted:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(130)
    except StreamcharError as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]", highlight=False)
        sys.exit(130)
    except ModuleNotFoundError as e:
        message = missing_extra(e)
        if message is None:
            raise
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(2)

