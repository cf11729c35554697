"""The one text normalisation used for every WER and coverage number."""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def normalize_words(text: str) -> list[str]:
    """Lower-case words; punctuation dropped, inner apostrophes kept ("it's" stays one word),
    hyphenated words split ("well-known" -> "well", "known"); a typographic apostrophe is one,
    as it is to the tokenizer ("don\u2019t" stays one word)."""
    return _WORD.findall(text.replace("\u2019", "'").lower())
