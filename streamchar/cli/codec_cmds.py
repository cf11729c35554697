"""`streamchar codec train`: the tiny latent codecs, and the paper preset's audio VAE."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from streamchar.cli.common import ConfigOpt, PresetOpt, console, invoked_command, step_progress
from streamchar.config import Config, load_config
from streamchar.errors import StreamcharError

codec_app = typer.Typer(help="Latent codecs: train the tiny ones, or the paper preset's 49,152 Hz audio VAE.", no_args_is_help=True)


@codec_app.command("train")
def codec_train(
    kind: str = typer.Option(..., "--kind", help="video or audio"),
    data: Path = typer.Option(..., "--data", help="a SynthTalk set (its train split is used); paper: or a folder of WAV/FLAC files"),
    run: Path = typer.Option(..., "--run", help="folder for checkpoints, TensorBoard logs and the training log (resumed if present)"),
    out: Path = typer.Option(..., "--out", help="where the finished codec is written (model.safetensors + config.json; paper: "
                             "a diffusers AutoencoderOobleck folder)"),
    steps: int = typer.Option(6000, "--steps"),
    batch: int = typer.Option(8, "--batch"),
    lr: Optional[float] = typer.Option(None, "--lr", help="default: 1e-3 (tiny), 1.5e-4 (paper, Stable Audio Open's)"),
    max_clips: int = typer.Option(400, "--max-clips", help="training clips held in memory"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads"),
    init: Optional[str] = typer.Option(None, "--init", help="start from this codec's weights (tiny-video, tiny-audio or a directory; "
                                       "paper: a diffusers AutoencoderOobleck, e.g. Stable Audio Open's vae/)"),
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
    width: Optional[int] = typer.Option(None, "--width", help="paper audio VAE: decoder channels (default 128, Stable Audio Open's)"),
    multiples: Optional[str] = typer.Option(None, "--multiples", help="paper audio VAE: channel multiples per stage (default 1,2,4,8,16)"),
    segment: Optional[int] = typer.Option(None, "--segment", help="paper audio VAE: latents per training segment (default: a chunk, 33)"),
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Train a tiny codec on SynthTalk; rerun the same command to resume after an interruption.

    The video codec is built up from --init, one decoder part per run with --decoder-only: --reference, then
    --previous-latent, then blend gates trained alone (--frame-blend, then --blend-next, then --reblend, each with
    the ones before; --seam-loss weighs the change across blended frames). --anchor trains --init's encoder too,
    held near its latents, whose statistics stay --init's.

    With --preset paper: the 49,152 Hz audio VAE (diffusers' AutoencoderOobleck, hop 2048, 64 channels), from
    scratch or from --init (Stable Audio Open's VAE), for `checkpoint assemble --audio-vae OUT` (docs/paper-scale.md)."""
    cfg = load_config(preset, config)
    if cfg.preset == "paper":
        tiny_only = {"--mouth-crops": mouth_crops, "--decoder-only": decoder_only, "--reference": reference, "--previous-latent": previous_latent,
                     "--frame-blend": frame_blend, "--blend-next": blend_next, "--reblend": reblend, "--seam-loss": seam_loss, "--anchor": anchor}
        _paper_audio_vae(kind, data, run, out, cfg, [flag for flag, value in tiny_only.items() if value],
                         dict(steps=steps, batch=batch, lr=lr, max_clips=max_clips, threads=threads, init=init, width=width,
                              multiples=multiples, segment=segment))  # fmt: skip
        return
    if width is not None or multiples is not None or segment is not None:
        raise StreamcharError("--width, --multiples and --segment are for the paper preset's audio VAE (--preset paper)")
    from streamchar.training.codec_training import CodecSettings, check_settings, train_codec

    settings = CodecSettings(steps=steps, batch=batch, lr=1e-3 if lr is None else lr, max_clips=max_clips, threads=threads, init=init,
                             crop=crop or None, mouth_crops=mouth_crops, decoder_only=decoder_only, reference=reference,
                             previous_latent=previous_latent, frame_blend=frame_blend, blend_next=blend_next, reblend=reblend,
                             seam_loss=seam_loss, anchor=anchor)  # fmt: skip
    check_settings(kind, settings)  # before the progress bar shows
    with step_progress(f"training {kind} codec", steps) as on_step:
        summary = train_codec(kind, data, run, out, cfg, settings, on_step=on_step, command=invoked_command())
    console.print(json.dumps(summary))


def _paper_audio_vae(kind: str, data: Path, run: Path, out: Path, cfg: Config, tiny_flags: list[str], options: dict) -> None:
    from streamchar.training.codec_oobleck import LR, OobleckSettings, check_oobleck_settings, train_oobleck

    if tiny_flags:
        raise StreamcharError(f"{', '.join(tiny_flags)}: for the tiny codecs, not the paper preset's audio VAE")
    multiples = options.pop("multiples")
    try:
        parsed = tuple(int(m) for m in multiples.split(",")) if multiples is not None else None
    except ValueError:
        raise StreamcharError(f"--multiples takes whole numbers separated by commas, e.g. 1,2,4,8,16; got {multiples!r}") from None
    settings = OobleckSettings(**{**options, "lr": options["lr"] or LR, "multiples": parsed})
    check_oobleck_settings(kind, settings, cfg)  # before the progress bar shows
    with step_progress("training the paper audio VAE", settings.steps) as on_step:
        summary = train_oobleck(data, run, out, cfg, settings, on_step=on_step, command=invoked_command())
    console.print(json.dumps(summary))
