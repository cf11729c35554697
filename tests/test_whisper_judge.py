"""`--asr whisper:DIR`: a user's local faster-whisper (CTranslate2) model as the WER judge. A small
random Whisper, with a byte-level BPE tokenizer carrying Whisper's special tokens, is converted
with CTranslate2's own converter, so that nothing is downloaded (the Hub is switched off)."""

import json

import numpy as np
import pytest

from streamchar.data.harvard import split_sentences
from streamchar.errors import StreamcharError
from streamchar.evaluation.asr import WhisperRecognizer, make_recognizer

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
    with pytest.raises(StreamcharError, match="pocketsphinx or whisper:DIR"):
        make_recognizer("whisper", [])
