"""English pronunciations word by word, for the phoneme front end (`orchestrator.tokenizer: phonemes`).

A word is looked up in gruut's en-us lexicon, and a word the lexicon lacks is guessed by gruut's
grapheme-to-phoneme model, the two steps gruut's own `sentences()` takes for English. They are
taken here one word at a time because gruut's text processing would re-split and re-expand words
(hyphens, initialisms, numbers) and so change the word count the tokenizer shares with
`word_matches`. Neither step calls espeak-ng: the lexicon is a sqlite file and the model a
python-crfsuite file, both shipped in gruut-lang-en.
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import threading
from contextlib import closing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from streamchar.errors import StreamcharError

GRUUT = "gruut==2.4.0 and gruut-lang-en==2.0.1"
INSTALL = "pip install 'streamchar[phonemes]'"

_CONSONANTS = ("b", "d", "d͡ʒ", "f", "h", "j", "k", "l", "m", "n", "p", "s", "t", "t͡ʃ", "v", "w", "z", "ð", "ŋ", "ɡ", "ɹ", "ʃ", "ʒ", "θ")
_VOWELS = ("aɪ", "aʊ", "eɪ", "i", "oʊ", "u", "æ", "ɑ", "ɔ", "ɔɪ", "ɚ", "ɛ", "ɪ", "ʊ", "ʌ")  # each also with ˈ and ˌ
# gruut-lang-en's en-us symbols, lexicon and model alike: stress stays on its vowel (ˈæ, ˌæ), as gruut writes it
PHONEMES = tuple(sorted(_CONSONANTS + _VOWELS + ("ə",) + tuple(m + v for m in "ˈˌ" for v in _VOWELS)))


def require_gruut() -> None:
    """Fail at once, naming the install, where gruut or its English data is missing; found without
    importing, which costs most of a second."""
    missing = [name for name in ("gruut", "gruut_lang_en", "pycrfsuite") if importlib.util.find_spec(name) is None]
    if missing:
        raise StreamcharError(f"the phonemes tokenizer needs {GRUUT}, but {', '.join(missing)} is not installed; "
                              f"install them with: {INSTALL}")  # fmt: skip


@dataclass
class _Gruut:
    pid: int
    lexicon: Any  # gruut.phonemize.SqlitePhonemizer
    guess: Any  # gruut.g2p.GraphemesToPhonemes


_state: _Gruut | None = None
_lock = threading.Lock()


def _load() -> _Gruut:
    """gruut's lexicon and model, loaded once per process (a forked worker loads its own: sqlite
    connections must not cross a fork). The lexicon is copied into memory and indexed by word,
    since the shipped file has no index and each lookup would scan all of it. A word not found is
    looked up again without its apostrophes, as gruut does."""
    global _state
    if _state is not None and _state.pid == os.getpid():
        return _state
    require_gruut()
    try:
        import gruut_lang_en
        from gruut.g2p import GraphemesToPhonemes
        from gruut.phonemize import SqlitePhonemizer
        from gruut.utils import remove_non_word_chars
    except ImportError as e:
        raise StreamcharError(f"the phonemes tokenizer needs {GRUUT}, but gruut does not import ({e}); install them with: {INSTALL}") from None
    folder = gruut_lang_en.get_lang_dir()
    memory = sqlite3.connect(":memory:", check_same_thread=False)
    with closing(sqlite3.connect(f"{(folder / 'lexicon.db').as_uri()}?mode=ro", uri=True)) as shipped:
        shipped.backup(memory)
    memory.execute("CREATE INDEX word_index ON word_phonemes(word)")
    lexicon = SqlitePhonemizer(memory, word_transform_funcs=[remove_non_word_chars])
    _state = _Gruut(os.getpid(), lexicon, GraphemesToPhonemes(folder / "g2p" / "model.crf"))
    return _state


@lru_cache(maxsize=1 << 16)
def word_phonemes(word: str) -> tuple[str, ...]:
    """The phonemes of one lower-case word: the lexicon's (its part-of-speech-free entry, or its
    first), else the model's guess, else its letters spelled, so that every word is heard."""
    with _lock:
        g = _load()
        found = g.lexicon(word) or g.guess(word)
        if not found:
            found = [p for letter in word if letter.isalpha() for p in g.lexicon(letter, role="gruut:letter") or ()]
    unknown = sorted(set(found) - set(PHONEMES))
    if unknown:
        raise StreamcharError(f"gruut gave {word!r} the phonemes {unknown}, which are not in the phoneme inventory "
                              f"(made for {GRUUT}; install those versions with: {INSTALL})")  # fmt: skip
    return tuple(found)
