"""Transcript tokenizers, each giving every token the number of the word it belongs to, which the
progress-aware pointer turns into transcript positions.

- `characters` (tiny preset): the project's own; one token per character of the lower-cased
  text (letters, digits, space, common punctuation), with padding, start and end tokens.
  Words are counted as `normalize_words` counts them, so the pointer's word numbers agree
  with the word timings and with WER.
- `phonemes` (tiny, the alternative to `characters`): one token per phoneme of each word, from
  gruut's English lexicon with its learned guess for words the lexicon lacks, so that a small
  model need not learn English spelling to speak words it never saw; a word-boundary token and
  the pauses' punctuation between words.
- `qwen2` (paper preset): the Qwen2.5 tokenizer from its local directory (`AutoTokenizer`),
  word numbers from its character offsets.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

from streamchar.config import Config
from streamchar.errors import StreamcharError
from streamchar.model.phonemes import PHONEMES, require_gruut, word_phonemes
from streamchar.utils.files import in_folder
from streamchar.utils.text import word_matches


@dataclass(frozen=True)
class Tokens:
    ids: list[int]
    word_numbers: list[int]  # 1-based number of the word each token belongs to; 0 before the first word
    words: int

    def window(self, cut: int, lookahead: int, end: int | None = None) -> tuple[list[int], list[int], int]:
        """What the orchestrator reads once `cut` words are behind the history window: the tokens
        of words cut+1 .. cut+lookahead (and a start token), word numbers counted from the cut,
        and how many words that leaves; with `end`, no word after the `end`-th (Stage II's
        transcript cut where the pointer says the speech is). At least one token is kept, so
        that a tokenizer without a start token still leaves the pointer something to read.
        Training and streaming both cut here, so they agree."""
        keep = self.kept(cut, lookahead, end)
        last = self._last(cut, lookahead, end)
        return [self.ids[j] for j in keep], [max(0, self.word_numbers[j] - cut) for j in keep], max(0, min(self.words, last) - cut)

    @staticmethod
    def _last(cut: int, lookahead: int, end: int | None) -> int:
        return cut + lookahead if end is None else min(cut + lookahead, end)

    def kept(self, cut: int, lookahead: int, end: int | None = None) -> list[int]:
        """Indices of the tokens `window` keeps."""
        last = self._last(cut, lookahead, end)
        return [j for j, w in enumerate(self.word_numbers) if cut < w <= last or (j == 0 and w == 0)] or [len(self.ids) - 1]


def _word_numbers(text: str, spans: list[tuple[int, int]]) -> tuple[list[int], int]:
    """For each token span (start, end) in `text`, the number of words begun at or before its end."""
    starts = [m.start() for m in word_matches(text)]
    return [bisect.bisect_left(starts, end) for _, end in spans], len(starts)


class CharacterTokenizer:
    PAD, BOS, EOS = 0, 1, 2
    ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 .,;:!?'\"-()&/"

    def __init__(self, vocab_size: int):
        if vocab_size < 3 + len(self.ALPHABET):
            raise StreamcharError(f"the character tokenizer needs a vocabulary of at least {3 + len(self.ALPHABET)}, got {vocab_size}")
        self.vocab_size = vocab_size
        self._index = {c: 3 + i for i, c in enumerate(self.ALPHABET)}

    def encode(self, text: str) -> Tokens:
        clean = " ".join(text.replace("\u2019", "'").split())
        bad = sorted({c for c in clean.lower() if c not in self._index})
        if bad:
            raise StreamcharError(f"the transcript has characters the tokenizer cannot encode: {''.join(bad)!r} "
                                  f"(accepted: letters, digits, space and {self.ALPHABET[37:]})")  # fmt: skip
        low = clean.lower()
        numbers, words = _word_numbers(clean, [(i, i + 1) for i in range(len(low))])
        return Tokens([self.BOS] + [self._index[c] for c in low] + [self.EOS], [0] + numbers + [words], words)


class PhonemeTokenizer:
    """Each word as gruut pronounces it (`streamchar.model.phonemes`), one token per phoneme with
    its stress (70 en-us symbols fit the tiny vocabulary; stress shapes a word's length and
    loudness, and a token of its own would lengthen the text). Between words, the pauses'
    punctuation, then one word-boundary token; quotes and parentheses fold into one token, a
    dash is a pause but a hyphen inside a compound ("well-known") is only a boundary. Anything
    else outside words (a digit) gives no token: words are `word_matches`' alone."""

    PAD, BOS, EOS, BOUNDARY = 0, 1, 2, 3
    MARKS = ',;:.!?"-'
    _FOLDED = {"'": '"', "(": '"', ")": '"', "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"}

    def __init__(self) -> None:
        require_gruut()
        self._marks = {m: 4 + i for i, m in enumerate(self.MARKS)}
        self._phonemes = {p: 4 + len(self.MARKS) + i for i, p in enumerate(PHONEMES)}
        self.vocab_size = 4 + len(self.MARKS) + len(PHONEMES)

    def encode(self, text: str) -> Tokens:
        clean = text.replace("\u2019", "'")
        ids, spans, end = [self.BOS], [], 0
        for k, m in enumerate(word_matches(clean)):
            self._gap(clean, end, m.start(), k > 0, ids, spans)
            phonemes = [self._phonemes[p] for p in word_phonemes(m.group())]
            ids += phonemes
            spans += [(m.start(), m.end())] * len(phonemes)
            end = m.end()
        self._gap(clean, end, len(clean), False, ids, spans)
        numbers, words = _word_numbers(clean, spans)
        return Tokens(ids + [self.EOS], [0] + numbers + [words], words)

    def _gap(self, text: str, start: int, end: int, between: bool, ids: list[int], spans: list[tuple[int, int]]) -> None:
        """The tokens of text[start:end], the stretch before a word (`between`: after another)."""
        compound = between and text[start:end] == "-"
        last = None
        for i in range(start, end):
            mark = self._FOLDED.get(text[i], text[i])
            if mark in self._marks and mark != last and not compound:
                ids.append(self._marks[mark])
                spans.append((i, i + 1))
                last = mark
        if between:
            ids.append(self.BOUNDARY)
            spans.append((end - 1, end))


class QwenTokenizer:
    def __init__(self, directory: str | Path):
        from transformers import AutoTokenizer

        try:
            self.tok = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        except (OSError, ValueError) as e:
            raise StreamcharError(f"cannot load a tokenizer from {directory}: {str(e).splitlines()[0]}") from None
        if not self.tok.is_fast:
            raise StreamcharError(f"the tokenizer in {directory} is not a fast tokenizer (offsets are needed for word positions)")
        self.vocab_size, self.directory = len(self.tok), Path(directory)

    def save(self, directory: Path) -> None:
        self.tok.save_pretrained(str(directory))

    def encode(self, text: str) -> Tokens:
        clean = " ".join(text.split())
        enc = self.tok(clean, add_special_tokens=False, return_offsets_mapping=True)
        numbers, words = _word_numbers(clean, enc["offset_mapping"])
        return Tokens(list(enc["input_ids"]), numbers, words)


Tokenizer = CharacterTokenizer | PhonemeTokenizer | QwenTokenizer


def prompt_ids(tokenizer: Tokenizer, prompt: str, limit: int) -> list[int]:
    """The prompt's first `limit` tokens, which the orchestrator reads before the transcript
    window (§3.2: its text block is the prompt and the transcript); none for `limit` 0 or an
    empty prompt. Qwen's end with a line break; the project's own tokenizers drop their start
    and end tokens, the window bringing its own start token."""
    if limit <= 0 or not prompt.strip():
        return []
    clean = " ".join(prompt.split())
    if isinstance(tokenizer, QwenTokenizer):
        ids = list(tokenizer.tok(clean + "\n", add_special_tokens=False)["input_ids"])
    else:
        ids = tokenizer.encode(clean).ids[1:-1]
    return ids[:limit]


def with_prompt(prompt: list[int], ids: list[int], numbers: list[int]) -> tuple[list[int], list[int]]:
    """A window's token ids and word numbers with the prompt's tokens before them (word number 0,
    as the start token: nothing of the transcript). Positions into the window move by `len(prompt)`."""
    return prompt + ids, [0] * len(prompt) + numbers


def tokenizer_directory(cfg: Config, folder: Path | None) -> Path:
    """Where `cfg`'s Qwen2.5 tokenizer is (`folder`: a checkpoint's)."""
    return in_folder(str(cfg.orchestrator.tokenizer_directory), folder, "the qwen2 tokenizer", "orchestrator.tokenizer_directory")


def build_tokenizer(cfg: Config, folder: Path | None = None) -> Tokenizer:
    """The transcript tokenizer `cfg.orchestrator` names (`folder`: a checkpoint's, where a
    Qwen2.5 tokenizer may live)."""
    oc = cfg.orchestrator
    if oc.tokenizer == "characters":
        return CharacterTokenizer(oc.vocab_size)
    if oc.tokenizer == "phonemes":
        return check_vocabulary(PhonemeTokenizer(), cfg)
    return check_vocabulary(QwenTokenizer(tokenizer_directory(cfg, folder)), cfg)


def check_vocabulary(tokenizer: Tokenizer, cfg: Config) -> Tokenizer:
    """`tokenizer`, where every id it gives fits the orchestrator's embedding."""
    if tokenizer.vocab_size > cfg.orchestrator.vocab_size:
        where = f" at {tokenizer.directory}" if isinstance(tokenizer, QwenTokenizer) else ""
        raise StreamcharError(f"the tokenizer{where} has {tokenizer.vocab_size} tokens; the orchestrator embeds "
                              f"{cfg.orchestrator.vocab_size} (orchestrator.vocab_size)")  # fmt: skip
    return tokenizer
