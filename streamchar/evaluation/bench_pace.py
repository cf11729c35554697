"""The stream's plan of when each word is spoken, against held-out clips' own timings.

A stream plans its words (model.alignment), and the tiny model speaks, and moves its lips, to
the plan. `fit_word_pace` fits the word-pace plans to a latent cache's training timings by least
squares (each word's time to the next word's start from its letters and the punctuation after
it; or espeak-ng's word timings stretched to the clips' pace); `bench_pace` reports how far each
plan's word starts fall from a held-out split's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from streamchar.config import Config
from streamchar.config.schema import FPS, WordPaceConfig
from streamchar.data.inspect import clip_engines
from streamchar.data.latents import LatentCache
from streamchar.errors import StreamcharError
from streamchar.model.alignment import espeak_word_times, paced_word_times, word_pace_features, word_spans
from streamchar.model.tokenizer import build_tokenizer
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


def fit_word_pace(records: list[dict], durations: Literal["letters", "espeak"] = "espeak", fps: int = FPS) -> WordPaceConfig:
    """Both plans' numbers, the plan `durations` names switched on. Letters: least squares of a
    word's start to the next one's (its own length for the last word) on [1, letters, clause
    pause, sentence pause]. espeak: least squares through the origin of each word's start after
    the first word's on espeak-ng's (at the default `espeak_rate`). The lead is the mean first
    word's start, the tail the mean time from the last word's end to the clip's (records with a
    frame count)."""
    rows, targets, leads, tails, spoken, heard = [], [], [], [], [], []
    default = WordPaceConfig.model_fields
    for rec, feats, times in _timed_words(records):
        if "frames" in rec:
            tails.append(rec["frames"] / fps - times[-1][1])
        starts = np.array([a for a, _ in times])
        span = np.append(starts[1:], times[-1][1]) - starts
        rows.append(np.column_stack([np.ones(len(feats)), feats]))
        targets.append(span)
        leads.append(starts[0])
        if durations == "espeak":
            e = np.array([a for a, _ in espeak_word_times(rec["transcript"], default["espeak_voice"].default, default["espeak_rate"].default)])
            spoken.append(e - e[0])
            heard.append(starts - starts[0])
    if not rows:
        raise StreamcharError("no clip with word timings to fit a word pace to")
    coef, *_ = np.linalg.lstsq(np.concatenate(rows), np.concatenate(targets), rcond=None)
    word, letter, clause, sentence = (float(c) for c in coef)
    if letter <= 0:
        raise StreamcharError(f"the fitted time per letter is {letter:.4f} s; these timings do not grow with word length")
    scale = 1.0
    if durations == "espeak":
        x, y = np.concatenate(spoken), np.concatenate(heard)
        if not np.any(x > 0):
            raise StreamcharError("these clips have one word each: nothing to fit espeak-ng's timing to")
        scale = float(x @ y / (x @ x))
    tail = max(0.0, float(np.mean(tails))) if tails else default["tail_seconds"].default
    return WordPaceConfig(durations=durations, lead_seconds=max(0.0, float(np.mean(leads))), word_seconds=max(0.0, word), letter_seconds=letter,
                          clause_pause_seconds=max(0.0, clause), sentence_pause_seconds=max(0.0, sentence), espeak_scale=scale, tail_seconds=tail)


Planner = Callable[[int, dict], list[tuple[float, float]]]  # (record index, record) -> each word's planned (start, end)


def rule_planner(cfg: Config, pace: WordPaceConfig | None) -> Planner:
    """The word pace's plan, or with None the even one (`text_rate` tokens per latent from the stream's start)."""
    oc, tokenizer = cfg.orchestrator, build_tokenizer(cfg)

    def plan(_: int, rec: dict) -> list[tuple[float, float]]:
        if pace is not None:
            return paced_word_times(rec["transcript"], pace)
        firsts, lasts = word_spans(tokenizer.encode(rec["transcript"]))
        rate = oc.plan.text_rate * cfg.stream.audio_latent_rate
        return list(zip((firsts / rate).tolist(), (lasts / rate).tolist()))

    return plan


def learned_planner(checkpoint: str | Path, cache: LatentCache) -> Planner:
    """A model's duration head, each clip timed for its own reference voice (from the cache)."""
    from streamchar.model.checkpoint import load_generator

    model, _, _ = load_generator(checkpoint)
    tokenizer = model.tokenizer or build_tokenizer(model.cfg)

    def plan(i: int, rec: dict) -> list[tuple[float, float]]:
        tokens = tokenizer.encode(rec["transcript"])
        voice = cache.tensors(i).get("reference_voice")
        if voice is None:
            raise StreamcharError(f"clip {rec['clip_id']} of {cache.root} has no reference voice for the learned plan to time it by")
        return model.orchestrator.word_times(tokens.ids, tokens.word_numbers, tokens.words, voice[None])

    return plan


def _planned_starts(records: list[tuple[int, dict]], planner: Planner) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per clip, its true word starts and the plan's."""
    out = []
    for i, rec in records:
        times = word_times(rec)
        planned = np.array([a for a, _ in planner(i, rec)])
        out.append((np.array([a for a, _ in times]), planned[: len(times)]))
    return out


def _start_errors(starts: list[tuple[np.ndarray, np.ndarray]], stretch: bool) -> np.ndarray:
    errors = []
    for true, planned in starts:
        if stretch and len(true) > 1:
            planned = np.polyval(np.polyfit(planned, true, 1), planned)
        errors.append(float(np.mean(np.abs(planned - true))))
    return np.array(errors)


def plan_start_errors(records: list[dict], cfg: Config, pace: WordPaceConfig | None, stretch: bool = False) -> np.ndarray:
    """Per clip, the mean |planned - true| word start (s): the word pace's plan, or with None
    the even one (`text_rate` tokens per latent from the stream's start). With `stretch` the
    plan is first moved and stretched to fit the clip's starts best (least squares): what is left
    is the plan's rhythm, not the speaker's rate, which a rule cannot know."""
    timed = [(i, rec) for i, (rec, _, _) in enumerate(_timed_words(records))]
    return _start_errors(_planned_starts(timed, rule_planner(cfg, pace)), stretch)


def bench_pace(cache: Path, cfg: Config, split: str = "test-unseen", checkpoint: str | Path | None = None) -> dict:
    """Fit the rule-based plans on the cache's training clips; word-start errors of every plan
    (with `checkpoint`, its learned one too) on `split`, over all clips and by speech engine."""
    if cfg.orchestrator.plan is None:
        raise StreamcharError(f"the {cfg.preset} preset reads no plan (orchestrator.reading is pointer): its pointer paces the stream")
    latents = LatentCache(cache)
    train = [r for r in latents.records if r["split"] == "train"]
    timed = {id(rec) for rec, _, _ in _timed_words(latents.records)}
    held = [(i, r) for i, r in enumerate(latents.records) if r["split"] == split and id(r) in timed]
    if not train or not held:
        raise StreamcharError(f"{cache} needs timed clips in the train split and in {split!r} (has {len(train)} and {len(held)})")
    pace = fit_word_pace(train, "espeak")
    plans = {"even_text_rate": rule_planner(cfg, None), "word_pace_letters": rule_planner(cfg, pace.model_copy(update={"durations": "letters"})),
             "word_pace_espeak": rule_planner(cfg, pace)}
    if checkpoint is not None:
        plans["learned"] = learned_planner(checkpoint, latents)
    starts = {k: _planned_starts(held, v) for k, v in plans.items()}  # each plan made once, measured both ways
    errors = {k: _start_errors(v, stretch=False) for k, v in starts.items()}
    stretched = {k: _start_errors(v, stretch=True) for k, v in starts.items()}
    named = clip_engines(Path(latents.settings.get("data", "")))
    engines = np.array([named.get(rec["clip_id"], "unknown") for _, rec in held])
    by_engine = {e: {"clips": int(np.sum(engines == e)), **{k: float(v[engines == e].mean()) for k, v in errors.items()}}
                 for e in sorted(set(engines))}
    return {"benchmark": "pace", "cache": str(cache), "split": split, "checkpoint": str(checkpoint) if checkpoint else None,
            "train_clips": len(_timed_words(train)), "clips": len(held), "fitted_word_pace": pace.model_dump(),
            "word_start_error_s": {k: float(v.mean()) for k, v in errors.items()},
            "word_start_error_by_engine_s": by_engine,
            "word_start_error_worst_clip_s": {k: float(v.max()) for k, v in errors.items()},
            "word_start_error_at_each_clips_rate_s": {k: float(v.mean()) for k, v in stretched.items()}}
