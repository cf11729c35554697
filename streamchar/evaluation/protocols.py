"""The paper's two evaluation protocols (§5.3) on any set of systems: ground truth and folders
of generated MP4s, all scored by the same networks and the same recogniser (and, where Whisper
judges, pocketsphinx's WER beside it).

- short: clips of about 10 s (paper: 150 clips from original transcripts and first frames);
  Table 1's metrics: WER (beside ground truth's), Sync-C/D, identity, FID/FVD or FD-<name>.
- long: streams of minutes (paper: 50 five-minute streams from transcripts of more than 300
  words); Table 2's metrics: transcript coverage, identity, Quality Drift, Dynamic degree,
  with per-chunk curves over time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamchar.errors import StreamcharError
from streamchar.evaluation.asr import Judge, Recognizer, make_judges, word_error_rate
from streamchar.evaluation.coverage import transcript_coverage
from streamchar.evaluation.frechet import GaussianStats, frechet_distance
from streamchar.evaluation.items import EvalItem, LoadedItem, load_item
from streamchar.evaluation.quality import FrameQuality, quality_drift
from streamchar.evaluation.scorers import FrechetFeatures, IdentityScorer, SyncScorer, dynamic_degree, read_reference

CHUNK_FRAMES = 33


@dataclass(frozen=True)
class Protocol:
    name: str
    clip_every_s: float  # where the 16-frame FVD clips start
    timeline: bool  # per-chunk curves for plots


PROTOCOLS = {"short": Protocol("short", 2.0, False), "long": Protocol("long", 10.0, True)}


@dataclass
class Scorers:
    sync: SyncScorer
    identity: IdentityScorer
    features: FrechetFeatures
    quality: FrameQuality
    raft: str | Path | None = None

    def names(self) -> dict:
        return {"sync": self.sync.name, "identity": self.identity.name, "frame_fd": self.features.frame_name,
                "video_fd": self.features.video_name, "quality": self.quality.name,
                "flow": "RAFT" if self.raft else "Farneback"}


@dataclass
class SystemResult:
    items: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    hypotheses: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    frame_features: list[np.ndarray] = field(default_factory=list)
    clip_features: list[np.ndarray] = field(default_factory=list)

    def subset(self, names: set[str]) -> SystemResult:
        """The items named (and the failures among them)."""
        keep = [k for k, item in enumerate(self.items) if item["name"] in names]
        pick = lambda values: [values[k] for k in keep]  # noqa: E731
        return SystemResult(pick(self.items), [f for f in self.failed if f["name"] in names], pick(self.hypotheses), pick(self.references),
                            pick(self.frame_features), pick(self.clip_features))


def _timeline(loaded: LoadedItem, per_frame_quality: np.ndarray, identity: np.ndarray, stride: int, words: list, matches: tuple) -> dict:
    """Per chunk (33 frames): mean quality and identity; transcript position over time."""
    n = len(loaded.frames) // CHUNK_FRAMES
    q = [float(per_frame_quality[k * CHUNK_FRAMES : (k + 1) * CHUNK_FRAMES].mean()) for k in range(n)]
    ident = [float(identity[k * CHUNK_FRAMES // stride : (k + 1) * CHUNK_FRAMES // stride].mean()) for k in range(n)]
    spoken = [(words[j][2], i) for i, j in matches]  # (time the word ended, its transcript index)
    return {"chunk_seconds": CHUNK_FRAMES / loaded.fps, "quality": q, "identity": ident, "transcript_position": spoken}


def evaluate_loaded(loaded: LoadedItem, scorers: Scorers, recognizer: Judge, protocol: Protocol,
                    second: Recognizer | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    """An item's scores; `second` (pocketsphinx where Whisper judges) adds its own hypothesis."""
    item, frames, fps = loaded.item, loaded.frames, loaded.fps
    words = recognizer.transcribe_words(loaded.audio, loaded.sample_rate)
    hyp = " ".join(w for w, _, _ in words)
    cov = transcript_coverage(item.transcript, [w for w, _, _ in words])
    sync = scorers.sync(frames, loaded.audio, loaded.sample_rate, fps)
    ident = scorers.identity(frames, read_reference(item.reference_image, frames))
    q = scorers.quality(frames)
    drift, drift_points = quality_drift(q, fps)
    dyn = dynamic_degree(frames, fps, scorers.raft)
    starts = list(range(0, max(1, len(frames) - 15), max(1, int(round(protocol.clip_every_s * fps)))))
    result = {
        "name": item.name, "seconds": len(frames) / fps, "recognised": hyp, **sync.summary(),
        "identity_similarity": ident["similarity"], "identity_consistent": ident["consistent"],
        "quality": float(q.mean()), "quality_drift": drift, "drift_points": drift_points,
        "dynamic": dyn["dynamic"], "moving_pairs": dyn["moving_pairs"], "flow_pairs": dyn["pairs"], **cov.summary(),
    }  # fmt: skip
    if second is not None:
        result["recognised_pocketsphinx"] = second.transcribe(loaded.audio, loaded.sample_rate)
    if protocol.timeline:
        result["timeline"] = _timeline(loaded, q, ident["per_frame"], scorers.identity.stride, words, cov.matches)
    return result, scorers.features.frames(frames), scorers.features.clips(frames, starts)


def evaluate_system(items: list[EvalItem], scorers: Scorers, recognizer: Judge, protocol: Protocol, fps: float,
                    on_item: Callable[[], None] | None = None, second: Recognizer | None = None) -> SystemResult:
    out = SystemResult()
    for item in items:
        try:
            loaded = load_item(item, fps)
            result, ff, cf = evaluate_loaded(loaded, scorers, recognizer, protocol, second)
        except StreamcharError as e:
            out.failed.append({"name": item.name, "video": str(item.video), "reason": str(e)})
        else:
            out.items.append(result)
            out.references.append(item.transcript)
            out.hypotheses.append(result["recognised"])
            out.frame_features.append(ff)
            out.clip_features.append(cf)
        if on_item:
            on_item()
    return out


def _fd(a: list[np.ndarray], b: list[np.ndarray]) -> float | None:
    fa, fb = [x for x in a if len(x)], [x for x in b if len(x)]
    if not fa or not fb:
        return None
    fa, fb = np.concatenate(fa), np.concatenate(fb)
    if len(fa) < 2 or len(fb) < 2:
        return None
    return frechet_distance(GaussianStats.of(fa), GaussianStats.of(fb))


def _mean(values: list) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def aggregate(res: SystemResult, reference: SystemResult | None) -> dict:
    """A system's row. Fréchet distances are to the ground truth; for the ground truth itself,
    between its two halves (even and odd items): the floor that sampling alone gives."""
    if not res.items:
        return {"evaluated": 0, "failed": len(res.failed)}
    if reference is None:
        fd_frames = _fd(res.frame_features[0::2], res.frame_features[1::2])
        fd_video = _fd(res.clip_features[0::2], res.clip_features[1::2])
    else:
        fd_frames = _fd(res.frame_features, reference.frame_features)
        fd_video = _fd(res.clip_features, reference.clip_features)
    w = word_error_rate(res.references, res.hypotheses)
    items = res.items
    second = {}
    if all("recognised_pocketsphinx" in i for i in items):  # where Whisper judges
        second["wer_pocketsphinx"] = 100 * word_error_rate(res.references, [i["recognised_pocketsphinx"] for i in items]).wer
    return {
        "evaluated": len(items), "failed": len(res.failed), "seconds": float(sum(i["seconds"] for i in items)),
        "wer": 100 * w.wer, "wer_words": w.reference_words, **second,
        "sync_c": _mean([i["sync_c"] for i in items]), "sync_d": _mean([i["sync_d"] for i in items]),
        "sync_offset_median": float(np.median([i["offset"] for i in items])),
        "sync_offset_within_1": float(np.mean([abs(i["offset"]) <= 1 for i in items])),
        "identity_similarity": _mean([i["identity_similarity"] for i in items]),
        "identity_consistent": _mean([i["identity_consistent"] for i in items]),
        "fd_frames": fd_frames, "fd_video": fd_video,
        "quality": _mean([i["quality"] for i in items]), "quality_drift": _mean([i["quality_drift"] for i in items]),
        "dynamic": float(np.mean([i["dynamic"] for i in items])),
        "coverage": _mean([i["coverage"] for i in items]), "omitted": int(sum(i["omitted"] for i in items)),
        "repeated": int(sum(i["repeated"] for i in items)), "transcript_words": int(sum(i["transcript_words"] for i in items)),
    }  # fmt: skip


def run_protocol(protocol_name: str, systems: dict[str, list[EvalItem]], scorers: Scorers, fps: float,
                 ground_truth: str = "ground truth", on_item: Callable[[], None] | None = None, asr: str = "auto",
                 groups: dict[str, str] | None = None, threads: int = 0) -> dict:
    """Every system is scored; the first named `ground_truth` (when present) is the reference.
    `asr`: the judge (`evaluation/asr.py: resolve_asr`); the report's `asr` is the one that ran,
    and where Whisper judges each row also has `wer_pocketsphinx`. `groups` (item name -> group,
    such as SynthTalk's speech engine): each system's row again for each group's items alone."""
    if protocol_name not in PROTOCOLS:
        raise StreamcharError(f"unknown protocol {protocol_name!r}; accepted: {', '.join(PROTOCOLS)}")
    protocol = PROTOCOLS[protocol_name]
    transcripts = sorted({i.transcript for items in systems.values() for i in items if i.transcript.strip()})
    if not transcripts:
        raise StreamcharError("no item has a transcript")
    judges = make_judges(asr, transcripts, threads)
    raw = {name: evaluate_system(items, scorers, judges.main, protocol, fps, on_item, judges.second) for name, items in systems.items()}
    reference = raw.get(ground_truth)
    metrics = {**scorers.names(), "asr": judges.main.name, **({"asr_second": judges.second.name} if judges.second else {})}
    report = {"protocol": protocol_name, "metrics": metrics, "asr": judges.spec, "fps": fps, "systems": {}}
    if judges.second is not None:
        report["asr_second"] = "pocketsphinx"
    members: dict[str, set[str]] = {}
    for item, group in (groups or {}).items():
        members.setdefault(group, set()).add(item)
    for name, res in raw.items():
        against = None if name == ground_truth else reference
        by_group = {g: aggregate(res.subset(m), against.subset(m) if against is not None else None) for g, m in sorted(members.items())}
        report["systems"][name] = {
            "summary": aggregate(res, against),
            **({"by_group": {g: row for g, row in by_group.items() if row["evaluated"]}} if groups else {}),
            "items": res.items,
            "failed": res.failed,
        }
    return report
