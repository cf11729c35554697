"""`streamchar eval …`: the evaluation protocols and the SynthTalk evaluation networks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

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
    clip_progress,
    console,
    invoked_command,
    step_progress,
)
from streamchar.errors import StreamcharError

eval_app = typer.Typer(help="Evaluation: the paper's short and long protocols, and the networks they use on SynthTalk.", no_args_is_help=True)


def _train(kind: str, data: Path, run: Path, out: Path, steps: int, threads: int) -> None:
    import torch

    from streamchar.evaluation.train_nets import train_identity, train_sync

    torch.set_num_threads(threads)
    train = train_sync if kind == "sync" else train_identity
    with step_progress(f"training {kind} network", steps) as on_step:
        console.print(json.dumps(train(data, run, out, steps=steps, on_step=on_step, command=invoked_command())))


DataOpt = typer.Option(..., "--data", help="a SynthTalk set (train split to learn; identity: val split to set the threshold)")
RunOpt = typer.Option(..., "--run", help="folder for the training log and TensorBoard")
NetOutOpt = typer.Option(..., "--out", help="where the network is written")
NetStepsOpt = typer.Option(1500, "--steps", min=1)


@eval_app.command("train-sync")
def train_sync_cmd(data: Path = DataOpt, run: Path = RunOpt, out: Path = NetOutOpt, steps: int = NetStepsOpt, threads: int = ThreadsOpt) -> None:
    """Train the SynthTalk lip-sync network (SyncNet-style; shifted audio as negatives)."""
    _train("sync", data, run, out, steps, threads)


@eval_app.command("train-identity")
def train_identity_cmd(data: Path = DataOpt, run: Path = RunOpt, out: Path = NetOutOpt, steps: int = NetStepsOpt, threads: int = ThreadsOpt) -> None:
    """Train the SynthTalk identity embedding (which character is this?)."""
    _train("identity", data, run, out, steps, threads)


def _systems(data: Optional[Path], split: str, ground_truth: Optional[Path], videos: list[str], limit: int) -> dict:
    from streamchar.evaluation.items import folder_items, named_folders, synthtalk_items

    systems = {}
    if data is not None and ground_truth is not None:
        raise StreamcharError("give the ground truth either as --data (a SynthTalk set) or as --ground-truth (a folder), not both")
    if data is not None:
        systems["ground truth"] = synthtalk_items(data, split, limit)
    elif ground_truth is not None:
        systems["ground truth"] = folder_items(ground_truth, limit)
    for name, folder in named_folders(videos, taken=tuple(systems)).items():
        systems[name] = folder_items(folder, limit)
    if not systems:
        raise StreamcharError("nothing to evaluate: give --data or --ground-truth, and/or --videos NAME=FOLDER")
    return systems


def _run(protocol: str, systems: dict, out: Path, threads: int, syncnet_v2, identity_model, identity_threshold, inception, i3d, musiq, raft,
         asr: str = "auto", groups: dict[str, str] | None = None) -> None:
    import time

    import torch

    from streamchar.config import load_config
    from streamchar.evaluation.protocols import Scorers, run_protocol
    from streamchar.evaluation.quality import FrameQuality
    from streamchar.evaluation.report import write_report
    from streamchar.evaluation.scorers import FrechetFeatures, IdentityScorer, SyncScorer

    torch.set_num_threads(threads)
    cfg = load_config("tiny")
    scorers = Scorers(SyncScorer(syncnet_v2), IdentityScorer(identity_model, identity_threshold), FrechetFeatures(inception, i3d),
                      FrameQuality(musiq), raft)
    total = sum(len(v) for v in systems.values())
    t0 = time.perf_counter()
    with clip_progress(f"eval {protocol}") as update:
        done = [0]

        def on_item() -> None:
            done[0] += 1
            update(done[0], total)

        report = run_protocol(protocol, systems, scorers, cfg.stream.fps, on_item=on_item, asr=asr, groups=groups, threads=threads)
    report["wall_seconds"] = time.perf_counter() - t0
    paths = write_report(report, out)
    from streamchar.evaluation.report import markdown_table

    console.print(markdown_table(report))
    console.print(f"report: {paths['json']}\ntable: {paths['markdown']}\nplot: {paths['plot']}  ({report['wall_seconds']:.0f} s)")


SplitOpt = typer.Option("test-unseen", "--split", help="SynthTalk split used as ground truth (test-unseen: unseen sentences and characters)")
VideosOpt = typer.Option([], "--videos", help="NAME=FOLDER of generated MP4s (each with <name>.json: transcript, reference_image); repeatable")
SyncOpt = typer.Option(None, "--syncnet-v2", help="syncnet_v2.model (or .safetensors); default: the shipped synthtalk-sync")
IdOpt = typer.Option(None, "--identity-model", help="TorchScript face embedding (e.g. ArcFace); default: the shipped synthtalk-id")
IdThrOpt = typer.Option(
    None, "--identity-threshold", help="per-frame similarity threshold (default: 0.4 for a user model, calibrated for synthtalk-id)"
)
InceptionOpt = typer.Option(None, "--inception", help="TorchScript Inception (inception-2015-12-05.pt) for FID; default: FD-tinyvae")
I3dOpt = typer.Option(None, "--i3d", help="TorchScript I3D (i3d_torchscript.pt) for FVD; default: FD-tinyvae-video")
MusiqOpt = typer.Option(None, "--musiq", help="TorchScript MUSIQ for per-frame quality; default: SCC")
RaftOpt = typer.Option(None, "--raft", help="TorchScript RAFT for dynamic degree; default: OpenCV Farneback")
AsrOpt = typer.Option("auto", "--asr", help="the WER judge: auto (Whisper base when installed, else pocketsphinx), whisper (Whisper base, "
                      "from the eval extra), whisper:DIR (a local faster-whisper model) or pocketsphinx (closed vocabulary); "
                      "where Whisper judges, pocketsphinx's WER is a second column")


def _judge(asr: str) -> str:
    """The judge `--asr` names, checked (and `auto` decided) before any video or network is loaded."""
    from streamchar.evaluation.asr import resolve_asr

    return resolve_asr(asr)


@eval_app.command("short")
def eval_short(
    data: Optional[Path] = typer.Option(None, "--data", help="SynthTalk set whose split is the ground truth"),
    split: str = SplitOpt,
    ground_truth: Optional[Path] = typer.Option(None, "--ground-truth", help="or: a folder of ground-truth MP4s with their JSON"),
    videos: list[str] = VideosOpt,
    clips: int = typer.Option(150, "--clips", help="items per system (paper: 150)"),
    out: Path = typer.Option(Path("out/eval"), "--out", help="folder for eval-short.json/.md/.png"),
    threads: int = ThreadsOpt,
    syncnet_v2: Optional[Path] = SyncOpt, identity_model: Optional[Path] = IdOpt, identity_threshold: Optional[float] = IdThrOpt,
    inception: Optional[Path] = InceptionOpt, i3d: Optional[Path] = I3dOpt, musiq: Optional[Path] = MusiqOpt, raft: Optional[Path] = RaftOpt,
    asr: str = AsrOpt,
    by_voice: bool = typer.Option(False, "--by-voice", help="group the rows by each clip's voice (engine:name, e.g. flite:awb, "
                                  "a voice held out of training) instead of by its engine"),  # fmt: skip
) -> None:
    """Short-clip protocol (paper Table 1): WER beside ground truth's, Sync-C/D, identity, FID/FVD or FD-<name>;
    with --data, each row again for each speech engine's (or voice's) clips (the JSON's by_group)."""
    from streamchar.data.inspect import clip_engines

    asr = _judge(asr)
    _run("short", _systems(data, split, ground_truth, videos, clips), out, threads, syncnet_v2, identity_model, identity_threshold,
         inception, i3d, musiq, raft, asr, clip_engines(data, voice=by_voice) if data else None)


@eval_app.command("long")
def eval_long(
    ground_truth: Optional[Path] = typer.Option(None, "--ground-truth", help="folder of ground-truth long streams (`streamchar data long`)"),
    videos: list[str] = VideosOpt,
    streams: int = typer.Option(50, "--streams", help="streams per system (paper: 50)"),
    out: Path = typer.Option(Path("out/eval"), "--out", help="folder for eval-long.json/.md/.png"),
    threads: int = ThreadsOpt,
    syncnet_v2: Optional[Path] = SyncOpt, identity_model: Optional[Path] = IdOpt, identity_threshold: Optional[float] = IdThrOpt,
    inception: Optional[Path] = InceptionOpt, i3d: Optional[Path] = I3dOpt, musiq: Optional[Path] = MusiqOpt, raft: Optional[Path] = RaftOpt,
    asr: str = AsrOpt,
) -> None:
    """Long-stream protocol (paper Table 2): transcript coverage, identity, Quality Drift, Dynamic, with curves over time;
    each row again for each speech engine where the ground truth names its characters' engines."""
    from streamchar.data.long_streams import stream_engines

    asr = _judge(asr)
    _run("long", _systems(None, "", ground_truth, videos, streams), out, threads,
         syncnet_v2, identity_model, identity_threshold, inception, i3d, musiq, raft, asr, stream_engines(ground_truth) if ground_truth else None)


@eval_app.command("render")
def eval_render(
    out: Path = typer.Option(..., "--out", help="folder for <name>.mp4/.json/.png, evaluated with --videos NAME=FOLDER"),
    checkpoint: Optional[str] = CheckpointOpt,
    config: Optional[Path] = CheckpointConfigOpt,
    data: Optional[Path] = typer.Option(None, "--data", help="SynthTalk set: render its split's clips"),
    split: str = SplitOpt,
    ground_truth: Optional[Path] = typer.Option(None, "--ground-truth", help="or: long ground-truth streams (`streamchar data long`)"),
    clips: int = typer.Option(150, "--clips", min=1, help="items to render (paper: 150 short, 50 long)"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="denoising steps per chunk (default: the checkpoint's)"),
    no_sink: bool = typer.Option(False, "--no-sink", help="do not attend to the first chunk (ablation)"),
    guidance: float = typer.Option(1.0, "--guidance", help="classifier-free guidance on prompt and reference (1: off)"),
    text_guidance: float = typer.Option(1.0, "--text-guidance", help="guidance on the orchestrator's condition, for a model trained with "
                                        "train.condition_dropout (1: off; one more DiT pass per step)"),
    seed: int = SeedOpt,
    threads: int = ThreadsOpt,
    video_codec: Optional[Path] = VideoCodecOpt,
    audio_codec: Optional[Path] = AudioCodecOpt,
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
    memory_mode: str = MemoryModeOpt,
) -> None:
    """Stream a model's answer to every ground-truth item (same transcript, reference image, voice and prompt)."""
    import torch

    from streamchar.evaluation.render import long_render_items, render_items, synthtalk_render_items
    from streamchar.streaming.engine import SessionSettings
    from streamchar.streaming.placement import load_placed

    if (data is None) == (ground_truth is None):
        raise StreamcharError("give exactly one of --data (a SynthTalk split) or --ground-truth (long streams)")
    torch.set_num_threads(threads)
    pipe = load_placed(checkpoint, video_codec, audio_codec, config, device, dtype, memory_mode)
    items = synthtalk_render_items(data, split, pipe, clips) if data is not None else long_render_items(ground_truth, pipe, clips)  # type: ignore[arg-type]
    settings = SessionSettings(steps=steps or pipe.steps, sink=not no_sink, seed=seed, guidance=guidance, text_guidance=text_guidance)
    with clip_progress(f"rendering with {pipe.meta['name']} ({settings.steps} steps)") as update:
        summary = render_items(pipe, items, out, settings, on_progress=update)
    (out / "render.json").write_text(json.dumps({**summary, "checkpoint": pipe.meta["name"], "command": invoked_command()}, indent=1))
    console.print(json.dumps(summary))
