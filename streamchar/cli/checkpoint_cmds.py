"""`streamchar checkpoint assemble`: a paper-preset generator from the public parts."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from streamchar.cli.common import ConfigOpt, console
from streamchar.config import load_config
from streamchar.errors import StreamcharError

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
    dtype: str = typer.Option("float32", "--dtype", help="float32, or bfloat16: built, loaded and written in half the memory"),
) -> None:
    """A paper-preset generator from local public weights, initialised as the paper says (audio
    experts copied from the video FFN); it streams with `generate --checkpoint OUT`."""
    from streamchar.model.assemble import Parts, assemble_checkpoint

    missing = [f"--{k.replace('_', '-')} {v}" for k, v in {"wan": wan, "qwen": qwen, "umt5": umt5, "video_vae": video_vae,
                                                             "audio_vae": audio_vae}.items() if not Path(v).is_dir()]  # fmt: skip
    if missing:
        raise StreamcharError("not a directory: " + ", ".join(missing))
    if dtype not in ("float32", "bfloat16"):
        raise StreamcharError(f"--dtype takes float32 or bfloat16; got {dtype!r}")
    import torch

    with console.status("assembling"):
        result = assemble_checkpoint(load_config("paper", config), Parts(wan, qwen, umt5, video_vae, audio_vae), out, seed,
                                     getattr(torch, dtype))  # fmt: skip
    console.print(f"assembled {out}: {result['tensors']} Wan tensors, {result['audio_experts_from_video_ffn']} audio-expert tensors "
                  f"copied from the video FFN, {result['qwen_layers']} Qwen layers, a tokenizer of {result['tokenizer_tokens']} tokens")  # fmt: skip
