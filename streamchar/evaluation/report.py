"""Writing an evaluation: JSON, a Markdown table laid out like the paper's Table 1 (short) or
Table 2 (long), and PNG plots."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from streamchar.utils.files import atomic_write_text


def _fmt(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _labelled(report: dict) -> list[tuple[str, dict]]:
    """Each system's row, then its rows by group (`by_group`, e.g. by speech engine)."""
    out = []
    for name, s in report["systems"].items():
        out.append((name, s["summary"]))
        out += [(f"{name} · {group}", row) for group, row in s.get("by_group", {}).items()]
    return out


def _columns(report: dict) -> list[tuple[str, Callable[[dict], str]]]:
    """The metric columns of the protocol's table, each a header and how a row shows it; where
    Whisper judged, pocketsphinx's WER follows the judge's (older reports have no such column)."""
    m = report["metrics"]
    wer = [("WER (%) ↓", lambda r: _fmt(r["wer"]))]
    if m.get("asr_second"):
        wer.append(("WER pocketsphinx (%) ↓", lambda r: _fmt(r.get("wer_pocketsphinx"))))
    identity = (f"Identity ({m['identity']}) ↑", lambda r: _fmt(r["identity_similarity"], 3))
    if report["protocol"] == "short":
        return [*wer, ("Sync-C ↑", lambda r: _fmt(r["sync_c"])), ("Sync-D ↓", lambda r: _fmt(r["sync_d"])),
                ("Offset", lambda r: _fmt(r["sync_offset_median"], 0)), identity,
                ("ID consistent ↑", lambda r: _fmt(r["identity_consistent"], 3)), (f"{m['frame_fd']} ↓", lambda r: _fmt(r["fd_frames"])),
                (f"{m['video_fd']} ↓", lambda r: _fmt(r["fd_video"]))]  # fmt: skip
    return [("Coverage ↑", lambda r: _fmt(r["coverage"], 3)), ("Omitted ↓", lambda r: str(r["omitted"])),
            ("Repeated ↓", lambda r: str(r["repeated"])), *wer, identity,
            (f"Quality Drift ({m['quality']}) ↓", lambda r: _fmt(r["quality_drift"], 4)), ("Dynamic ↑", lambda r: _fmt(r["dynamic"])),
            ("Sync-C ↑", lambda r: _fmt(r["sync_c"]))]  # fmt: skip


def markdown_table(report: dict) -> str:
    m = report["metrics"]
    columns = _columns(report)
    head = ["Method"] + [h for h, _ in columns] + ["Clips" if report["protocol"] == "short" else "Streams", "Failed"]
    rows = []
    for name, r in _labelled(report):
        shown = [show(r) for _, show in columns] if r.get("evaluated") else ["–"] * len(columns)
        rows.append([name, *shown, str(r.get("evaluated", 0)), str(r.get("failed", 0))])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    notes = [
        "",
        f"Protocol `{report['protocol']}`, {report['fps']:g} fps. Networks: sync {m['sync']}; identity {m['identity']}; "
        f"frame Fréchet distance {m['frame_fd']}; video Fréchet distance {m['video_fd']}; per-frame quality {m['quality']}; "
        f"optical flow {m['flow']}; ASR {m['asr']}" + (f"; second WER column {m['asr_second']}." if m.get("asr_second") else "."),
        "Fréchet distances are to the ground truth; the ground-truth row compares its two halves.",
    ]
    failed = [(name, f) for name, s in report["systems"].items() for f in s["failed"]]
    if failed:
        notes.append("")
        notes += [f"- failed: {name} / {f['name']}: {f['reason']}" for name, f in failed[:50]]
    return "\n".join(lines + notes) + "\n"


def plot_report(report: dict, path: Path) -> Path:
    """Short: per-item Sync-C and identity distributions. Long: per-chunk quality and identity
    over time, and the transcript position against time, one line per system (mean over streams)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = report["systems"]
    if report["protocol"] == "long":
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        for name, s in systems.items():
            lines = [i["timeline"] for i in s["items"] if "timeline" in i]
            if not lines:
                continue
            step = lines[0]["chunk_seconds"]
            for ax, key in zip(axes[:2], ("quality", "identity")):
                n = min(len(t[key]) for t in lines)
                if n:
                    ax.plot(np.arange(n) * step, np.mean([t[key][:n] for t in lines], axis=0), label=name)
            for k, t in enumerate(lines):
                if t["transcript_position"]:
                    tt, idx = zip(*t["transcript_position"])
                    axes[2].plot(tt, idx, ".", ms=2, label=name if k == 0 else None)
        titles = (f"quality per chunk ({report['metrics']['quality']})", f"identity per chunk ({report['metrics']['identity']})",
                  "transcript word spoken (index) vs time")
        for ax, title in zip(axes, titles):
            ax.set_title(title)
            ax.set_xlabel("seconds")
            ax.legend(fontsize=8)
    else:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        for ax, key, title in zip(axes, ("sync_c", "identity_similarity", "offset"), ("Sync-C per clip", "identity per clip", "AV offset (frames)")):
            data = [[i[key] for i in s["items"]] for s in systems.values()]
            ax.hist(data, bins=20, label=list(systems), alpha=0.7)
            ax.set_title(title)
            ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(report: dict, out: Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"eval-{report['protocol']}.json", "markdown": out / f"eval-{report['protocol']}.md",
             "plot": out / f"eval-{report['protocol']}.png"}
    atomic_write_text(paths["json"], json.dumps(report, indent=1, default=float))
    atomic_write_text(paths["markdown"], markdown_table(report))
    plot_report(report, paths["plot"])
    return paths
