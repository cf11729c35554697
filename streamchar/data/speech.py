"""Speech from libespeak-ng with exact word and phoneme sample positions.

espeak-ng reports WORD and PHONEME events carrying the sample index at which each
starts (exact; some function-word pairs such as "in the" espeak reports as one word, and
they are split as `_split_joined_words` says); those timings stand in for the ASR timestamps
the paper uses to supervise the progress-aware pointer (docs/architecture.md, "SynthTalk"). libespeak-ng keeps global state, so each
utterance is spoken by a fresh child of a helper process (`data/espeak_worker.py`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import re
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamchar.data import espeak_worker
from streamchar.data.audio import resample
from streamchar.data.espeak_worker import (
    ANSWER_LENGTH,
    AUDIO_OUTPUT_SYNCHRONOUS,
    EV_PHONEME,
    EV_WORD,
    EVENT,
    HEAD,
    INIT_PHONEME_EVENTS,
    NO_VOICE,
    REQUEST_LENGTH,
    read_exactly,
)
from streamchar.errors import StreamcharError

INSTALL_HINT = "install it with: sudo apt-get install espeak-ng  (Debian/Ubuntu; provides libespeak-ng1)"

# text espeak speaks the way it is written, so that transcript words and spoken words agree
_ACCEPTED = re.compile(r"[A-Za-z .,;:!?'\"()\-]")
_TOKEN = re.compile(r"[A-Za-z]+(?:['\-][A-Za-z]+)*")

@dataclass(frozen=True)
class Voice:
    """A voice of one engine (`data/engines.py`). espeak: `name` such as "en-us+f5", pitch and
    pitch range 0-100, rate in words per minute. festival (`cmu_us_slt_arctic_hts`,
    `kal_diphone`): rate against its own 175. flite (`slt`, `rms`, `awb`, `kal16`): rate as
    festival's, pitch its mean F0 in Hz."""

    name: str
    pitch: int = 50
    rate: int = 175
    pitch_range: int = 50
    engine: str = "espeak"

    def describe(self) -> str:
        return f"{self.engine} {self.name} pitch {self.pitch} rate {self.rate}"


@dataclass(frozen=True)
class Timed:
    """A word or phoneme with its start and end in seconds."""

    label: str
    start: float
    end: float


@dataclass(frozen=True)
class Speech:
    audio: np.ndarray  # float32 mono in [-1, 1]
    sample_rate: int
    words: list[Timed]
    phonemes: list[Timed]

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


class _Espeak:
    """The process-wide libespeak-ng: loaded here to know its rate and voices, and spoken by a
    helper process (`data/espeak_worker.py`, which says why)."""

    def __init__(self) -> None:
        self.library = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            lib = ctypes.CDLL(self.library)
        except OSError:
            raise StreamcharError(f"espeak-ng library not found; {INSTALL_HINT}") from None
        rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None, INIT_PHONEME_EVENTS)
        if rate <= 0:
            raise StreamcharError(f"espeak-ng failed to initialise (its data files may be missing); {INSTALL_HINT}")
        self.native_rate = rate
        data_path = ctypes.c_char_p()
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Info(ctypes.byref(data_path))
        self.data_path = Path((data_path.value or b"").decode())
        self.lock = threading.Lock()
        self._helper: subprocess.Popen | None = None
        self._helper_pid = 0  # the process that started the helper: a forked copy of this one starts its own

    def check_voice(self, voice: Voice) -> None:
        """espeak silently falls back to the base voice for an unknown variant; refuse it instead."""
        _, _, variant = voice.name.partition("+")
        if variant and not (self.data_path / "voices" / "!v" / variant).is_file():
            raise StreamcharError(f"espeak-ng has no voice {voice.name!r}; list variants with: espeak-ng --voices=variant")

    def synthesize(self, text: str, voice: Voice) -> tuple[np.ndarray, list[tuple[int, int, int, bytes]]]:
        self.check_voice(voice)
        request = json.dumps({"text": text, "name": voice.name, "rate": voice.rate, "pitch": voice.pitch, "range": voice.pitch_range}).encode()
        with self.lock:
            helper = self._running_helper()
            try:
                assert helper.stdin is not None and helper.stdout is not None
                helper.stdin.write(struct.pack(REQUEST_LENGTH, len(request)) + request)
                helper.stdin.flush()
                length = read_exactly(helper.stdout, struct.calcsize(ANSWER_LENGTH))
                payload = None if length is None else read_exactly(helper.stdout, struct.unpack(ANSWER_LENGTH, length)[0])
                if payload is None:
                    raise EOFError
            except (OSError, EOFError):
                helper.kill()
                self._helper = None
                raise StreamcharError(f"espeak-ng's helper process stopped while synthesising {text[:40]!r}") from None
        return self._decode(payload, voice)

    def _running_helper(self) -> subprocess.Popen:
        if self._helper is None or self._helper.poll() is not None or self._helper_pid != os.getpid():
            command = [sys.executable, espeak_worker.__file__, self.library]  # by its path: it needs nothing but the standard library
            self._helper = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            self._helper_pid = os.getpid()
        return self._helper

    def _decode(self, payload: bytes, voice: Voice) -> tuple[np.ndarray, list[tuple[int, int, int, bytes]]]:
        head = struct.calcsize(HEAD)
        if len(payload) < head:
            raise StreamcharError("espeak-ng crashed while synthesising the text")
        status, n_pcm, n_events = struct.unpack(HEAD, payload[:head])
        if status == NO_VOICE:
            raise StreamcharError(f"espeak-ng has no voice {voice.name!r}; list them with: espeak-ng --voices=en")
        if status != 0:
            raise StreamcharError(f"espeak-ng could not synthesise the text (error {status})")
        if len(payload) != head + 2 * n_pcm + struct.calcsize(EVENT) * n_events:
            raise StreamcharError("espeak-ng returned a truncated result")
        pcm = np.frombuffer(payload, "<i2", count=n_pcm, offset=head)
        return pcm, list(struct.iter_unpack(EVENT, payload[head + 2 * n_pcm :]))


_ENGINE: _Espeak | None = None


def _engine() -> _Espeak:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Espeak()
    return _ENGINE


def check_text(text: str) -> str:
    """Reject text that is empty or that espeak would not speak as written; return it stripped."""
    stripped = " ".join(text.split())
    if not stripped:
        raise StreamcharError("transcript is empty or only whitespace; give at least one word")
    bad = sorted({c for c in stripped if not _ACCEPTED.fullmatch(c)})
    if bad:
        shown = " ".join(repr(c) for c in bad[:10])
        raise StreamcharError(
            f"transcript has characters espeak-ng cannot speak as written: {shown}; "
            "accepted: English letters, spaces and . , ; : ! ? ' \" ( ) - (spell numbers out)"
        )
    if not _TOKEN.search(stripped):
        raise StreamcharError("transcript has no words; give at least one word of English letters")
    return stripped


def speakable_text(text: str) -> str:
    """The text with every character espeak would not speak as written turned into a space, and
    spaces collapsed: the same words of letters, in the same places relative to each other. A
    character that lower-cases to a letter (the Kelvin sign to k) is that letter, as it is to the
    tokenizer."""

    def speakable(c: str) -> str:
        low = c.lower()
        return c if _ACCEPTED.fullmatch(c) else low if len(low) == 1 and _ACCEPTED.fullmatch(low) else " "

    return " ".join("".join(speakable(c) for c in text.replace("\u2019", "'")).split())


def transcript_words(text: str) -> list[tuple[str, int, int]]:
    """The transcript's words with their character spans [start, end)."""
    return [(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def synthesize(text: str, voice: Voice, sample_rate: int) -> Speech:
    """Speak `text` with `voice`; audio resampled to `sample_rate`, peak-normalised to 0.9."""
    pcm, native, words, phonemes = _speak(text, voice)
    audio = resample(pcm.astype(np.float32) / 32768.0 if pcm.dtype == np.int16 else pcm, native, sample_rate)
    peak = float(np.abs(audio).max())
    if peak > 0:
        audio = audio * (0.9 / peak)
    return Speech(audio.astype(np.float32), sample_rate, words, phonemes)


def spoken_word_times(text: str, voice: Voice) -> list[Timed]:
    """When `voice` speaks each of the text's words (`transcript_words`), without making the
    audio a listener would hear (the plan of a long script is timed this way as the stream goes)."""
    return _speak(text, voice)[2]


def _speak(text: str, voice: Voice) -> tuple[np.ndarray, int, list[Timed], list[Timed]]:
    """The engine's samples at its native rate, with the words' and phonemes' timings."""
    text = check_text(text)
    if voice.engine != "espeak":
        return _speak_other(text, voice)
    engine = _engine()
    pcm, events = engine.synthesize(text, voice)
    native = engine.native_rate
    n_native = len(pcm)
    if n_native == 0:
        raise StreamcharError(f"espeak-ng produced no audio for {text!r}")

    tokens = transcript_words(text)
    ends = [e for _, _, e in tokens]
    # phonemes: each lasts until the next phoneme event (or the end of the audio)
    ph_events = [(s, lab.split(b"\0", 1)[0].decode("ascii", "replace")) for t, _, s, lab in events if t == EV_PHONEME]
    phonemes = []
    for k, (sample, label) in enumerate(ph_events):
        end = ph_events[k + 1][0] if k + 1 < len(ph_events) else n_native
        if end > sample:
            phonemes.append(Timed(label, sample / native, end / native))

    # words: espeak's text_position is 1-based in characters; map each event to the token holding it
    first: dict[int, int] = {}
    for t, pos, sample, _ in events:
        if t != EV_WORD:
            continue
        # the token holding the event's character, or the next one when espeak puts the
        # event on punctuation before a word ("Hello - there")
        idx = int(np.searchsorted(ends, pos - 1, side="right"))
        if idx < len(tokens) and idx not in first:
            first[idx] = sample
    if 0 not in first:
        raise StreamcharError(f"espeak-ng gave no word timings for {text!r}")
    word_starts = _split_joined_words(tokens, first, phonemes, native)
    spoken = [(round(p.start * native), round(p.end * native)) for p in phonemes if not p.label.startswith("_")]
    words = []
    for i, (word, _, _) in enumerate(tokens):
        start = word_starts[i]
        limit = word_starts[i + 1] if i + 1 < len(tokens) else n_native
        # the word ends where its last spoken phoneme ends (pauses "_" are not part of it)
        end = max([min(pe, limit) for ps, pe in spoken if start <= ps < limit], default=start)
        words.append(Timed(word, start / native, end / native))
    return pcm, native, words, phonemes


def _speak_other(text: str, voice: Voice) -> tuple[np.ndarray, int, list[Timed], list[Timed]]:
    from streamchar.data.engines import speak_with

    tokens = [w for w, _, _ in transcript_words(text)]
    audio, native, spans, phones = speak_with(voice.engine, text, tokens, voice.name, voice.rate / 175, voice.pitch)
    if len(audio) == 0:
        raise StreamcharError(f"{voice.engine} produced no audio for {text!r}")
    words = [Timed(w, a, b) for w, (a, b) in zip(tokens, spans)]
    return audio, native, words, [Timed(*p) for p in phones]


def _split_joined_words(tokens: list[tuple[str, int, int]], first: dict[int, int], phonemes: list[Timed], native: int) -> list[int]:
    """Start sample of every token.

    espeak speaks some function-word pairs ("in the", "of a") as one word and reports one
    event for both; the later words of such a group start at the phoneme boundary nearest
    to their share of the group's letters.
    """
    starts = [0] * len(tokens)
    keys = sorted(first)
    for g, i in enumerate(keys):
        j = keys[g + 1] if g + 1 < len(keys) else len(tokens)
        starts[i] = first[i]
        if j - i == 1:
            continue
        limit = first[j] if j < len(tokens) else None
        bounds = [
            round(p.start * native)
            for p in phonemes
            if round(p.start * native) >= first[i] and (limit is None or round(p.start * native) < limit) and not p.label.startswith("_")
        ]
        letters = [len(tokens[k][0]) for k in range(i, j)]
        total = sum(letters)
        for k in range(i + 1, j):
            share = sum(letters[: k - i]) / total
            idx = min(max(round(share * len(bounds)), 1), max(len(bounds) - 1, 1))
            starts[k] = max(bounds[idx] if idx < len(bounds) else first[i], starts[k - 1])
    return starts
