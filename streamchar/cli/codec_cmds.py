"""`streamchar codec train`: the tiny latent codecs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from streamchar.cli.common import ConfigOpt, PresetOpt, console, invoked_command, step_progress
from streamchar.config import load_config

codec_app = typer.Typer(help="Latent codecs: train the tiny ones.", no_args_is_help=True)


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
