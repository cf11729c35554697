"""Forced alignment: a transcript and its speech -> when each of its words is spoken, with
pocketsphinx's bundled en-US acoustic model (a new decoder per utterance, its alignment search
given the transcript's words in order). A word missing from its dictionary gets the
pronunciation Flite gives it (`t2p`: Flite's lexicon, else its letter-to-sound rules), in the
same CMU phone set. This is what times real footage's words (`data prepare`), and it can time
any engine's speech."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from streamchar.data.audio import resample
from streamchar.data.engines import word_phones
from streamchar.data.speech import Timed, transcript_words
from streamchar.errors import StreamcharError

ALIGN_RATE = 16000
PAUSE = 0.08  # s of quiet inside a word's span that is a pause handed to it, not a soft onset
_PARTS = re.compile(r"[a-z']+")


@functools.cache
def pocketsphinx_model() -> tuple[Path, Path, frozenset[str]]:
    """pocketsphinx's bundled en-US model: its acoustic model, its dictionary and the words in it."""
    from pocketsphinx import get_model_path

    root = Path(get_model_path()) / "en-us"
    dictionary = root / "cmudict-en-us.dict"
    words = frozenset(line.split(" ", 1)[0].split("(", 1)[0] for line in dictionary.read_text(encoding="utf-8").splitlines() if line)
    return root / "en-us", dictionary, words


# Flite's phones that pocketsphinx's en-US set lacks, as its dictionary spells the same sounds
_TO_CMU = {"AX": "AH", "AXR": "ER"}


def pronunciation(word: str) -> str:
    """A word's phones as the dictionary spells them ("K AE T"), from Flite's `t2p`."""
    phones = [_TO_CMU.get(p, p) for p in (p.rstrip("012").upper() for p in word_phones(word))]
    if not phones:
        raise StreamcharError(f"t2p gave no phones for {word!r}")
    return " ".join(phones)


def align_words(transcript: str, audio: np.ndarray, sample_rate: int) -> list[Timed]:
    """Each transcript word (`transcript_words`) with its start and end in seconds. A word
    written with a hyphen is aligned as its parts and spans them."""
    from pocketsphinx import Decoder

    tokens = [w for w, _, _ in transcript_words(transcript)]
    parts = [_PARTS.findall(t.lower().replace("-", " ")) for t in tokens]
    flat = [p for ps in parts for p in ps]
    if not flat:
        raise StreamcharError("the transcript has no words to align")
    hmm, dictionary, known = pocketsphinx_model()
    decoder = Decoder(hmm=str(hmm), dict=str(dictionary), loglevel="FATAL")
    for word in sorted(set(flat) - known):
        decoder.add_word(word, pronunciation(word), True)
    decoder.set_align_text(" ".join(flat))
    pcm = resample(np.asarray(audio, dtype=np.float32), sample_rate, ALIGN_RATE)
    decoder.start_utt()
    decoder.process_raw((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes(), full_utt=True)
    decoder.end_utt()
    rate = float(decoder.config["frate"])
    segments = [(s.word.split("(", 1)[0], s.start_frame / rate, (s.end_frame + 1) / rate) for s in decoder.seg() or ()]
    found = [s for s in segments if not s[0].startswith(("<", "["))]
    if [w for w, _, _ in found] != flat:
        raise StreamcharError(f"the alignment failed: it found {len(found)} of the transcript's {len(flat)} words "
                              "(is this the speech of this transcript?)")  # fmt: skip
    out, k = [], 0
    for token, ps in zip(tokens, parts):
        out.append(Timed(token, found[k][1], found[k + len(ps) - 1][2]))
        k += len(ps)
    return _trim_silence(out, pcm)


def word_records(words: list[Timed]) -> list[dict]:
    """Aligned words as data sets keep them: {"word", "start", "end"}, to the 0.1 ms."""
    return [{"word": w.label, "start": round(w.start, 4), "end": round(w.end, 4)} for w in words]


def _trim_silence(words: list[Timed], pcm: np.ndarray, hop: float = 0.01) -> list[Timed]:
    """Each word's start and end moved in past silence it was given: the alignment search may
    hand a pause to the word after it (a sentence's first word). Silence is a 10 ms frame
    quieter than three times the clip's quiet floor and 2% of its loudest frame; only a run of
    at least `PAUSE` at a word's edge is cut, so that a soft onset stays the word's."""
    n = int(hop * ALIGN_RATE)
    frames = pcm[: len(pcm) // n * n].reshape(-1, n)
    if len(frames) == 0:
        return words
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    loud = rms > max(3 * np.percentile(rms, 10), 0.02 * rms.max())
    out = []
    for w in words:
        a, b = int(w.start / hop), min(int(np.ceil(w.end / hop)), len(loud))
        on = np.flatnonzero(loud[a:b])
        if len(on) == 0:
            out.append(w)
            continue
        lead, tail = on[0], (b - a) - on[-1] - 1  # quiet frames at each end; a pause is at least `PAUSE`
        out.append(Timed(w.label, (a + on[0]) * hop if lead * hop >= PAUSE else w.start, (a + on[-1] + 1) * hop if tail * hop >= PAUSE else w.end))
    return out
