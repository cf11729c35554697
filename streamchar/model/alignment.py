"""Where in the transcript each audio latent is: the positions the plan's text bias points from
(`orchestrator.reading: plan`), as one map for training and streaming.

Training knows where each latent is from the clip's word timings: a word's tokens are read
from its start to its end, the space after it during the pause that follows. Streaming has no
timings for speech not yet made, so it plans them, and the model, trained to speak the tokens
its latents point at, speaks to the plan. With `word_pace` the plan times each word, by
espeak-ng's phoneme durations or by its letters, and pauses at punctuation: the rhythm
training's timings had (docs/tiny-scale.md). The same plan cuts the history's finished words
and says when the last word is spoken. Positions are global (token 0 is the transcript's first)
and are carried into the window the orchestrator reads by `window_positions`.
"""

from __future__ import annotations

import bisect

import numpy as np

from streamchar.config.schema import WordPaceConfig
from streamchar.data.speech import Voice, speakable_text, spoken_word_times, transcript_words
from streamchar.model.tokenizer import Tokens
from streamchar.utils.text import word_matches

EPS = 1e-4  # s: keeps the time knots strictly increasing where one word ends as the next begins


def word_spans(tokens: Tokens) -> tuple[np.ndarray, np.ndarray]:
    """Each word's first token and its last (the space or punctuation before the next word,
    the end token after the last word)."""
    numbers = np.asarray(tokens.word_numbers)
    firsts = np.searchsorted(numbers, np.arange(1, tokens.words + 1), side="left")
    lasts = np.append(firsts[1:] - 1, len(numbers) - 1)
    return firsts.astype(np.float64), lasts.astype(np.float64)


def spoken_positions(tokens: Tokens, times: list[tuple[float, float]], at: np.ndarray) -> np.ndarray:
    """The global token position spoken at each time in `at` (s), from each word's (start, end):
    the transcript's start token before the first word, its last token after the last."""
    firsts, lasts = word_spans(tokens)
    n = min(len(times), len(firsts))
    if n == 0:
        return np.zeros(len(at))
    knots_t, knots_p = [min(0.0, times[0][0] - EPS)], [0.0]
    for (start, end), first, last in zip(times[:n], firsts[:n], lasts[:n]):
        start = max(start, knots_t[-1] + EPS)
        knots_t += [start, max(end, start + EPS)]
        knots_p += [first, last]
    return np.interp(at, knots_t, knots_p)


def planned_positions(first_latent: int, count: int, rate: float) -> np.ndarray:
    """The stream's plan: latent g (counted from the stream's start) reads token g * rate."""
    return (first_latent + np.arange(count)) * rate


def transcript_word_spans(text: str) -> list[tuple[int, int]]:
    """Where in `text` each of the tokenizer's words stands (character start, end)."""
    return [m.span() for m in word_matches(text)]


def word_pace_features(text: str) -> np.ndarray:
    """Per transcript word (the tokenizer's words): letters, and whether a clause's or a
    sentence's punctuation stands between it and the next word (none after the last word:
    nothing follows it to pause for)."""
    matches = word_matches(text)
    out = np.zeros((len(matches), 3))
    for i, m in enumerate(matches):
        gap = text[m.end() : matches[i + 1].start()] if i + 1 < len(matches) else ""
        sentence = any(c in gap for c in ".!?")
        clause = any(c in gap for c in ",;:") or ("-" in gap and " " in gap)  # a dash between words, not inside one
        out[i] = (len(m.group()) - m.group().count("'"), float(clause and not sentence), float(sentence))
    return out


def paced_word_times(text: str, pace: WordPaceConfig, start: float = 0.0) -> list[tuple[float, float]]:
    """Each word's planned (start, end) in seconds, the first after `pace.lead_seconds` from `start`."""
    if pace.durations == "espeak":
        spoken = espeak_word_times(text, pace.espeak_voice, pace.espeak_rate)
        t0 = start + pace.lead_seconds - pace.espeak_scale * (spoken[0][0] if spoken else 0.0)
        return [(t0 + pace.espeak_scale * a, t0 + pace.espeak_scale * b) for a, b in spoken]
    t, times = start + pace.lead_seconds, []
    for letters, clause, sentence in word_pace_features(text).tolist():
        end = t + pace.word_seconds + pace.letter_seconds * letters
        times.append((t, end))
        t = end + pace.clause_pause_seconds * clause + pace.sentence_pause_seconds * sentence
    return times


def espeak_word_times(text: str, voice: str, rate: int) -> list[tuple[float, float]]:
    """Each transcript word's (start, end) as espeak-ng speaks the text. A word the tokenizer
    splits where espeak does not ("well-known") shares its espeak word's time by letters."""
    text = speakable_text(text)
    words = word_matches(text)
    if not words:
        return []
    spoken = transcript_words(text)
    timed = spoken_word_times(text, Voice(name=voice, rate=rate))
    starts = [c0 for _, c0, _ in spoken]
    out = []
    for m in words:
        k = bisect.bisect_right(starts, m.start()) - 1
        (_, c0, c1), w = spoken[k], timed[k]
        out.append(tuple(w.start + (w.end - w.start) * (c - c0) / (c1 - c0) for c in m.span()))
    return out


def words_done(tokens: Tokens, position: float) -> int:
    """Words whose last token lies at or before `position`."""
    _, lasts = word_spans(tokens)
    return int(np.sum(lasts <= position + 1e-6))


def window_positions(tokens: Tokens, cut: int, lookahead: int, positions: np.ndarray, end: int | None = None) -> np.ndarray:
    """Global positions carried into the window `Tokens.window(cut, lookahead, end)` reads: a
    position between two kept tokens falls between their window indices (one in the cut-away
    words between the start token and the first kept one), one past the window onto its last token."""
    keep = tokens.kept(cut, lookahead, end)
    return np.interp(positions, np.asarray(keep, dtype=np.float64), np.arange(len(keep), dtype=np.float64))
