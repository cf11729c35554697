"""How a stream reads its transcript (`orchestrator.reading`): which words it holds, where each
audio latent is in them, where the history window cuts the words already spoken, how many words
each chunk has spoken and when the stream ends.

- `PointerReader` (the paper's): the orchestrator's progress pointer says how many words are
  spoken; the history is cut at the pointer's word for the chunk before the window, and the
  stream ends one chunk after the pointer reaches the last word.
- `PlanReader` (`reading: plan` without `word_pace`): a plan places every latent in the text at one
  even pace, `text_rate` tokens per latent; the plan cuts the history and counts the words.
- `WordPlanReader` (`reading: plan` with `word_pace`): the plan times each word (by the
  orchestrator's duration head, its letters or espeak-ng's phonemes), a piece at a time as the
  stream goes, and ends the stream `tail_seconds` after the last word.
- `PlanPointerReader` (`reading: plan-pointer`, the tiny preset): the word plan places each
  latent, and the pointer reads back where the speech is at each chunk's end: that reading counts
  the words spoken, cuts the history, says when the last word is spoken, and re-times the words
  not yet begun when it and the plan disagree.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from streamchar.config import Config
from streamchar.errors import StreamcharError
from streamchar.model.alignment import (
    paced_word_times,
    planned_positions,
    spoken_positions,
    transcript_word_spans,
    window_positions,
    word_spans,
    words_done,
)
from streamchar.model.tokenizer import CharacterTokenizer, Tokens
from streamchar.streaming.inputs import check_transcript
from streamchar.utils.spoken import to_spoken

PLAN_AHEAD_SECONDS = 10.0  # the word plan reaches at least this far past the chunk being made
PLAN_PIECE_WORDS = 64  # words timed at once, so that a long script does not hold the first chunk back
PLAN_CONTEXT_WORDS = 8  # words timed with a piece before and after it (and dropped), so that it is timed as spoken among them
RETIME_DEADBAND_SECONDS = 0.25  # plan and reading this close agree: the plan is left as it is
RETIME_GAIN = 0.5  # share of the disagreement the words ahead are moved by, each chunk
RETIME_MOST_SECONDS = 1.0  # most the words ahead move after one chunk
OVERRUN_CHUNKS = 2  # chunks a stream may run past its plan's end while the reading has not heard the last word

WordTimer = Callable[[str], list[tuple[float, float]]]  # a text's words' (start, end), s from its start


class TranscriptReader:
    """The transcript, its tokens and the words spoken by the end of each chunk made (`spoken`);
    each reading mode says where the history is cut, where latents are in the text, how many
    words a chunk spoke and which words an interrupt keeps."""

    reads_pointer = False  # whether the orchestrator's pointer decides how many words are spoken

    def __init__(self, cfg: Config, tokenizer: CharacterTokenizer):
        self.cfg, self.tokenizer = cfg, tokenizer
        self.transcript = ""  # the spoken form (utils.spoken), which the model reads
        self.shown_words: list[str] = []  # what a viewer reads for each of its words (Spoken.shown_words)
        self.tokens: Tokens = tokenizer.encode("")
        self.spoken: list[float] = []

    @property
    def words_total(self) -> int:
        return self.tokens.words

    def spans(self) -> list[tuple[int, int]]:
        return transcript_word_spans(self.transcript)

    @property
    def seconds_made(self) -> float:
        """Stream time covered by the chunks made: when the next chunk starts."""
        return len(self.spoken) * self.cfg.stream.chunk_seconds

    def window_start(self) -> int:
        """The first chunk of the history window the next chunk reads."""
        return max(0, len(self.spoken) - self.cfg.stream.history_chunks)

    # text ---------------------------------------------------------------------------------
    def append(self, text: str) -> None:
        """Extend the transcript; the next chunk reads the new words. Text that cannot be taken
        (empty, nothing to speak, a plan that failed) leaves it as it was. The text is read aloud by
        the normaliser first: "3" is spoken as "three"."""
        spoken = to_spoken(check_transcript(text))
        if not spoken.sources:
            raise StreamcharError(f"the text {text[:40]!r} has no words to speak (give English words, numbers or symbols such as $ or %)")
        joined = f"{self.transcript} {spoken.text}".strip()
        tokens = self.tokenizer.encode(joined)
        old = self.transcript, self.tokens, len(self.shown_words)
        self.transcript, self.tokens = joined, tokens
        self.shown_words += spoken.shown_words()
        try:
            self._extended()
        except BaseException:
            self.transcript, self.tokens = old[:2]
            del self.shown_words[old[2] :]
            raise

    def _extended(self) -> None:
        """Called after text is appended (the word plan times the new words here)."""

    def interrupt(self) -> int:
        """Drop the words not begun when the next chunk starts; the word being spoken then is
        kept. The kept words end as a sentence, as every transcript the model learned from did.
        Returns the number of words kept."""
        spans = self.spans()
        keep = min(self._begun(), len(spans))
        if keep:
            end = spans[keep][0] if keep < len(spans) else len(self.transcript)
            tail = self.transcript[spans[keep - 1][1] : end].rstrip()
            self.transcript = self.transcript[: spans[keep - 1][1]] + (tail if any(c in tail for c in ".!?") else ".")  # "canoe," -> "canoe."
        else:
            self.transcript = ""
        self.tokens = self.tokenizer.encode(self.transcript)
        del self.shown_words[keep:]
        self._truncated(keep)
        return keep

    def _begun(self) -> int:
        """Words begun when the next chunk starts."""
        raise NotImplementedError

    def _truncated(self, keep: int) -> None:
        """Called after an interrupt kept `keep` words."""

    def word_times(self, first: int = 0) -> list[tuple[float, float]]:
        """The planned (start, end) of words `first`.. (s from the stream's start); empty for readers without timings."""
        return []

    # per chunk ----------------------------------------------------------------------------
    def prepare(self) -> None:
        """Called before each chunk."""

    def cut(self) -> int:
        """Words spoken before the history window, which the orchestrator no longer reads."""
        raise NotImplementedError

    def positions(self, cut: int, first_latent: int, count: int, end: int | None = None) -> np.ndarray | None:
        """Where `count` latents from `first_latent` on are in the window cut at `cut` words (and
        at `end`, `Tokens.window`); None where the orchestrator's positions run on in sequence."""
        return None

    def finish_chunk(self, cut: int, pointer: float) -> float:
        """Record the words spoken by the end of the chunk just made (`pointer`: the
        orchestrator's count since `cut`) and return them; speech does not go backwards."""
        spoken = min(float(self.words_total), float(cut + self._progress(cut, pointer)))
        if self.spoken:
            spoken = max(spoken, self.spoken[-1])
        self.spoken.append(spoken)
        return spoken

    def _progress(self, cut: int, pointer: float) -> float:
        """Words spoken since the cut by the end of the chunk just made."""
        raise NotImplementedError

    def end_seconds(self) -> float | None:
        """When the stream ends (s from its start) where a plan says so; None: one closing chunk
        after the last word is spoken."""
        return None


class PointerReader(TranscriptReader):
    """The paper's: the orchestrator's progress pointer counts the words spoken."""

    reads_pointer = True

    def _begun(self) -> int:
        return math.ceil(self.spoken[-1] - 1e-6) if self.spoken else 0

    def cut(self) -> int:
        """The pointer's word for the chunk before the history window."""
        first = self.window_start()
        return math.floor(self.spoken[first - 1]) if first > 0 else 0

    def _progress(self, cut: int, pointer: float) -> float:
        return pointer


class PlanReader(TranscriptReader):
    """Every latent placed in the text by a plan, here one even pace of `text_rate` tokens per latent."""

    reads_pointer = False

    def _plan(self, first_latent: int, count: int) -> np.ndarray:
        """Global transcript positions the plan gives `count` latents from `first_latent` on."""
        return planned_positions(first_latent, count, self.cfg.orchestrator.plan.text_rate)

    def _latent(self, chunk: int) -> int:
        return chunk * self.cfg.stream.chunk_audio_latents

    def _begun(self) -> int:
        spoken = self._plan(self._latent(len(self.spoken)), 1)[0]
        return int(np.sum(word_spans(self.tokens)[0] <= spoken))

    def cut(self) -> int:
        """Words the plan has finished at the history window's start."""
        return words_done(self.tokens, float(self._plan(self._latent(self.window_start()), 1)[0]))

    def positions(self, cut: int, first_latent: int, count: int, end: int | None = None) -> np.ndarray:
        return window_positions(self.tokens, int(cut), self.cfg.orchestrator.lookahead_words, self._plan(first_latent, count), end)

    def _progress(self, cut: int, pointer: float) -> float:
        end = self._plan(self._latent(len(self.spoken) + 1), 1)[0]
        return words_done(self.tokens, float(end)) - cut


class WordPlanReader(PlanReader):
    """The plan times each word (`word_pace`), a piece at a time: a half-hour script timed at
    once would hold the first chunk back by seconds."""

    def __init__(self, cfg: Config, tokenizer: CharacterTokenizer, timer: WordTimer | None = None):
        super().__init__(cfg, tokenizer)
        self.pace = cfg.orchestrator.plan.word_pace
        if timer is None and self.pace.durations == "learned":
            raise StreamcharError("the learned word plan needs the model's duration head and the reference voice to time words")
        self.timer: WordTimer = timer or (lambda text: paced_word_times(text, self.pace))
        self._times: list[tuple[float, float]] = []  # each planned word's (start, end), s from the stream's start

    def word_times(self, first: int = 0) -> list[tuple[float, float]]:
        return list(self._times[first:])

    def _plan(self, first_latent: int, count: int) -> np.ndarray:
        centres = (first_latent + np.arange(count) + 0.5) / self.cfg.stream.audio_latent_rate
        return spoken_positions(self.tokens, self._times, centres)

    def _extended(self) -> None:
        planned = len(self._times)
        try:
            self.prepare()
        except BaseException:  # a plan that failed (espeak-ng) takes none of the text
            del self._times[planned:]
            raise

    def _begun(self) -> int:
        return sum(1 for a, _ in self._times if a < self.seconds_made)

    def _truncated(self, keep: int) -> None:
        del self._times[keep:]

    def prepare(self) -> None:
        """Time the words up to `PLAN_AHEAD_SECONDS` past the next chunk's end."""
        spans = self.spans()
        horizon = (len(self.spoken) + 1) * self.cfg.stream.chunk_seconds + PLAN_AHEAD_SECONDS
        while len(self._times) < len(spans) and (not self._times or self._times[-1][1] < horizon):
            if not self._plan_piece(spans):
                break

    def _plan_piece(self, spans: list[tuple[int, int]]) -> bool:
        """Time the next words, through the first sentence end after `PLAN_PIECE_WORDS` of them
        (at most twice as many). Planned words keep their times. New ones are timed among the
        words around them, so that the pause after the last planned word counts, and follow it, or
        start when the next chunk does if the plan has run out of words by then. False when the
        piece held no word to time."""
        done, n = len(self._times), len(spans)
        upto = min(done + PLAN_PIECE_WORDS, n)
        while upto < min(done + 2 * PLAN_PIECE_WORDS, n) and not any(c in self.transcript[spans[upto - 1][1] : spans[upto][0]] for c in ".!?"):
            upto += 1
        context = min(done, PLAN_CONTEXT_WORDS)
        since = spans[done - context][0] if done else 0
        after = min(upto + PLAN_CONTEXT_WORDS, n)  # and the words after them, timed and left for the next piece
        until = spans[after][0] if after < n else len(self.transcript)
        part = self.timer(self.transcript[since:until])
        new = part[context : context + upto - done]
        if not new:
            return False
        now = self.seconds_made
        shift = max(0.0, now - new[0][0])  # a live stream's first words, given after it began, start when the next chunk does
        if done:
            shift = max(self._times[-1][1] - part[context - 1][1], now - new[0][0])
        self._times += [(a + shift, b + shift) for a, b in new]
        return True

    def end_seconds(self) -> float | None:
        """`tail_seconds` after the last word (infinity while words are still to be planned)."""
        if not self._times:
            return None
        if len(self._times) < self.words_total:
            return math.inf
        return self._times[-1][1] + self.pace.tail_seconds


class PlanPointerReader(WordPlanReader):
    """The word plan places the latents; the pointer's reading at each chunk's end counts the
    words spoken, cuts the history (never past a word the plan has not finished), ends the stream
    and, where it and the plan disagree by more than `RETIME_DEADBAND_SECONDS`, moves the words not
    yet begun toward it."""

    reads_pointer = True

    def _progress(self, cut: int, pointer: float) -> float:
        return pointer

    def cut(self) -> int:
        first = self.window_start()
        read = math.floor(self.spoken[first - 1] + 1e-6) if first > 0 else 0
        return min(read, super().cut())

    def finish_chunk(self, cut: int, pointer: float) -> float:
        """A reading within half a word of the last is the whole transcript (the engine's end):
        the pointer's estimate of the last word is a fraction short of it."""
        spoken = super().finish_chunk(cut, pointer)
        if spoken >= self.words_total - 0.5:
            spoken = self.spoken[-1] = float(self.words_total)
        self._retime(spoken)
        return spoken

    def _truncated(self, keep: int) -> None:
        """The plan decides which words an interrupt keeps (the model speaks to it); a reading
        past them is brought back, so that the words given next are counted from there."""
        super()._truncated(keep)
        self.spoken = [min(s, float(keep)) for s in self.spoken]

    def lag_seconds(self, reading: float) -> float:
        """How far the speech is behind the plan at the end of the chunks made (negative: ahead):
        that time less the time the plan finishes `reading` words."""
        knots = [self._times[0][0]] + [b for _, b in self._times]
        return self.seconds_made - float(np.interp(reading, np.arange(len(knots)), knots))

    def _retime(self, reading: float) -> None:
        if not self._times:
            return
        lag = self.lag_seconds(reading)
        if abs(lag) < RETIME_DEADBAND_SECONDS:
            return
        now = self.seconds_made
        ahead = next((i for i, (a, _) in enumerate(self._times) if a >= now), len(self._times))
        if ahead == len(self._times):
            return
        shift = float(np.clip(RETIME_GAIN * lag, -RETIME_MOST_SECONDS, RETIME_MOST_SECONDS))
        floor = max(now, self._times[ahead - 1][1] if ahead else 0.0)
        shift = max(shift, floor - self._times[ahead][0])  # not before now, nor into the word before
        self._times[ahead:] = [(a + shift, b + shift) for a, b in self._times[ahead:]]

    def end_seconds(self) -> float | None:
        """The plan's end, moved by the reading: a tail after the chunk in which the reading heard
        the last word at the latest, and while it has not, a chunk at a time past the plan's end
        (at most `OVERRUN_CHUNKS`)."""
        end = super().end_seconds()
        if end is None or math.isinf(end) or not self.spoken:
            return end
        period, made = self.cfg.stream.chunk_seconds, self.seconds_made
        if self.spoken[-1] >= self.words_total:  # (`finish_chunk` counts a reading within half a word of the end as all)
            return min(end, made + self.pace.tail_seconds)
        if end <= made < end + OVERRUN_CHUNKS * period:
            return made + period
        return end


def make_reader(cfg: Config, tokenizer: CharacterTokenizer, timer: WordTimer | None = None) -> TranscriptReader:
    """The reader `orchestrator.reading` names; `timer` times words for the learned plan."""
    plan = cfg.orchestrator.plan
    if cfg.orchestrator.reading == "pointer":
        return PointerReader(cfg, tokenizer)
    if cfg.orchestrator.reading == "plan-pointer":
        return PlanPointerReader(cfg, tokenizer, timer)
    return WordPlanReader(cfg, tokenizer, timer) if plan.word_pace is not None else PlanReader(cfg, tokenizer)
