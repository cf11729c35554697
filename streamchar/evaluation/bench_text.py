"""Does a generator read its transcript? Its losses on held-out windows with the true transcripts
against the same windows, noise and t with the transcripts rotated by one within the batch.

A model that speaks from its text has a clearly lower audio loss (and, where it has the phoneme
head, a higher phoneme accuracy) with the true transcript, most of all at high noise where the
audio itself says little; one that has only learned a speech prior shows no gap.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from streamchar.data.latents import LatentCache
from streamchar.diffusion.flow import noisy, velocity_target
from streamchar.model.checkpoint import load_generator
from streamchar.model.dit import VideoInput
from streamchar.training.batch import collate
from streamchar.training.windows import Window, WindowSource

TIMES = (0.1, 0.3, 0.5, 0.7, 0.9, 1.0)


def _rotated(windows: list[Window]) -> list[Window]:
    return [dataclasses.replace(w, text_ids=o.text_ids, word_numbers=o.word_numbers, words=o.words)
            for w, o in zip(windows, windows[1:] + windows[:1])]  # fmt: skip


@torch.no_grad()
def bench_text_reading(checkpoint: str | Path, cache: Path, split: str = "test-unseen", windows: int = 64, batch: int = 16,
                       seed: int = 0) -> dict:  # fmt: skip
    model, prompt_encoder, meta = load_generator(checkpoint)
    model.eval()
    cfg = model.cfg
    source = WindowSource(LatentCache(cache), cfg, model.tokenizer, split)
    later = [k for k, (_, c) in enumerate(source.index) if c > 0]  # chunks with history: the text must be found, not just begun
    rng = np.random.default_rng(seed)
    picked = [source.window(later[int(k)]) for k in rng.choice(len(later), min(windows, len(later)), replace=False)]
    speech_only = meta.get("stage") == "orchestrator"
    g = torch.Generator().manual_seed(seed)
    shuffled = _rotated(picked)
    rows = []
    for t_value in TIMES:
        sums = {"audio_true": 0.0, "audio_rotated": 0.0, "phoneme_true": 0.0, "phoneme_rotated": 0.0}
        for start in range(0, len(picked), batch):
            group = picked[start : start + batch]
            true, rotated = collate(group), collate(shuffled[start : start + batch])
            t = torch.full((len(group),), t_value)
            ev, ea = torch.randn(true.video.shape, generator=g), torch.randn(true.audio.shape, generator=g)
            xv, xa = noisy(true.video, ev, t), noisy(true.audio, ea, t)
            prompt = prompt_encoder(true.prompts)
            target = velocity_target(true.audio, ea)
            for name, b in (("true", true), ("rotated", rotated)):
                x = b.context(prompt).orchestrator_input(xa, t)
                video = None if speech_only else VideoInput(xv)
                _, da, orch = model.velocity(video, x, prompt, conditions=None if speech_only else b.conditions)
                share = len(group) / len(picked)
                sums[f"audio_{name}"] += float(((da - target) ** 2).mean()) * share
                if orch.phoneme_logits is not None:
                    chunk = orch.phoneme_logits[:, -target.shape[-1] :].argmax(-1)
                    sums[f"phoneme_{name}"] += float((chunk == true.phonemes[:, -target.shape[-1] :]).float().mean()) * share
        row = {"t": t_value, **{k: round(v, 4) for k, v in sums.items()}}
        row["audio_gap"] = round(sums["audio_rotated"] - sums["audio_true"], 4)
        if model.orchestrator.phoneme_head is None:
            for k in ("phoneme_true", "phoneme_rotated"):
                row.pop(k)
        rows.append(row)
    gaps = [r["audio_gap"] / max(r["audio_true"], 1e-8) for r in rows]
    return {"checkpoint": str(checkpoint), "stage": meta.get("stage"), "step": meta.get("step"), "split": split,
            "windows": len(picked), "speech_only": speech_only, "by_t": rows,
            "mean_relative_audio_gap": round(float(np.mean(gaps)), 4)}  # fmt: skip
