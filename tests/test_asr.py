import re

import pytest

from streamchar.data.speech import Voice, synthesize
from streamchar.evaluation.asr import Recognizer, word_error_rate
from streamchar.evaluation.lm import bigram_arpa
from streamchar.utils.text import normalize_words
from streamchar.model.tokenizer import CharacterTokenizer

SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
]


def test_normalisation():
    assert normalize_words("It's  EASY, to tell-tale!") == ["it's", "easy", "to", "tell", "tale"]
    assert normalize_words("Don\u2019t") == ["don't"] and CharacterTokenizer(96).encode("Don\u2019t").words == 1  # counted alike


def test_arpa_counts_match_entries():
    arpa = bigram_arpa(SENTENCES)
    n1 = int(re.search(r"ngram 1=(\d+)", arpa).group(1))
    n2 = int(re.search(r"ngram 2=(\d+)", arpa).group(1))
    uni = arpa.split("\\1-grams:\n")[1].split("\n\n")[0].splitlines()
    big = arpa.split("\\2-grams:\n")[1].split("\n\n")[0].splitlines()
    assert (len(uni), len(big)) == (n1, n2)
    assert any(line.split()[1:] == ["the", "birch"] for line in big)
    # a proper distribution: unigrams sum to 1; each history's seen bigrams plus its backoff mass sum to 1
    p_uni = {f[1]: 10 ** float(f[0]) for f in (line.split() for line in uni) if f[1] != "<s>"}
    backoff = {f[1]: 10 ** float(f[2]) for f in (line.split() for line in uni) if len(f) == 3}
    assert sum(p_uni.values()) == pytest.approx(1.0, abs=1e-4)
    seen: dict[str, dict[str, float]] = {}
    for f in (line.split() for line in big):
        seen.setdefault(f[1], {})[f[2]] = 10 ** float(f[0])
    for h, nxt in seen.items():
        rest = backoff[h] * sum(p for w, p in p_uni.items() if w not in nxt)
        assert sum(nxt.values()) + rest == pytest.approx(1.0, abs=1e-4), h


@pytest.mark.slow
def test_espeak_speech_is_recognised():
    rec = Recognizer(SENTENCES)
    hyps = [rec.transcribe(synthesize(s, Voice("en-us+f5"), 24000).audio, 24000) for s in SENTENCES]
    assert word_error_rate(SENTENCES, hyps).wer < 0.25, hyps


def test_wer_counts():
    r = word_error_rate(["a b c d"], ["a x c"])
    assert (r.substitutions, r.deletions, r.insertions, r.reference_words) == (1, 1, 0, 4)
    assert r.wer == 0.5
