"""Mouth shapes from espeak-ng phonemes, with co-articulation.

Each phoneme maps to a viseme target (jaw opening, lip width, lip rounding) and a
dominance. The mouth at time t blends the targets of nearby phonemes, weighted by
dominance times an exponential fall-off from each phoneme's centre (the
Cohen-Massaro model): bilabials close the lips firmly, weak consonants borrow the
shape of the neighbouring vowels, and the mouth moves smoothly between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamchar.data.speech import Timed


@dataclass(frozen=True)
class Viseme:
    open: float  # 0 closed .. 1 wide open
    width: float  # 0 narrow .. 1 spread
    round: float  # 0 flat .. 1 rounded/protruded
    dominance: float


REST = Viseme(0.0, 0.35, 0.0, 0.6)

# Kirshenbaum (espeak) phoneme names, stress and length marks stripped.
_TABLE: dict[str, Viseme] = {
    # open vowels
    "a": Viseme(0.85, 0.55, 0.0, 1.0),
    "aa": Viseme(0.9, 0.5, 0.0, 1.0),
    "A": Viseme(0.95, 0.45, 0.1, 1.0),
    "V": Viseme(0.7, 0.45, 0.05, 1.0),
    "aI": Viseme(0.8, 0.6, 0.0, 1.0),
    "aU": Viseme(0.8, 0.4, 0.4, 1.0),
    # mid vowels
    "E": Viseme(0.6, 0.65, 0.0, 1.0),
    "e": Viseme(0.5, 0.7, 0.0, 1.0),
    "eI": Viseme(0.5, 0.7, 0.0, 1.0),
    "@": Viseme(0.4, 0.45, 0.0, 0.7),
    "3": Viseme(0.45, 0.4, 0.25, 1.0),
    "O": Viseme(0.7, 0.3, 0.6, 1.0),
    "0": Viseme(0.75, 0.35, 0.45, 1.0),
    "OI": Viseme(0.65, 0.35, 0.5, 1.0),
    "o": Viseme(0.55, 0.25, 0.75, 1.0),
    "oU": Viseme(0.55, 0.25, 0.75, 1.0),
    # close vowels
    "i": Viseme(0.25, 0.9, 0.0, 1.0),
    "I": Viseme(0.3, 0.8, 0.0, 0.9),
    "u": Viseme(0.25, 0.1, 1.0, 1.0),
    "U": Viseme(0.3, 0.2, 0.8, 1.0),
    # consonants
    "p": Viseme(0.0, 0.35, 0.1, 3.0),
    "b": Viseme(0.0, 0.35, 0.1, 3.0),
    "m": Viseme(0.0, 0.35, 0.1, 3.0),
    "f": Viseme(0.08, 0.5, 0.0, 2.0),
    "v": Viseme(0.08, 0.5, 0.0, 2.0),
    "T": Viseme(0.2, 0.55, 0.0, 1.2),
    "D": Viseme(0.2, 0.55, 0.0, 1.2),
    "s": Viseme(0.12, 0.75, 0.0, 1.2),
    "z": Viseme(0.12, 0.75, 0.0, 1.2),
    "S": Viseme(0.2, 0.2, 0.8, 1.5),
    "Z": Viseme(0.2, 0.2, 0.8, 1.5),
    "tS": Viseme(0.2, 0.2, 0.8, 1.5),
    "dZ": Viseme(0.2, 0.2, 0.8, 1.5),
    "t": Viseme(0.18, 0.55, 0.0, 0.6),
    "d": Viseme(0.18, 0.55, 0.0, 0.6),
    "n": Viseme(0.18, 0.55, 0.0, 0.5),
    "l": Viseme(0.3, 0.5, 0.0, 0.5),
    "r": Viseme(0.25, 0.3, 0.5, 0.9),
    "w": Viseme(0.15, 0.1, 1.0, 2.0),
    "j": Viseme(0.2, 0.75, 0.0, 0.6),
    "k": Viseme(0.3, 0.5, 0.0, 0.4),
    "g": Viseme(0.3, 0.5, 0.0, 0.4),
    "N": Viseme(0.25, 0.5, 0.0, 0.4),
    "h": Viseme(0.4, 0.5, 0.0, 0.2),
    "?": Viseme(0.1, 0.45, 0.0, 0.3),
}
_VOWEL_FALLBACK = Viseme(0.5, 0.5, 0.1, 0.9)
_CONSONANT_FALLBACK = Viseme(0.2, 0.5, 0.0, 0.5)


def viseme_for(phoneme: str) -> Viseme:
    """Viseme of an espeak phoneme name such as "@2", "a#", "i:", "tS" or "_:" (a pause)."""
    name = phoneme.strip()
    if not name or name.startswith("_"):
        return REST
    # drop stress, length and palatalisation marks; a digit is a variant suffix ("@2", "I2")
    # unless it is the phoneme itself ("3:" as in "bird", "0" as in "lot")
    core = "".join(c for c in name if c not in ":#',;!=")
    if len(core) > 1:
        core = core.rstrip("0123456789") or core
    if not core:
        return REST
    for candidate in (core, core[:2], core[:1]):
        if candidate in _TABLE:
            return _TABLE[candidate]
    return _VOWEL_FALLBACK if core[0].lower() in "aeiouy@03" else _CONSONANT_FALLBACK


def mouth_track(phonemes: Sequence[Timed], times: np.ndarray, tau: float = 0.045) -> np.ndarray:
    """Per-time mouth state (open, width, round), shape (len(times), 3), values in [0, 1].

    Silence before, between and after phonemes pulls toward the closed rest shape.
    """
    if len(phonemes) == 0:
        return np.tile(np.array([REST.open, REST.width, REST.round], np.float32), (len(times), 1))
    vis = [viseme_for(p.label) for p in phonemes]
    centers = np.array([(p.start + p.end) / 2 for p in phonemes])
    halfdur = np.array([(p.end - p.start) / 2 for p in phonemes])
    targets = np.array([[v.open, v.width, v.round] for v in vis], np.float64)
    dom = np.array([v.dominance for v in vis])
    # rest anchors before the first and after the last phoneme
    lead, tail = phonemes[0].start - 0.12, phonemes[-1].end + 0.12
    centers = np.concatenate([[lead], centers, [tail]])
    halfdur = np.concatenate([[0.05], halfdur, [0.05]])
    rest = np.array([REST.open, REST.width, REST.round])
    targets = np.vstack([rest, targets, rest])
    dom = np.concatenate([[REST.dominance], dom, [REST.dominance]])
    # distance outside each phoneme's own span; inside it the phoneme holds full weight
    d = np.maximum(np.abs(times[:, None] - centers[None, :]) - halfdur[None, :] * 0.5, 0.0)
    w = dom[None, :] * np.exp(-d / tau) + 1e-9
    out = (w @ targets) / w.sum(axis=1, keepdims=True)
    # far from any phoneme (long silences) relax to rest
    nearest = d.min(axis=1)
    relax = np.clip((nearest - 0.15) / 0.2, 0.0, 1.0)[:, None]
    out = out * (1 - relax) + rest[None, :] * relax
    return np.clip(out, 0.0, 1.0).astype(np.float32)
