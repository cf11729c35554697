"""Speech recognition, the judge of WER and transcript coverage: by default pocketsphinx's bundled
en-US acoustic model with a closed-vocabulary LM over the transcripts being judged; with
`whisper:DIR` a user's local faster-whisper (CTranslate2) model, open-vocabulary as the paper's
recogniser is. Nothing is downloaded."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np

from streamchar.data.align import pocketsphinx_model
from streamchar.data.audio import resample
from streamchar.errors import StreamcharError
from streamchar.evaluation.lm import bigram_arpa
from streamchar.utils.text import normalize_words

ASR_RATE = 16000


class Recognizer:
    """pocketsphinx decoder whose language model covers exactly the given transcripts' words."""

    def __init__(self, transcripts: Sequence[str]):
        from pocketsphinx import Decoder

        hmm, dict_path, known = pocketsphinx_model()
        wanted = {w for t in transcripts for w in normalize_words(t)}
        self.out_of_dictionary = sorted(wanted - known)
        self._tmp = tempfile.TemporaryDirectory(prefix="streamchar-lm-")
        lm_path = Path(self._tmp.name) / "closed.arpa"
        lm_path.write_text(bigram_arpa(transcripts, vocabulary=known))
        self._decoder = Decoder(hmm=str(hmm), dict=str(dict_path), lm=str(lm_path), loglevel="FATAL")

    def _decode(self, audio: np.ndarray, sample_rate: int) -> None:
        pcm = resample(np.asarray(audio, dtype=np.float32), sample_rate, ASR_RATE)
        pcm16 = (np.clip(pcm, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        d = self._decoder
        d.start_utt()
        d.process_raw(pcm16, full_utt=True)
        d.end_utt()

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> str:
        self._decode(audio, sample_rate)
        hyp = self._decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    def transcribe_words(self, audio: np.ndarray, sample_rate: int) -> list[tuple[str, float, float]]:
        """Recognised words with their start and end in seconds (silences and fillers dropped)."""
        self._decode(audio, sample_rate)
        frame_rate = float(self._decoder.config["frate"])
        words = []
        for seg in self._decoder.seg():
            w = seg.word.split("(", 1)[0]
            if w.startswith(("<", "[")):
                continue
            words.append((w, seg.start_frame / frame_rate, (seg.end_frame + 1) / frame_rate))
        return words


class WhisperRecognizer:
    """A local faster-whisper model directory (as CTranslate2's converter writes it, with its
    `tokenizer.json`), English, greedy; the words with their times from its word timestamps."""

    def __init__(self, directory: Path, threads: int = 0):
        try:
            from faster_whisper import WhisperModel
        except ModuleNotFoundError:
            raise StreamcharError("--asr whisper needs faster-whisper: pip install 'streamchar[eval]'") from None
        directory = Path(directory)
        missing = [f for f in ("model.bin", "tokenizer.json") if not (directory / f).is_file()]
        if missing:  # faster-whisper would fetch a missing tokenizer from the Hub
            raise StreamcharError(f"no faster-whisper model at {directory}: it lacks {', '.join(missing)} (convert one with "
                                  "ct2-transformers-converter --copy_files tokenizer.json preprocessor_config.json)")  # fmt: skip
        self.model = WhisperModel(str(directory), device="cpu", compute_type="float32", cpu_threads=threads, local_files_only=True)

    def _segments(self, audio: np.ndarray, sample_rate: int, words: bool) -> list:
        pcm = resample(np.asarray(audio, dtype=np.float32), sample_rate, ASR_RATE)
        segments, _ = self.model.transcribe(pcm, language="en", task="transcribe", beam_size=1, temperature=0.0, vad_filter=False,
                                            condition_on_previous_text=False, word_timestamps=words)  # fmt: skip
        return list(segments)

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> str:
        return " ".join(seg.text.strip() for seg in self._segments(audio, sample_rate, False)).strip()

    def transcribe_words(self, audio: np.ndarray, sample_rate: int) -> list[tuple[str, float, float]]:
        out = []
        for seg in self._segments(audio, sample_rate, True):
            for w in seg.words or []:
                out += [(word, float(w.start), float(w.end)) for word in normalize_words(w.word)]
        return out


Judge = Recognizer | WhisperRecognizer


def make_recognizer(spec: str, transcripts: Sequence[str]) -> Judge:
    """`pocketsphinx` (closed vocabulary over `transcripts`) or `whisper:DIR`."""
    kind, _, directory = spec.partition(":")
    if kind == "pocketsphinx" and not directory:
        return Recognizer(transcripts)
    if kind == "whisper" and directory:
        return WhisperRecognizer(Path(directory))
    raise StreamcharError(f"--asr takes pocketsphinx or whisper:DIR (a local faster-whisper model), got {spec!r}")


@dataclass(frozen=True)
class WerResult:
    wer: float
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> WerResult:
    """Corpus WER over normalised words (see `normalize_words`)."""
    refs = [" ".join(normalize_words(r)) for r in references]
    hyps = [" ".join(normalize_words(h)) for h in hypotheses]
    keep = [i for i, r in enumerate(refs) if r]
    out = jiwer.process_words([refs[i] for i in keep], [hyps[i] for i in keep])
    n = out.hits + out.substitutions + out.deletions
    return WerResult(out.wer, out.substitutions, out.deletions, out.insertions, n)
