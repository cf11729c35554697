"""Forced alignment against Festival's exact word times, with a word outside the dictionary."""

import numpy as np
import pytest

from streamchar.data.align import align_words, pronunciation
from streamchar.data.speech import Voice, synthesize
from streamchar.errors import StreamcharError

SLT = Voice("cmu_us_slt_arctic_hts", 0, 175, 0, "festival")


def test_alignment_finds_festivals_word_starts():
    text = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."
    speech = synthesize(text, SLT, 24000)
    aligned = align_words(text, speech.audio, 24000)
    assert [w.label for w in aligned] == [w.label for w in speech.words]
    errors = [abs(a.start - b.start) for a, b in zip(aligned, speech.words)]
    assert np.mean(errors) < 0.03 and max(errors) < 0.1
    assert all(a.end > a.start for a in aligned)


def test_words_outside_the_dictionary_and_with_hyphens():
    assert pronunciation("zorblax").split()[0] == "Z"
    text = "The zorblax sea-shore glimmered."
    speech = synthesize(text, Voice("slt", 0, 175, 0, "flite"), 24000)
    aligned = align_words(text, speech.audio, 24000)
    assert [w.label for w in aligned] == ["The", "zorblax", "sea-shore", "glimmered"]
    assert np.mean([abs(a.start - b.start) for a, b in zip(aligned, speech.words)]) < 0.04


def test_silence_does_not_align():
    with pytest.raises(StreamcharError, match="alignment failed"):
        align_words("the birch canoe slid on the smooth planks", np.zeros(24000 * 2, np.float32), 24000)


def test_flites_phones_outside_pocketsphinxs_set_are_spelled_as_its_own():
    """t2p's AX and AXR are not in pocketsphinx's en-US phone set, which would refuse the word."""
    for word in ("comme", "decimalized", "elizabethshire"):
        phones = pronunciation(word).split()
        assert "AX" not in phones and "AXR" not in phones
    text = "The comme sign was decimalized."
    speech = synthesize(text, Voice("slt", 0, 175, 0, "flite"), 24000)
    assert [w.label for w in align_words(text, speech.audio, 24000)] == ["The", "comme", "sign", "was", "decimalized"]
