"""`streamchar data …`: your own clips as a training set (prepare), SynthTalk's text (corpus), long
ground-truth streams (long), SynthTalk sets (synth, inspect) and latent shards (encode)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from streamchar.cli.common import AudioCodecOpt, ConfigOpt, DeviceOpt, PresetOpt, VideoCodecOpt, WorkersOpt, clip_progress, console, err_console
from streamchar.config import load_config
from streamchar.config.load import override_config, read_overrides
from streamchar.errors import StreamcharError

data_app = typer.Typer(help="Make and inspect data sets (SynthTalk).", no_args_is_help=True)


@data_app.command("prepare")
def data_prepare_cmd(
    src: Path = typer.Option(..., "--in", help="folder of <name>.mp4 videos, each with its transcript <name>.txt", show_default=False),
    out: Path = typer.Option(..., "--out", help="the training folder (created; rerun to resume)", show_default=False),
    workers: int = typer.Option(1, "--workers", min=1, help="processes"),
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Your own talking-head footage as a training set: face-centred crops at the preset's size
    and 24 fps, audio resampled, word timings by forced alignment."""
    from streamchar.data.prepare import REPORT, prepare_folder

    with clip_progress("clips") as update:
        result = prepare_folder(src, out, load_config(preset, config), workers, on_progress=update)
    for name, reason in sorted(result["skipped"].items()):
        err_console.print(f"[yellow]skipped[/] {name}: {reason}")
    console.print(f"{len(result['prepared'])} clips prepared in {out}, {len(result['skipped'])} skipped (listed in {out / REPORT})")


@data_app.command("corpus")
def data_corpus_cmd(
    sources: str = typer.Option("harvard,everyday,wordnet,fortunes,chatterbot", "--sources", help="comma-separated text sources"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the counts as JSON"),
    split: Optional[str] = typer.Option(None, "--split", help="print this split's sentences (train, val, test, open), one a line, "
                                         "instead of the counts"),  # fmt: skip
) -> None:
    """Count the sentences and distinct words of SynthTalk's text by split and by source (the data card's numbers)."""
    from streamchar.data.corpus import corpus_sentences, corpus_stats

    chosen = tuple(s.strip() for s in sources.split(",") if s.strip())
    if not chosen:
        raise StreamcharError("--sources names no source; give e.g. harvard,everyday,wordnet,fortunes,chatterbot")
    if split is not None:
        for sentence in corpus_sentences(split, chosen):
            print(sentence)
        return
    stats = corpus_stats(chosen)
    table = Table(title="SynthTalk text")
    for column in ("", "sentences", "words", "distinct words"):
        table.add_column(column, justify="left" if not column else "right")
    for key, row in stats.items():
        table.add_row(key, str(row["sentences"]), str(row["words"]), str(row["distinct_words"]))
    console.print(table)
    if "open" in stats:
        console.print(f"open split: {stats['open']['distinct_words_not_in_train']} of its distinct words never occur in train")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"sources": list(chosen), "splits": stats}, indent=1))


@data_app.command("long")
def data_long_cmd(
    out: Path = typer.Option(..., "--out", help="folder for the streams (<name>.mp4, .json, .png); existing streams are kept"),
    streams: int = typer.Option(50, "--streams", min=1, help="number of streams (paper: 50)"),
    seconds: float = typer.Option(300.0, "--seconds", min=1.0, help="length of each stream (paper: five minutes)"),
    seed: int = typer.Option(0, "--seed", help="the seed of the SynthTalk set whose unseen characters speak"),
    split: str = typer.Option("test", "--split", help="whose sentences they speak: test, or open (the held-out source; "
                              "needs chatterbot in synthtalk.text)"),  # fmt: skip
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
) -> None:
    """Ground-truth long streams for `eval long`: unseen characters speaking test (or open) sentences, stitched from clips."""
    from streamchar.data.long_streams import write_long_streams

    cfg = load_config(preset, config)
    with clip_progress("long streams") as update:
        paths = write_long_streams(out, streams, seconds, seed, cfg, split=split, on_progress=update)
    console.print(f"{len(paths)} streams in {out}")


@data_app.command("synth")
def data_synth(
    out: Path = typer.Option(..., "--out", help="folder for the set (created; an unfinished set there is resumed)"),
    clips: int = typer.Option(..., "--clips", min=1, help="number of clips"),
    seed: int = typer.Option(0, "--seed", help="the same seed gives the same data"),
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
    workers: Optional[int] = WorkersOpt,
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
    if seconds is not None and not 0 < seconds <= cfg.synthtalk.max_seconds:  # the bound is the config's
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


@data_app.command("encode")
def data_encode(
    data: Optional[Path] = typer.Option(None, "--data", help="a SynthTalk set or a folder of real clips (`data prepare`)"),
    speech: Optional[Path] = typer.Option(None, "--speech", help="instead: speech alone for Stage 1, a folder of <name>.wav|flac|mp3 with "
                                          "<name>.txt (nested folders: the speaker's) or a JSONL manifest of {audio, text, speaker}"),
    out: Path = typer.Option(..., "--out", help="folder for the latent shards (resumed if present)"),
    video_codec: Optional[Path] = VideoCodecOpt,
    audio_codec: Optional[Path] = AudioCodecOpt,
    preset: Optional[str] = PresetOpt,
    config: Optional[Path] = ConfigOpt,
    device: str = DeviceOpt,
) -> None:
    """Encode a data set once into latent shards (safetensors), timings carried over; or a speech
    corpus, its words timed by forced alignment, into a speech-only cache (`train orchestrator --data`)."""
    from streamchar.codecs.store import DEFAULT, load_audio_codec, load_video_codec
    from streamchar.streaming.placement import resolve_device

    if (data is None) == (speech is None):
        raise StreamcharError("give --data (clips with video) or --speech (a speech corpus), one of them")
    on = resolve_device(device)  # the codecs' device; they stay float32 (the latents are the models' training data)
    cfg = load_config(preset, config)
    audio = load_audio_codec(cfg, audio_codec).to(on)
    if speech is not None:
        from streamchar.data.speech_corpus import encode_speech

        with clip_progress("encoding utterances") as update:
            summary = encode_speech(speech, out, cfg, audio, str(audio_codec or DEFAULT["audio"]), on_progress=update)
        _list_skipped(Path(summary["skipped_list"]))
        console.print(json.dumps(summary))
        return
    from streamchar.data.latents import encode_dataset

    video = load_video_codec(cfg, video_codec).to(on)
    names = {"video": str(video_codec or DEFAULT["video"]), "audio": str(audio_codec or DEFAULT["audio"])}
    with clip_progress("encoding clips") as update:
        summary = encode_dataset(data, out, cfg, video, audio, names, on_progress=update)
    console.print(json.dumps(summary))


def _list_skipped(path: Path, shown: int = 20) -> None:
    """The utterances left out, each with its reason."""
    rows = json.loads(path.read_text())
    for row in rows[:shown]:
        console.print(f"skipped {row['utterance']}: {row['reason']}", markup=False, highlight=False)
    if len(rows) > shown:
        console.print(f"... and {len(rows) - shown} more, all in {path}", markup=False, highlight=False)
