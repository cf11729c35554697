"""Transcript coverage of a long stream: which script words were spoken, in order, which were
left out and which were said again.

The recognised words are aligned to the transcript with the minimum-edit alignment that WER
uses (jiwer), on the same normalised words. A transcript word counts as spoken when the
alignment matches it; unmatched transcript words (deleted or substituted) are omitted; an
inserted recognised word is a repeat when it equals one of the last `window` transcript
words matched before it (a stream that loops back over its script)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import jiwer

from streamchar.utils.text import normalize_words


@dataclass(frozen=True)
class Coverage:
    transcript_words: int
    spoken_in_order: int
    omitted: int
    repeated: int
    # for each transcript word matched: (its index in the transcript, the index of the recognised word)
    matches: tuple[tuple[int, int], ...]

    @property
    def coverage(self) -> float:
        return self.spoken_in_order / self.transcript_words if self.transcript_words else 0.0

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("matches")
        d["coverage"] = self.coverage
        return d


def transcript_coverage(transcript: str, recognised: list[str] | str, window: int = 8) -> Coverage:
    ref = normalize_words(transcript)
    hyp = normalize_words(recognised) if isinstance(recognised, str) else [w for x in recognised for w in normalize_words(x)]
    if not ref:
        return Coverage(0, 0, 0, 0, ())
    if not hyp:
        return Coverage(len(ref), 0, len(ref), 0, ())
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    matches: list[tuple[int, int]] = []
    repeated = 0
    for chunk in out.alignments[0]:
        if chunk.type == "equal":
            matches += [(chunk.ref_start_idx + k, chunk.hyp_start_idx + k) for k in range(chunk.ref_end_idx - chunk.ref_start_idx)]
        elif chunk.type == "insert":
            recent = {ref[i] for i, _ in matches[-window:]}
            repeated += sum(hyp[j] in recent for j in range(chunk.hyp_start_idx, chunk.hyp_end_idx))
    return Coverage(len(ref), len(matches), len(ref) - len(matches), repeated, tuple(matches))
