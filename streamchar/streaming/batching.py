"""Several sessions' next chunks through the model at once: one orchestrator pass and one DiT
pass per sampler step for all of them, whatever their characters, transcripts and history
lengths. Transcripts are right-padded and histories left-padded with masks, as training batches
are, so each session gets the chunk it would get alone (within float tolerance); each draws its
noise from its own generator. Sessions whose condition tokens differ (a first chunk has no sink
or motion latents yet) run in separate groups."""

from __future__ import annotations

import time

import torch

from streamchar.model.context import DenoiseContext
from streamchar.model.dit import ConditionInput
from streamchar.streaming.engine import ChunkLatents, StreamSession
from streamchar.streaming.sampler import sample_chunk


def _cat(parts: list[torch.Tensor | None]) -> torch.Tensor | None:
    return None if parts[0] is None else torch.cat(parts)  # type: ignore[arg-type]


def _right_pad(rows: list[torch.Tensor], width: int) -> torch.Tensor:
    return torch.cat([torch.nn.functional.pad(r, (0, width - r.shape[-1])) for r in rows])


def _left_pad(rows: list[torch.Tensor], width: int) -> torch.Tensor:
    return torch.cat([torch.nn.functional.pad(r, (width - r.shape[-1], 0)) for r in rows])


def collate_contexts(contexts: list[DenoiseContext]) -> DenoiseContext:
    """One batch of single-sample contexts: text right-padded, history (and the positions of its
    latents) left-padded, each with a mask; the condition tokens must agree in kind."""
    text = max(c.text_ids.shape[1] for c in contexts)
    history = max(c.history.shape[2] for c in contexts)
    history_mask = torch.cat([torch.nn.functional.pad(torch.ones(1, c.history.shape[2], dtype=torch.long, device=c.history.device),
                                                      (history - c.history.shape[2], 0)) for c in contexts])  # fmt: skip
    positions = None if contexts[0].text_positions is None else _left_pad([c.text_positions for c in contexts], history + (
        contexts[0].text_positions.shape[1] - contexts[0].history.shape[2]))
    conditions = ConditionInput(_cat([c.conditions.reference for c in contexts]), _cat([c.conditions.sink for c in contexts]),
                                _cat([c.conditions.motion for c in contexts]))  # fmt: skip
    return DenoiseContext(torch.cat([c.reference_voice for c in contexts]), _right_pad([c.text_ids for c in contexts], text),
                          _right_pad([c.text_mask for c in contexts], text), _right_pad([c.word_numbers for c in contexts], text),
                          torch.cat([c.word_counts for c in contexts]), _left_pad([c.history for c in contexts], history),
                          history_mask, torch.cat([c.prompt for c in contexts]), conditions, positions)  # fmt: skip


def condition_groups(sessions: list[StreamSession]) -> list[list[int]]:
    """The sessions (by position, order kept) whose next chunks have the same condition tokens
    (sink, motion) and so can share a batch."""
    groups: dict[tuple[bool, bool], list[int]] = {}
    for i, s in enumerate(sessions):
        groups.setdefault(tuple(x is not None for x in s.condition_latents), []).append(i)
    return list(groups.values())


def next_chunks(sessions: list[StreamSession], indices: list[int]) -> list[ChunkLatents | Exception]:
    """Each session's next chunk (`indices`: their chunk numbers), sampled together where their
    condition tokens agree. A session whose text cannot be read (its plan failed) gets its error
    and takes no part; the others go on."""
    results: list[ChunkLatents | Exception | None] = [None] * len(sessions)
    for members in condition_groups(sessions):
        _sample_group([(sessions[i], indices[i], i) for i in members], results)
    return results  # type: ignore[return-value]


def _sample_group(members: list[tuple[StreamSession, int, int]], results: list) -> None:
    """`members`: (session, its chunk number, its slot in `results`)."""
    started, noise = [], []
    for s, index, slot in members:
        try:
            noise.append(s.begin_chunk())
            started.append((s, index, slot))
        except Exception as e:  # noqa: BLE001 - one session's failure is that session's alone
            results[slot] = e
    if not started:
        return
    first = started[0][0]
    if any(s.model is not first.model or s.sampler_settings != first.sampler_settings for s, _, _ in started):
        raise ValueError("sessions batched together must share the model and the sampler settings")
    empty = [s.conditions.empty_prompt for s, _, _ in started]
    t0 = time.perf_counter()
    with torch.no_grad():
        out = sample_chunk(first.model, collate_contexts([s.last_context for s, _, _ in started]), _cat(empty),
                           torch.cat([v for v, _ in noise]), torch.cat([a for _, a in noise]), first.sampler_settings)
    timings = {**out.timings, "batch": float(len(started)), "batch_s": time.perf_counter() - t0}
    for k, (s, index, slot) in enumerate(started):
        results[slot] = s.end_chunk(index, out.video[k : k + 1], out.audio[k : k + 1], out.pointer[k : k + 1], dict(timings))
