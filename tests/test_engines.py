"""SynthTalk's other speech engines: Festival and Flite speak with word and phone timings in
espeak's phone names, and a character's engine is drawn without changing its looks."""

import numpy as np
import pytest

from streamchar.data.character import ENGINES, make_character
from streamchar.data.engines import group_phones, kirshenbaum
from streamchar.data.speech import Voice, synthesize, transcript_words
from streamchar.data.visemes import REST, viseme_for
from streamchar.errors import StreamcharError

TEXT = "The sea-shore is calm; it's a fine day."
VOICES = [Voice("cmu_us_slt_arctic_hts", 0, 175, 0, "festival"), Voice("kal_diphone", 0, 160, 0, "festival"),
          Voice("rms", 110, 175, 0, "flite"), Voice("slt", 0, 190, 0, "flite")]  # fmt: skip


@pytest.mark.parametrize("voice", VOICES, ids=lambda v: f"{v.engine}-{v.name}")
def test_each_engine_speaks_every_word_in_order_with_its_phones(voice):
    speech = synthesize(TEXT, voice, 24000)
    assert [w.label for w in speech.words] == [w for w, _, _ in transcript_words(TEXT)]  # "sea-shore" and "it's" as one word each
    starts = [w.start for w in speech.words]
    assert starts == sorted(starts) and all(w.end > w.start for w in speech.words)
    assert speech.words[-1].end <= speech.duration + 1e-6 and speech.duration > 1.0
    labels = [p.label for p in speech.phonemes]
    assert labels[0] == "_" and {"D", "s", "S", "k", "A"} <= set(labels)  # espeak's names for dh, s, sh, k, aa
    assert all(viseme_for(p) is not REST for p in labels if p != "_")
    # the mouth opens inside the words: most of a word's time is spoken phones, not pauses
    calm = speech.words[3]
    inside = [p for p in speech.phonemes if calm.start - 1e-6 <= p.start and p.end <= calm.end + 1e-6]
    assert [p.label for p in inside][:2] == ["k", "A"]
    peak = np.abs(speech.audio[int(calm.start * 24000) : int(calm.end * 24000)]).max()
    assert peak > 0.1  # the word is heard where its time says


def test_cmu_phones_map_to_espeak_names():
    assert [kirshenbaum(p) for p in ("dh", "ax", "uw1", "ng", "pau", "er0", "zz")] == ["D", "@", "u", "N", "_", "3", "zz"]


def test_flite_phones_group_into_words_or_refuse():
    phones = [("pau", 0.1), ("dh", 0.2), ("ax", 0.3), ("pau", 0.5), ("k", 0.6), ("ae", 0.7), ("t", 0.8), ("pau", 0.9)]
    assert group_phones(["the", "cat"], phones, [["dh", "ax"], ["k", "ae1", "t"]]) == [(0.1, 0.3), (0.5, 0.8)]
    with pytest.raises(StreamcharError, match="flite spoke 5 phones for words that have 4"):
        group_phones(["the", "cat"], phones, [["dh", "ax"], ["k", "t"]])


def test_a_characters_engine_is_drawn_and_its_looks_kept():
    engines = [make_character(k, ENGINES).voice.engine for k in range(40)]
    assert set(engines) == set(ENGINES)
    for k in range(10):
        alone, mixed = make_character(k), make_character(k, ENGINES)
        assert (alone.skin, alone.hair, alone.background, alone.gender) == (mixed.skin, mixed.hair, mixed.background, mixed.gender)
        assert alone.voice.engine == "espeak" and (mixed.voice == alone.voice) == (mixed.voice.engine == "espeak")
    with pytest.raises(StreamcharError, match="unknown speech engines"):
        make_character(1, ("espeak", "piper"))
