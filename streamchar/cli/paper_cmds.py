"""Commands on the model's scale and speed: `checkpoint assemble` (a paper-preset generator
from the public parts), `bench paper` (a paper-shaped stream end to end, reduced on a CPU, full
size on a GPU) and `bench stream` (any preset's streaming speed with random weights)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from streamchar.cli.common import ConfigOpt, PresetOpt, clip_progress, console, report
from streamchar.config import load_config
from streamchar.errors import StreamcharError
from streamchar.utils.files import atomic_write_text

checkpoint_app = typer.Typer(help="Build generator checkpoints from public weights.", no_args_is_help=True)


def _dir(flag: str, what: str) -> Path:
    return typer.Option(..., flag, help=f"local directory: {what}", show_default=False)


@checkpoint_app.command("assemble")
def assemble(
    wan: Path = _dir("--wan", "a diffusers Wan2.2-TI2V-5B transformer (WanTransformer3DModel)"),
    qwen: Path = _dir("--qwen", "a transformers Qwen2.5-3B (Qwen2ForCausalLM) with its tokenizer"),
    umt5: Path = _dir("--umt5", "a transformers umT5 encoder (UMT5EncoderModel) with its tokenizer"),
    video_vae: Path = _dir("--video-vae", "the diffusers Wan2.2 VAE (AutoencoderKLWan)"),
    audio_vae: Path = _dir("--audio-vae", "a diffusers AutoencoderOobleck at 49,152 Hz, hop 2048, 64 channels"),
    out: Path = typer.Option(..., "--out", help="the new checkpoint's folder (must not exist or be empty)", show_default=False),
    config: Optional[Path] = ConfigOpt,
    seed: int = typer.Option(0, "--seed", help="initialises the parts the paper adds (audio encoder and decoder, pointer)"),
) -> None:
    """A paper-preset generator from local public weights, initialised as the paper says (audio
    experts copied from the video FFN); it streams with `generate --checkpoint OUT`."""
    from streamchar.config import load_config
    from streamchar.model.assemble import Parts, assemble_checkpoint

    missing = [f"--{k.replace('_', '-')} {v}" for k, v in {"wan": wan, "qwen": qwen, "umt5": umt5, "video_vae": video_vae,
                                                             "audio_vae": audio_vae}.items() if not Path(v).is_dir()]  # fmt: skip
    if missing:
        raise StreamcharError("not a directory: " + ", ".join(missing))
    with console.status("assembling"):
        result = assemble_checkpoint(load_config("paper", config), Parts(wan, qwen, umt5, video_vae, audio_vae), out, seed)
    console.print(f"assembled {out}: {result['tensors']} Wan tensors, {result['audio_experts_from_video_ffn']} audio-expert tensors "
                  f"copied from the video FFN, {result['qwen_layers']} Qwen layers, a tokenizer of {result['tokenizer_tokens']} tokens")  # fmt: skip


def bench_paper(
    device: str = typer.Option("cuda", "--device", help="cuda (full size, bfloat16) or cpu (with --reduced)"),
    reduced: bool = typer.Option(False, "--reduced", help="stand-ins with depth and width cut down, written, assembled and loaded"),
    chunks: int = typer.Option(4, "--chunks", help="chunks of the 4-step stream"),
    teacher_chunks: int = typer.Option(3, "--teacher-chunks", help="full size: chunks of the 50-step stream (0: none)"),
    modes: str = typer.Option("resident,offload,fp8", "--modes", help="full size: memory modes, in this order"),
    out: Path = typer.Option(Path("paper-bench.mp4"), "--out", help="the stream's MP4 (full size: one per mode, the mode in its name)"),
    result: Optional[Path] = typer.Option(None, "--result", help="write the result JSON here too (full size: after each mode)"),
) -> None:
    """The paper preset end to end with random weights: per-chunk time split as the paper does
    (LLM + DiT, VAE decode, preprocessing, writing), and on a GPU peak memory per memory mode."""
    import torch

    from streamchar.evaluation.bench_paper import bench_full, bench_reduced

    if chunks < 2:
        raise StreamcharError(f"--chunks must be at least 2 (the first chunk also warms up), got {chunks}")
    if device not in ("cpu", "cuda") or (device == "cuda" and not torch.cuda.is_available()):
        raise StreamcharError(f"--device takes cpu or cuda (where a CUDA GPU is present), got {device!r}")
    if reduced:
        report(bench_reduced(torch.device(device), chunks, out), result)
        return

    def save(partial: dict) -> None:
        if result:
            atomic_write_text(result, json.dumps(partial, indent=1))

    res = bench_full(torch.device(device), chunks, teacher_chunks, tuple(m.strip() for m in modes.split(",") if m.strip()), out, save)
    print(json.dumps(res))


def bench_stream_cmd(
    seconds: float = typer.Option(60.0, "--seconds", help="length of the 4-step stream"),
    teacher_seconds: float = typer.Option(14.0, "--teacher-seconds", help="length of the 50-step stream"),
    memory_minutes: str = typer.Option("1,10,30", "--memory-minutes", help="stream minutes at which resident memory is read"),
    threads: int = typer.Option(2, "--threads", help="torch CPU threads"),
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="write the result JSON here"),
) -> None:
    """Streaming speed with random weights: steady time per chunk, first playable bytes, stalls, memory."""
    import torch

    from streamchar.streaming.bench import bench_stream

    if seconds <= 0 or teacher_seconds <= 0:
        raise StreamcharError("--seconds and --teacher-seconds must be positive")
    try:
        marks = tuple(float(m) for m in memory_minutes.split(",") if m.strip())
    except ValueError:
        raise StreamcharError(f"--memory-minutes takes numbers separated by commas, got {memory_minutes!r}") from None
    torch.set_num_threads(threads)
    with clip_progress("streamed chunks") as update:
        result = bench_stream(load_config(preset, config), seconds, teacher_seconds, marks, on_progress=update)
    report(result, out)
