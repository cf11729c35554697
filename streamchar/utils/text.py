"""The one text normalisation used for every WER and coverage number, and for the tokenizer's
word count and the stream's word plan, so that all of them count the same words."""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def word_matches(text: str) -> list[re.Match[str]]:
    """The text's words as matches on its lower-cased form (a typographic apostrophe read as
    one; both keep the text's length, so the spans are the text's own)."""
    return list(_WORD.finditer(text.replace("\u2019", "'").lower()))


def normalize_words(text: str) -> list[str]:
    """Lower-case words; punctuation dropped, inner apostrophes kept ("it's" stays one word),
    hyphenated words split ("well-known" -> "well", "known"); a typographic apostrophe is one,
    as it is to the tokenizer ("don\u2019t" stays one word)."""
    return [m.group() for m in word_matches(text)]
