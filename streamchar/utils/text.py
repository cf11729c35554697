"""The one way words are counted, used for every WER and coverage number, and for the tokenizer's
word count and the stream's word plan, so that all of them count the same words. Typed text is
first read aloud by the normaliser (`utils.spoken`): "3" and "three" are the same word."""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def word_matches(text: str) -> list[re.Match[str]]:
    """The text's words as matches on its lower-cased form (a typographic apostrophe read as
    one; both keep the text's length, so the spans are the text's own)."""
    return list(_WORD.finditer(text.replace("\u2019", "'").lower()))


def normalize_words(text: str) -> list[str]:
    """The spoken form's lower-case words; punctuation dropped, inner apostrophes kept ("it's"
    stays one word), hyphenated words split ("well-known" -> "well", "known"), numbers and
    symbols as words ("$3" -> "three", "dollars"), accents dropped ("caf\u00e9" -> "cafe")."""
    from streamchar.utils.spoken import to_spoken

    return [m.group() for m in word_matches(to_spoken(text).text)]
