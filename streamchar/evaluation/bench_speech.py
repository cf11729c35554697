"""The speech SynthTalk is made of (`streamchar bench voices`, `streamchar bench align`):
how well the project's judge recognises each engine's voices, and how close forced alignment
comes to the word times Festival reports for its own speech."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from streamchar.codecs.base import AudioCodec
from streamchar.data.align import align_words
from streamchar.data.harvard import split_sentences
from streamchar.data.speech import Voice, synthesize
from streamchar.errors import StreamcharError

RATE = 24000
CANDIDATES = ("espeak:en-us+f5", "espeak:en-us+f2", "espeak:en-us+adam", "espeak:en-us+edward", "espeak:en-us+michel", "espeak:en-us",
              "festival:cmu_us_slt_arctic_hts", "festival:kal_diphone", "flite:slt", "flite:rms", "flite:awb", "flite:kal16")  # fmt: skip
FESTIVAL = ("cmu_us_slt_arctic_hts", "kal_diphone")
KEEP_WER = 10.0  # SynthTalk keeps voices the judge recognises at or under this WER (%)


def voice_of(spec: str) -> Voice:
    """ENGINE:NAME at the engine's own pitch and rate."""
    engine, _, name = spec.partition(":")
    if engine not in ("espeak", "festival", "flite") or not name:
        raise StreamcharError(f"a voice is ENGINE:NAME with ENGINE espeak, festival or flite, got {spec!r}")
    return Voice(name, pitch=50 if engine == "espeak" else 0, pitch_range=50 if engine == "espeak" else 0, engine=engine)


@torch.no_grad()
def _round_trip(codec: AudioCodec, audio: np.ndarray) -> np.ndarray:
    n = len(audio) // codec.hop_length * codec.hop_length
    return codec.decode(codec.encode(torch.from_numpy(audio[:n])[None], codec.sample_rate))[0].numpy()


def bench_voices(specs: tuple[str, ...] = CANDIDATES, sentences: int = 30, codec: AudioCodec | None = None,
                 on_progress: Callable[[int, int], None] | None = None) -> dict:  # fmt: skip
    """WER (%) of the judge (pocketsphinx, closed vocabulary) on each voice speaking the first
    `sentences` test-split Harvard sentences; with `codec`, also after its round trip."""
    from streamchar.evaluation.asr import Recognizer, word_error_rate

    texts = split_sentences("test")[:sentences]
    judge = Recognizer(texts)
    rate = codec.sample_rate if codec is not None else RATE
    out = {}
    for k, spec in enumerate(specs):
        voice = voice_of(spec)
        audio = [synthesize(t, voice, rate).audio for t in texts]
        wer = word_error_rate(texts, [judge.transcribe(a, rate) for a in audio]).wer * 100
        out[spec] = {"wer": round(wer, 2), "kept": wer <= KEEP_WER}
        if codec is not None:
            after = word_error_rate(texts, [judge.transcribe(_round_trip(codec, a), rate) for a in audio]).wer * 100
            out[spec] |= {"wer_round_trip": round(after, 2), "round_trip_points": round(after - wer, 2)}
        if on_progress:
            on_progress(k + 1, len(specs))
    return {"sentences": len(texts), "judge": "pocketsphinx en-US, closed-vocabulary bigram LM", "keep_at_most_wer": KEEP_WER, "voices": out}


def bench_align(sentences: int = 30, on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Forced alignment's word starts and ends against Festival's own, per Festival voice."""
    texts = split_sentences("test")[:sentences]
    out = {}
    for v, name in enumerate(FESTIVAL):
        voice = voice_of(f"festival:{name}")
        starts, ends = [], []
        for k, text in enumerate(texts):
            speech = synthesize(text, voice, RATE)
            aligned = align_words(text, speech.audio, RATE)
            starts += [abs(a.start - b.start) for a, b in zip(aligned, speech.words)]
            ends += [abs(a.end - b.end) for a, b in zip(aligned, speech.words)]
            if on_progress:
                on_progress(v * len(texts) + k + 1, len(FESTIVAL) * len(texts))
        out[name] = {"words": len(starts), "start_error_mean_s": float(np.mean(starts)), "start_error_p90_s": float(np.percentile(starts, 90)),
                     "start_error_max_s": float(np.max(starts)), "end_error_mean_s": float(np.mean(ends))}  # fmt: skip
    return {"sentences": len(texts), "aligner": "pocketsphinx en-US forced alignment (streamchar.data.align)", "voices": out}
