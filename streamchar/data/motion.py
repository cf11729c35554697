"""Per-frame pose of a speaking character: mouth, blinks, head sway and nods, brows, gestures.

Everything the face does is driven by the speech: the mouth by the phoneme timings
(through `visemes`), head sway, bob and brows by the loudness envelope, nods by
stressed words. Blinks and gestures are random but scheduled up front so that the
clip's prompt can name the gestures that really happen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d

from streamchar.data.speech import Speech
from streamchar.data.visemes import mouth_track


@dataclass(frozen=True)
class Gesture:
    side: str  # "left" | "right" (the character's own side)
    kind: str  # "raises" | "waves"
    start: float  # seconds
    end: float


@dataclass
class PoseTrack:
    """Arrays of length n_frames; offsets are fractions of the frame size."""

    head_dx: np.ndarray
    head_dy: np.ndarray
    blink: np.ndarray
    brow: np.ndarray
    mouth: np.ndarray  # (n, 3): open, width, round
    hand: dict[str, np.ndarray]  # side -> raise amount 0..1
    wave: dict[str, np.ndarray]  # side -> horizontal hand offset
    gestures: list[Gesture] = field(default_factory=list)
    nods: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.blink)

    @staticmethod
    def neutral(n: int = 1) -> PoseTrack:
        z = np.zeros(n, np.float32)
        mouth = np.tile(np.array([0.0, 0.35, 0.0], np.float32), (n, 1))
        return PoseTrack(z, z, z, z, mouth, {"left": z, "right": z}, {"left": z, "right": z})


def loudness(audio: np.ndarray, samples_per_frame: int, n_frames: int) -> np.ndarray:
    """RMS per video frame (frame i covers samples [i*spf, (i+1)*spf))."""
    padded = np.zeros(n_frames * samples_per_frame, np.float32)
    m = min(len(audio), len(padded))
    padded[:m] = audio[:m]
    return np.sqrt((padded.reshape(n_frames, samples_per_frame) ** 2).mean(axis=1))


def _smooth(x: np.ndarray, frames: float) -> np.ndarray:
    return gaussian_filter1d(np.asarray(x, np.float64), frames, mode="nearest")


def _envelope(t: np.ndarray, start: float, end: float, ramp: float) -> np.ndarray:
    up = np.clip((t - start) / ramp, 0, 1)
    down = np.clip((end - t) / ramp, 0, 1)
    e = np.minimum(up, down)
    return 0.5 - 0.5 * np.cos(np.pi * e)


def plan_gestures(rng: np.random.Generator, speech: Speech, offset: float, duration: float) -> list[Gesture]:
    """0-2 hand gestures during speech, never overlapping on the same side."""
    count = int(rng.choice([0, 1, 2], p=[0.4, 0.45, 0.15]))
    speech_start = offset + (speech.words[0].start if speech.words else 0.0)
    speech_end = offset + (speech.words[-1].end if speech.words else duration)
    gestures: list[Gesture] = []
    for _ in range(count):
        length = float(rng.uniform(1.2, 2.5))
        latest = speech_end - length
        if latest <= speech_start:
            break
        start = float(rng.uniform(speech_start, latest))
        side = "left" if rng.random() < 0.5 else "right"
        if any(g.side == side and start < g.end + 0.3 and g.start < start + length + 0.3 for g in gestures):
            continue
        kind = "waves" if rng.random() < 0.35 else "raises"
        gestures.append(Gesture(side, kind, start, start + length))
    return sorted(gestures, key=lambda g: g.start)


def make_pose_track(
    speech: Speech, offset: float, n_frames: int, fps: int, samples_per_frame: int, rng: np.random.Generator
) -> PoseTrack:
    """Pose for every frame; `offset` is where the speech starts in the clip (s) and
    `speech.audio` must already be placed at that offset."""
    t = (np.arange(n_frames) + 0.5) / fps
    shifted = [type(p)(p.label, p.start + offset, p.end + offset) for p in speech.phonemes]
    mouth = mouth_track(shifted, t)

    energy = loudness(speech.audio, samples_per_frame, n_frames)
    energy = energy / (energy.max() + 1e-8)
    slow = _smooth(energy, 8.0)
    fast = _smooth(energy, 2.0)
    # jaw follows loudness too: quiet frames cannot be wide open
    mouth[:, 0] *= np.clip(0.35 + 0.9 * fast, 0.0, 1.0)

    ph = rng.uniform(0, 2 * np.pi, size=4)
    f1, f2 = rng.uniform(0.15, 0.35), rng.uniform(0.4, 0.8)
    amp = 0.010 + 0.02 * slow
    head_dx = amp * (np.sin(2 * np.pi * f1 * t + ph[0]) + 0.5 * np.sin(2 * np.pi * f2 * t + ph[1]))
    head_dy = 0.004 * np.sin(2 * np.pi * f1 * 0.7 * t + ph[2]) - 0.008 * fast

    nods = []
    for w in speech.words:
        if len(w.label) >= 5 and rng.random() < 0.3:
            c = w.start + offset
            if not nods or c - nods[-1] > 1.0:
                nods.append(c)
    for c in nods:
        head_dy = head_dy + 0.04 * np.where(np.abs(t - c) < 0.25, np.cos(np.pi * (t - c) / 0.5) ** 2, 0.0)

    brow = np.clip(1.6 * (slow - 0.25), 0.0, 1.0) * 0.6
    for c in nods:
        brow = brow + 0.4 * np.exp(-0.5 * ((t - c) / 0.15) ** 2)
    brow = np.clip(brow, 0.0, 1.0)

    blink = np.zeros(n_frames, np.float32)
    shape = np.array([0.5, 1.0, 1.0, 0.6, 0.2], np.float32)
    k = int(rng.uniform(0.3, 2.0) * fps)
    while k < n_frames:
        seg = blink[k : k + len(shape)]
        seg[:] = np.maximum(seg, shape[: len(seg)])
        k += int(max(1.5, rng.exponential(3.0)) * fps)

    duration = n_frames / fps
    gestures = plan_gestures(rng, speech, offset, duration)
    hand = {"left": np.zeros(n_frames), "right": np.zeros(n_frames)}
    wave = {"left": np.zeros(n_frames), "right": np.zeros(n_frames)}
    for g in gestures:
        env = _envelope(t, g.start, g.end, 0.35)
        hand[g.side] = np.maximum(hand[g.side], env)
        if g.kind == "waves":
            wave[g.side] = wave[g.side] + env * 0.04 * np.sin(2 * np.pi * 2.5 * (t - g.start))

    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    return PoseTrack(
        head_dx=f32(head_dx),
        head_dy=f32(head_dy),
        blink=blink,
        brow=f32(brow),
        mouth=mouth.astype(np.float32),
        hand={k: f32(v) for k, v in hand.items()},
        wave={k: f32(v) for k, v in wave.items()},
        gestures=gestures,
        nods=nods,
    )
