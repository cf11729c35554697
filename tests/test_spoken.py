"""The text normaliser: typed text becomes the words a voice speaks, each traced to its typed token."""

from __future__ import annotations

import pytest

from streamchar.data.harvard import harvard_sentences
from streamchar.utils.spoken import to_spoken
from streamchar.utils.text import normalize_words, word_matches

CASES = [
    ("It's 3:30 pm on Tuesday.", "It's three thirty p m on Tuesday."),
    ("A latte costs $3.50.", "A latte costs three dollars and fifty cents."),
    ("We met on December 7, 2026.", "We met on December seventh, twenty twenty six."),
    ("Meet me at 7:00 on 12/25/2024.", "Meet me at seven o'clock on December twenty fifth twenty twenty four."),
    ("The 2nd floor, 50% off & 72°F.", "The second floor, fifty percent off and seventy two degrees fahrenheit."),
    ("Mr. Smith saw Dr. Jones.", "Mister Smith saw Doctor Jones."),
    ("It is 5km, about 3.14 miles.", "It is five kilometers, about three point one four miles."),
    ("1,000 people in the 1990s.", "one thousand people in the nineteen nineties."),
    ("Call 555-1234 now.", "Call five five five one two three four now."),
    ("Pages 3-5, not -4.", "Pages three-five, not minus four."),
    ("A caf\u00e9 \u201cna\u00efve\u201d r\u00e9sum\u00e9\u2026", 'A cafe "naive" resume...'),
    ("Half: 1/2 cup, OK? The USA.", "Half: one half cup, okay? The u s a."),
    ("Emoji \U0001f600 * ~ | gone", "Emoji gone"),
    ("No. 5 is on the 21st of May.", "Number five is on the twenty first of May."),
    ("Henry IV and World War II; Scott Morgan MD.", "Henry the fourth and World War two; Scott Morgan m d."),
]


@pytest.mark.parametrize(("typed", "spoken"), CASES)
def test_spoken_form(typed: str, spoken: str) -> None:
    assert to_spoken(typed).text == spoken


@pytest.mark.parametrize(("typed", "_"), CASES)
def test_every_spoken_word_knows_its_typed_token(typed: str, _: str) -> None:
    s = to_spoken(typed)
    words = [m.group() for m in word_matches(s.text)]
    assert len(words) == len(s.sources)
    for word, (a, b) in zip(words, s.sources):
        assert 0 <= a < b <= len(s.typed)
        typed_token = s.typed[a:b]
        if typed_token.isalpha() and typed_token.isascii() and typed_token.lower() not in {"ok", "usa", "iv", "ii", "md"}:
            assert word == typed_token.lower()  # a plain word is its own source


def test_shown_words_light_a_token_once() -> None:
    s = to_spoken("Pay $3 now")
    assert [m.group() for m in word_matches(s.text)] == ["pay", "three", "dollars", "now"]
    assert s.typed_words() == ["Pay", "$3", "$3", "now"]
    assert s.shown_words() == ["Pay", "$3", "", "now"]


def test_spoken_form_only_holds_what_a_voice_speaks() -> None:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?'\"()-")
    for typed, _ in CASES:
        assert set(to_spoken(typed).text) <= allowed, typed


def test_harvard_sentences_are_spoken_as_typed() -> None:
    """The first SynthTalk sets (and the shipped models' transcripts) are unchanged by the normaliser."""
    assert all(to_spoken(s).text == s for s in harvard_sentences())


def test_wer_words_match_digits_and_words() -> None:
    assert normalize_words("I have 3 cats and $20.") == normalize_words("i have three cats and twenty dollars")
    assert normalize_words("At 10:15 a.m.") == ["at", "ten", "fifteen", "a", "m"]


def test_a_stream_reads_the_spoken_form_and_shows_the_typed_one() -> None:
    from streamchar.config import load_config
    from streamchar.config.load import override_config
    from streamchar.model.tokenizer import build_tokenizer
    from streamchar.streaming.reading import make_reader

    cfg = override_config(load_config("tiny"), {"orchestrator": {"reading": "plan", "plan": {"word_pace": {"durations": "letters"}}}})
    reader = make_reader(cfg, build_tokenizer(cfg))
    reader.append("Coffee is $3.")
    reader.append("See you at 5pm!")
    assert reader.transcript == "Coffee is three dollars. See you at five p m!"
    assert reader.words_total == len(reader.shown_words) == 10
    assert reader.shown_words == ["Coffee", "is", "$3", "", "See", "you", "at", "5pm", "", ""]
    reader.interrupt()  # nothing spoken yet: every word is dropped, the shown words with them
    assert reader.words_total == 0 and reader.shown_words == []
