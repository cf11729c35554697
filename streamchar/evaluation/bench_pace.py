"""The stream's plan of when each word is spoken, against held-out clips' own timings.

A stream plans its words (model.alignment), and the tiny model speaks, and moves its lips, to
the plan. `fit_word_pace` fits the word-pace plan to a latent cache's training timings by least
squares (each word's time to the next word's start from its letters and the punctuation after
it); `bench_pace` reports how far each plan's word starts fall from a held-out split's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamchar.config import Config
from streamchar.config.schema import FPS, WordPaceConfig
from streamchar.data.latents import LatentCache
from streamchar.errors import StreamcharError
from streamchar.model.alignment import paced_word_times, word_pace_features, word_spans
from streamchar.model.tokenizer import make_tokenizer
from streamchar.training.windows import word_times


def _timed_words(records: list[dict]) -> list[tuple[dict, np.ndarray, list[tuple[float, float]]]]:
    """Records whose timed words are the tokenizer's words, with their pace features and times."""
    out = []
    for rec in records:
        if not rec.get("words"):
            continue
        feats, times = word_pace_features(rec["transcript"]), word_times(rec)
        if len(feats) and len(feats) == len(times):
            out.append((rec, feats, times))
    return out


def fit_word_pace(records: list[dict], fps: int = FPS) -> WordPaceConfig:
    """Least squares: a word's start to the next one's (its own length for the last word) from
    [1, letters, clause pause, sentence pause]; the lead is the mean first word's start, the tail
    the mean time from the last word's end to the clip's (records with a frame count)."""
    rows, targets, leads, tails = [], [], [], []
    for rec, feats, times in _timed_words(records):
        if "frames" in rec:
            tails.append(rec["frames"] / fps - times[-1][1])
        starts = np.array([a for a, _ in times])
        span = np.append(starts[1:], times[-1][1]) - starts
        rows.append(np.column_stack([np.ones(len(feats)), feats]))
        targets.append(span)
        leads.append(starts[0])
    if not rows:
        raise StreamcharError("no clip with word timings to fit a word pace to")
    coef, *_ = np.linalg.lstsq(np.concatenate(rows), np.concatenate(targets), rcond=None)
    word, letter, clause, sentence = (float(c) for c in coef)
    if letter <= 0:
        raise StreamcharError(f"the fitted time per letter is {letter:.4f} s; these timings do not grow with word length")
    tail = max(0.0, float(np.mean(tails))) if tails else WordPaceConfig.model_fields["tail_seconds"].default
    return WordPaceConfig(lead_seconds=max(0.0, float(np.mean(leads))), word_seconds=max(0.0, word), letter_seconds=letter,
                          clause_pause_seconds=max(0.0, clause), sentence_pause_seconds=max(0.0, sentence), tail_seconds=tail)


def plan_start_errors(records: list[dict], cfg: Config, pace: WordPaceConfig | None) -> np.ndarray:
    """Per clip, the mean |planned - true| word start (s): the word pace's plan, or with None
    the even one (`text_rate` tokens per latent from the stream's start)."""
    oc = cfg.orchestrator
    tokenizer = make_tokenizer(oc.tokenizer, oc.vocab_size)
    errors = []
    for rec, _, times in _timed_words(records):
        true = np.array([a for a, _ in times])
        if pace is not None:
            planned = np.array([a for a, _ in paced_word_times(rec["transcript"], pace)])
        else:
            firsts, _ = word_spans(tokenizer.encode(rec["transcript"]))
            planned = firsts / oc.text_rate / cfg.stream.audio_latent_rate
        errors.append(float(np.mean(np.abs(planned - true))))
    return np.array(errors)


def bench_pace(cache: Path, cfg: Config, split: str = "test-unseen") -> dict:
    """Fit on the cache's training clips; word-start errors of both plans on `split`."""
    if not cfg.orchestrator.text_rate:
        raise StreamcharError(f"the {cfg.preset} preset reads no plan (orchestrator.text_rate is 0): its pointer paces the stream")
    records = LatentCache(cache).records
    train = [r for r in records if r["split"] == "train"]
    held = [r for r in records if r["split"] == split]
    if not train or not held:
        raise StreamcharError(f"{cache} needs clips in the train split and in {split!r} (has {len(train)} and {len(held)})")
    pace = fit_word_pace(train)
    even, paced = plan_start_errors(held, cfg, None), plan_start_errors(held, cfg, pace)
    return {"benchmark": "pace", "cache": str(cache), "split": split, "train_clips": len(_timed_words(train)), "clips": len(even),
            "fitted_word_pace": pace.model_dump(),
            "word_start_error_s": {"even_text_rate": float(even.mean()), "word_pace": float(paced.mean())},
            "word_start_error_worst_clip_s": {"even_text_rate": float(even.max()), "word_pace": float(paced.max())}}
