"""Speech engines besides espeak-ng, each run as its Debian program, each with its own
pronunciation, prosody and timbre (docs/architecture.md, "SynthTalk"):

- Festival (`festival`, voices `cmu_us_slt_arctic_hts` and `kal_diphone`): word and segment
  times read from the synthesised utterance itself, so they are exact.
- Flite (`flite`, built-in voices `slt`, `rms`, `awb`, `kal16`): `-psdur` prints each phone's end
  time; the phones are grouped into words by each word's own pronunciation (`t2p`, Flite's
  lexicon and letter-to-sound rules).

Both use the CMU phone set; `KIRSHENBAUM` maps it to espeak's names, so the mouth (the viseme
table) and the phoneme head read every engine's phones alike.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from streamchar.data.audio import read_wav
from streamchar.errors import StreamcharError, UnspeakableText

ENGINE_PACKAGES = {"festival": "festival festvox-us-slt-hts festvox-kallpc16k", "flite": "flite"}

# CMU / radio phones (stress digits stripped) -> the Kirshenbaum names espeak reports
KIRSHENBAUM = {
    "aa": "A", "ae": "a", "ah": "V", "ao": "O", "aw": "aU", "ax": "@", "axr": "3", "ay": "aI", "eh": "E", "er": "3", "ey": "eI",
    "ih": "I", "iy": "i", "ow": "oU", "oy": "OI", "uh": "U", "uw": "u", "b": "b", "ch": "tS", "d": "d", "dh": "D", "f": "f",
    "g": "g", "hh": "h", "jh": "dZ", "k": "k", "l": "l", "m": "m", "n": "n", "ng": "N", "p": "p", "r": "r", "s": "s", "sh": "S",
    "t": "t", "th": "T", "v": "v", "w": "w", "y": "j", "z": "z", "zh": "Z", "pau": "_", "h#": "_", "brth": "_",
}  # fmt: skip
_TIMEOUT = 120


def kirshenbaum(phone: str) -> str:
    """A CMU phone ("uw1", "pau") as espeak names it ("u", "_"); unknown phones keep their name."""
    return KIRSHENBAUM.get(phone.rstrip("012").lower(), phone)


def _run(args: list[str], engine: str) -> str:
    if shutil.which(args[0]) is None:
        raise StreamcharError(f"the {engine} speech engine is not installed: sudo apt-get install {ENGINE_PACKAGES[engine]}")
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise StreamcharError(f"{engine} took over {_TIMEOUT} s") from None
    if done.returncode != 0:
        raise StreamcharError(f"{engine} failed (exit {done.returncode}): {done.stderr.strip()[-300:]}")
    return done.stdout


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def festival_speak(text: str, voice: str, rate: float) -> tuple[np.ndarray, int, list[tuple[str, float, float]], list[tuple[str, float]]]:
    """(samples, rate, [(word, start, end)], [(phone, end)]) as Festival's utterance has them."""
    with tempfile.TemporaryDirectory(prefix="streamchar-festival-") as tmp:
        wav, script = Path(tmp) / "speech.wav", Path(tmp) / "say.scm"
        script.write_text(
            f"(voice_{voice})\n(Parameter.set 'Duration_Stretch {1.0 / rate:.4f})\n"
            f"(set! utt (Utterance Text {_scheme_string(text)}))\n(utt.synth utt)\n(utt.save.wave utt {_scheme_string(str(wav))} 'riff)\n"
            '(mapcar (lambda (w) (format t "W %s %f %f\\n" (item.name w) (item.feat w "word_start") (item.feat w "word_end")))'
            " (utt.relation.items utt 'Word))\n"
            "(mapcar (lambda (s) (format t \"S %s %f\\n\" (item.name s) (item.feat s \"end\"))) (utt.relation.items utt 'Segment))\n"
        )  # fmt: skip
        out = _run(["festival", "-b", str(script)], "festival")
        if not wav.is_file():
            raise StreamcharError(f"festival wrote no audio for voice {voice!r}: {out.strip()[-300:]}")
        audio, sr = read_wav(wav)
    words = [(p[1], float(p[2]), float(p[3])) for p in (line.split() for line in out.splitlines()) if len(p) == 4 and p[0] == "W"]
    phones = [(p[1], float(p[2])) for p in (line.split() for line in out.splitlines()) if len(p) == 3 and p[0] == "S"]
    return audio, sr, words, phones


def flite_speak(text: str, voice: str, rate: float, pitch: float) -> tuple[np.ndarray, int, list[tuple[str, float]]]:
    """(samples, rate, [(phone, end)]): Flite's audio and its `-psdur` phone end times."""
    with tempfile.TemporaryDirectory(prefix="streamchar-flite-") as tmp:
        wav = Path(tmp) / "speech.wav"
        f0 = ["--setf", f"int_f0_target_mean={pitch:.1f}"] if pitch > 0 else []  # 0: the voice's own
        out = _run(["flite", "-voice", voice, "--setf", f"duration_stretch={1.0 / rate:.4f}", *f0, "-psdur", "-t", text, "-o", str(wav)],
                   "flite")  # fmt: skip
        if not wav.is_file():
            raise StreamcharError(f"flite wrote no audio for voice {voice!r}")
        audio, sr = read_wav(wav)
    phones = [(m.group(1), float(m.group(2))) for m in re.finditer(r"(\S+):([0-9.]+)", out)]
    return audio, sr, phones


def word_phones(word: str) -> list[str]:
    """A word's CMU phones, stress marked ("k", "ae1", "t"), as Flite says it alone (`t2p`: its
    lexicon, else its letter-to-sound rules)."""
    return [p for p in _run(["t2p", word], "flite").split() if p.rstrip("012") != "pau"]


def group_phones(words: list[str], phones: list[tuple[str, float]], pronunciations: list[list[str]]) -> list[tuple[float, float]]:
    """(start, end) of each word: its pronunciation's phone count taken in turn from the
    utterance's phones (pauses between words skipped). An utterance whose phones do not add up
    to the words' is refused rather than guessed at."""
    spoken = []
    start = 0.0
    for name, end in phones:
        if name.rstrip("012") != "pau":
            spoken.append((start, end))
        start = end
    counts = [len(p) for p in pronunciations]
    if sum(counts) != len(spoken) or min(counts, default=1) == 0:
        raise UnspeakableText(f"flite spoke {len(spoken)} phones for words that have {sum(counts)}: {' '.join(words)[:80]!r}")
    out, k = [], 0
    for n in counts:
        out.append((spoken[k][0], spoken[k + n - 1][1]))
        k += n
    return out


def _festival_words(tokens: list[str], words: list[tuple[str, float, float]]) -> list[tuple[float, float]]:
    """Festival's words onto the transcript's: a transcript word Festival splits ("sea-shore")
    spans the pieces whose letters make it up."""
    letters = lambda w: re.sub(r"[^a-z]", "", w.lower())  # noqa: E731
    out, k = [], 0
    for token in tokens:
        want, have, first = letters(token), "", k
        while k < len(words) and len(have) < len(want):
            have += letters(words[k][0])
            k += 1
        if have != want:
            raise UnspeakableText(f"festival's words do not match the transcript at {token!r} (it said {have!r})")
        out.append((words[first][1], words[k - 1][2]))
    return out


def speak_with(engine: str, text: str, tokens: list[str], voice_name: str, rate: float, pitch: float
               ) -> tuple[np.ndarray, int, list[tuple[float, float]], list[tuple[str, float, float]]]:  # fmt: skip
    """float32 audio, its rate, each transcript word's (start, end) and the phones (espeak's
    names, start, end), from `engine` (festival or flite)."""
    if engine == "festival":
        audio, sr, words, phones = festival_speak(text, voice_name, rate)
        spans = _festival_words(tokens, words)
    elif engine == "flite":
        audio, sr, phones = flite_speak(text, voice_name, rate, pitch)
        spans = group_phones(tokens, phones, [word_phones(t) for t in tokens])
    else:
        raise StreamcharError(f"unknown speech engine {engine!r}; accepted: espeak, festival, flite")
    starts = [0.0] + [end for _, end in phones[:-1]]
    timed = [(kirshenbaum(name), start, end) for (name, end), start in zip(phones, starts) if end > start]
    return np.asarray(audio, np.float32), sr, spans, timed
