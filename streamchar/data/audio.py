"""Waveform helpers: resampling and WAV files."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np

from streamchar.errors import StreamcharError


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling along the last axis (float32 in, float32 out)."""
    if source_rate == target_rate:
        return np.asarray(audio, dtype=np.float32)
    g = math.gcd(source_rate, target_rate)
    from scipy.signal import resample_poly  # here, not at the top: scipy.signal takes over a second to import

    return resample_poly(audio, target_rate // g, source_rate // g, axis=-1).astype(np.float32)


SPEECH_RMS = 1e-3  # quieter audio is taken for no speech


def is_silent(audio: np.ndarray) -> bool:
    """No samples, or none above the noise floor (`SPEECH_RMS`): no speech to train on."""
    return len(audio) == 0 or float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) < SPEECH_RMS


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """Mono 16-bit PCM."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Float32 mono samples in [-1, 1] and the sample rate (stereo is averaged)."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise StreamcharError(f"{path}: only 16-bit PCM WAV is accepted, this one is {8 * w.getsampwidth()}-bit")
            rate, channels, n = w.getframerate(), w.getnchannels(), w.getnframes()
            raw = w.readframes(n)
    except (OSError, EOFError, wave.Error) as e:
        raise StreamcharError(f"cannot read WAV file {path}: {e}") from None
    frame = 2 * channels
    data = np.frombuffer(raw[: len(raw) // frame * frame], dtype="<i2").astype(np.float32) / 32768.0  # whole frames only: a cut file
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    return data, rate
