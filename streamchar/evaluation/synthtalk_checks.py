"""Checks that SynthTalk is real enough to learn from: intelligible speech, a mouth that follows it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamchar.data.audio import read_wav
from streamchar.data.motion import loudness
from streamchar.data.mp4 import read_mp4
from streamchar.errors import StreamcharError
from streamchar.evaluation.asr import Recognizer, word_error_rate


def mouth_opening(frames: np.ndarray) -> np.ndarray:
    """Per-frame count of mouth-interior pixels, read from the decoded video itself.

    The renderer paints the inside of an open mouth dark red (60, 15, 20); nothing else
    in a SynthTalk frame has that colour, so its area measures how far the mouth is open.
    """
    f = frames.astype(np.int16)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    mask = (np.abs(r - 60) < 28) & (g < 36) & (b < 42) & (r - g > 22)
    return mask.reshape(len(frames), -1).sum(axis=1).astype(np.float64)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return 0.0 if a.std() == 0 or b.std() == 0 else float(np.corrcoef(a, b)[0, 1])


def mouth_loudness_correlation(clip_dir: Path, record: dict) -> float:
    """Pearson correlation, over the clip's frames, of mouth opening and audio RMS."""
    frames = read_mp4(clip_dir / record["files"]["video"]).frames
    audio, rate = read_wav(clip_dir / record["files"]["audio"])
    spf = rate // record["fps"]
    return _correlation(mouth_opening(frames), loudness(audio, spf, len(frames)))


def mouth_follows_speech(path: Path, max_lag: int = 6) -> tuple[float, int]:
    """For an MP4 with its audio (a generated clip): the correlation of mouth opening with audio
    RMS, and the lag in frames (within ±max_lag; positive: the mouth comes later) where the two
    correlate best, over the frames away from the ends."""
    clip = read_mp4(path)
    if not clip.frames.size or not clip.sample_rate:
        raise StreamcharError(f"{path} needs a video and an audio track")
    mouth = mouth_opening(clip.frames)
    rms = loudness(clip.audio, int(round(clip.sample_rate / clip.fps)), len(clip.frames))
    return _correlation(mouth, rms), best_lag(mouth, rms, max_lag)


def best_lag(mouth: np.ndarray, rms: np.ndarray, max_lag: int = 6) -> int:
    """The lag in frames (within ±max_lag; positive: the mouth comes later) at which mouth
    opening and loudness correlate best, over the frames away from the ends."""
    inner = slice(max_lag, len(mouth) - max_lag)
    return max(range(-max_lag, max_lag + 1), key=lambda k: _correlation(np.roll(mouth, -k)[inner], rms[inner]))


def speech_wer(records: list[dict]) -> dict:
    """pocketsphinx WER of the clips' audio against their transcripts (closed-vocabulary LM)."""
    transcripts = [r["transcript"] for r in records]
    rec = Recognizer(transcripts)
    hyps = []
    for r in records:
        audio, rate = read_wav(Path(r["_dir"]) / r["files"]["audio"])
        hyps.append(rec.transcribe(audio, rate))
    res = word_error_rate(transcripts, hyps)
    by_voice: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_voice.setdefault(r["character"]["voice"]["name"], []).append(i)
    per_voice = {
        v: word_error_rate([transcripts[i] for i in idx], [hyps[i] for i in idx]).wer for v, idx in sorted(by_voice.items())
    }
    return {
        "wer": res.wer,
        "reference_words": res.reference_words,
        "substitutions": res.substitutions,
        "deletions": res.deletions,
        "insertions": res.insertions,
        "wer_by_voice": per_voice,
        "out_of_dictionary": rec.out_of_dictionary,
    }
