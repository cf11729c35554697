"""The phoneme front end (`orchestrator.tokenizer: phonemes`): gruut's pronunciations, words counted
and numbered exactly as `word_matches` counts them, ids inside the tiny vocabulary."""

import ctypes
import ctypes.util
import importlib.util
import subprocess
import sys
from contextlib import closing

import pytest
import torch

from streamchar.config import load_config
from streamchar.errors import StreamcharError
from streamchar.model import phonemes
from streamchar.model.phonemes import PHONEMES, word_phonemes
from streamchar.model.tokenizer import PhonemeTokenizer, build_tokenizer
from streamchar.utils.text import word_matches

TEXTS = [
    "The birch canoe slid on the smooth planks.",
    "\"Well-known cats,\" she said - (don\u2019t) they're the dogs' friends; really? Yes!",
    "hi - there: a re-entry... O'Brien's x-ray",
    "a 5b c",  # a digit between words: no token, and the words stay word_matches'
    "  ",
]


@pytest.fixture(scope="module")
def tok():
    return PhonemeTokenizer()


def symbols(tok, ids):
    names = {tok.PAD: "<pad>", tok.BOS: "<s>", tok.EOS: "</s>", tok.BOUNDARY: "|"}
    names |= {i: m for m, i in tok._marks.items()} | {i: p for p, i in tok._phonemes.items()}
    return [names[i] for i in ids]


@pytest.mark.parametrize("text", TEXTS)
def test_words_are_counted_and_numbered_as_word_matches_counts_them(tok, text):
    words = [m.group() for m in word_matches(text)]
    t = tok.encode(text)
    assert t.words == len(words) and len(t.ids) == len(t.word_numbers)
    assert t.word_numbers[0] == 0 and t.word_numbers[-1] == len(words)  # start and end tokens
    assert t.word_numbers == sorted(t.word_numbers)
    for k, word in enumerate(words, start=1):  # each word's own tokens, numbered k, are its phonemes
        own = [i for i, n in zip(t.ids, t.word_numbers, strict=True) if n == k and i in tok._phonemes.values()]
        assert symbols(tok, own) == list(word_phonemes(word))


def test_a_sentence_reads_as_phonemes_boundaries_and_pauses(tok):
    t = tok.encode('"Well-known cats," she said - hi.')
    assert symbols(tok, t.ids) == ["<s>", '"', "w", "ˈɛ", "l", "|", "n", "ˈoʊ", "n", "|", "k", "ˈæ", "t", "s", ",", '"', "|",
                                   "ʃ", "ˈi", "|", "s", "ˈɛ", "d", "-", "|", "h", "ˈaɪ", ".", "</s>"]  # fmt: skip
    assert t.word_numbers == [0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 5, 5, 5, 5, 5, 6, 6, 6, 6]
    assert symbols(tok, tok.encode("cat... dog?!").ids) == ["<s>", "k", "ˈæ", "t", ".", "|", "d", "ˈɔ", "ɡ", "?", "!", "</s>"]


def test_a_lexicon_word_gives_its_known_phonemes():
    assert word_phonemes("cat") == ("k", "ˈæ", "t")
    assert word_phonemes("don't") == ("d", "ˈoʊ", "n", "t")  # an apostrophe's word is one word, as the lexicon has it
    assert word_phonemes("read") == ("ɹ", "ˈi", "d")  # a heteronym: its first entry, there being no part of speech


def test_a_word_not_in_the_lexicon_is_guessed():
    lexicon = phonemes._load().lexicon
    assert lexicon("blorptastic") is None and lexicon("frumious") is None
    assert word_phonemes("blorptastic")[:3] == ("b", "l", "ˈɔ") and word_phonemes("blorptastic")[-2:] == ("ɪ", "k")
    assert len(word_phonemes("frumious")) >= 5 and set(word_phonemes("frumious")) <= set(PHONEMES)


def test_the_inventory_is_gruuts_english_symbols():
    import sqlite3

    from gruut_lang_en import get_lang_dir

    with closing(sqlite3.connect(f"{(get_lang_dir() / 'lexicon.db').as_uri()}?mode=ro", uri=True)) as db:
        found = {p for (row,) in db.execute("SELECT phonemes FROM word_phonemes") for p in row.split()}
    assert found == set(PHONEMES) and list(PHONEMES) == sorted(PHONEMES) and len(PHONEMES) == 70
    model = phonemes._load().guess
    guessed = {p for label in model.crf_tagger.labels() for p in model.decode_string(label).split(model.phoneme_join)}
    assert guessed - {model.eps_phoneme} <= set(PHONEMES)


def test_ids_fit_the_tiny_vocabulary_and_the_config_builds_it(tok):
    cfg = load_config("tiny", {"orchestrator": {"tokenizer": "phonemes"}})
    built = build_tokenizer(cfg)
    assert isinstance(built, PhonemeTokenizer) and built.vocab_size == 4 + 8 + 70 <= cfg.orchestrator.vocab_size
    ids = [i for text in TEXTS for i in tok.encode(text).ids]
    assert min(ids) > 0 and max(ids) < tok.vocab_size
    small = load_config("tiny", {"orchestrator": {"tokenizer": "phonemes", "vocab_size": 64}})
    with pytest.raises(StreamcharError, match=r"has 82 tokens; the orchestrator embeds 64 \(orchestrator\.vocab_size\)"):
        build_tokenizer(small)


def test_the_window_reads_the_words_after_the_cut(tok):
    t = tok.encode("The cat sat, well.")
    ids, numbers, words = t.window(1, 2)  # "the" cut: the start token, then "cat | sat , |"
    assert symbols(tok, ids) == ["<s>", "k", "ˈæ", "t", "|", "s", "ˈæ", "t", ",", "|"]
    assert numbers == [0, 1, 1, 1, 1, 2, 2, 2, 2, 2] and words == 2
    assert t.window(3, 5)[2] == 1 and symbols(tok, t.window(3, 5)[0]) == ["<s>", "w", "ˈɛ", "l", ".", "</s>"]


def test_the_config_accepts_phonemes_without_a_directory():
    assert load_config("tiny", {"orchestrator": {"tokenizer": "phonemes"}}).orchestrator.tokenizer == "phonemes"
    with pytest.raises(StreamcharError, match="tokenizer_directory: the phonemes tokenizer reads no directory; drop it"):
        load_config("tiny", {"orchestrator": {"tokenizer": "phonemes", "tokenizer_directory": "tok"}})
    with pytest.raises(StreamcharError, match="orchestrator.tokenizer"):
        load_config("tiny", {"orchestrator": {"tokenizer": "letters"}})


def test_the_same_text_always_gives_the_same_ids(tok):
    first = [tok.encode(text).ids for text in TEXTS]
    word_phonemes.cache_clear()
    assert [PhonemeTokenizer().encode(text).ids for text in TEXTS] == first


def test_a_missing_gruut_says_how_to_install(monkeypatch):
    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gruut_lang_en" else find(name, *a))
    with pytest.raises(StreamcharError, match=r"gruut_lang_en is not installed; install them with: pip install 'streamchar\[phonemes\]'"):
        PhonemeTokenizer()


def test_gruut_loads_and_pronounces_without_espeak_or_any_program(monkeypatch):
    """espeak-ng is blocked where streams run; gruut's English path must not need it."""
    find, cdll = ctypes.util.find_library, ctypes.CDLL.__init__

    def blocked_cdll(self, name, *a, **k):
        assert not (name and "espeak" in str(name)), f"gruut loaded {name}"
        cdll(self, name, *a, **k)

    def no_program(*a, **k):
        raise AssertionError(f"gruut ran a program: {a[1:2]}")

    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None if "espeak" in name else find(name))
    monkeypatch.setattr(ctypes.CDLL, "__init__", blocked_cdll)
    monkeypatch.setattr(subprocess.Popen, "__init__", no_program)
    for name in [m for m in sys.modules if m == "gruut" or m.startswith(("gruut.", "gruut_lang_en"))]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh under the block
    monkeypatch.setattr(phonemes, "_state", None)
    word_phonemes.cache_clear()
    assert PhonemeTokenizer().encode("Glue the zorblax sheet.").words == 4
    word_phonemes.cache_clear()


def test_a_word_nothing_pronounces_is_spelled(monkeypatch):
    loaded = phonemes._load()
    monkeypatch.setattr(phonemes, "_state", phonemes._Gruut(loaded.pid, loaded.lexicon, lambda word: []))
    word_phonemes.cache_clear()
    assert word_phonemes("zqa") == ("z", "ˈi", "k", "j", "ˈu", "ˈeɪ")  # the letter a, not the article
    word_phonemes.cache_clear()


def test_a_checkpoint_goes_on_with_another_tokenizer_and_a_fresh_token_embedding() -> None:
    """`--init` from a character-reading model with `tokenizer: phonemes`: the token embedding
    starts afresh, every other weight is the checkpoint's."""
    from streamchar.config.load import override_config
    from streamchar.model.checkpoint import load_generator, read_generator_config

    _, _, saved = read_generator_config("tiny-teacher")
    chars, _, _ = load_generator("tiny-teacher")
    phon, _, _ = load_generator("tiny-teacher", config=override_config(saved, {"orchestrator": {"tokenizer": "phonemes"}}))
    assert isinstance(phon.tokenizer, PhonemeTokenizer)
    a, b = chars.orchestrator.backbone, phon.orchestrator.backbone
    assert not torch.equal(a.embed_tokens.weight, b.embed_tokens.weight)
    assert torch.equal(a.layers[0].self_attn.q_proj.weight, b.layers[0].self_attn.q_proj.weight)
