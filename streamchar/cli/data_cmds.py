"""`streamchar data corpus` (SynthTalk's open-English text, its sizes and its splits) and
`streamchar data long` (ground-truth long streams)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from streamchar.cli.common import ConfigOpt, PresetOpt, clip_progress, console
from streamchar.config import load_config
from streamchar.errors import StreamcharError


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
