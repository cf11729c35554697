"""The demo's stream for a fixed seed, as latents: what `tests/test_demo_stream.py` compares
with `tests/data/demo_stream.safetensors`. Run as a script, it rewrites that file (only when a
change to the shipped models' behaviour is meant)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

FIXTURE = Path(__file__).parent / "data" / "demo_stream.safetensors"


def demo_stream(pipe) -> tuple[dict[str, torch.Tensor], dict[str, str]]:  # noqa: ANN001
    """Every chunk of `streamchar demo`'s stream (seed 0): its latents, and per chunk the words
    spoken by its end, whether it closes the stream and how much of it plays."""
    from streamchar.data.harvard import split_sentences
    from streamchar.streaming.engine import SessionSettings
    from streamchar.streaming.inputs import character_request

    text = " ".join(split_sentences("test")[:3])
    session = pipe.session(character_request("unseen-0", text, pipe.cfg), SessionSettings(steps=pipe.steps, seed=0))
    tensors, chunks = {}, []
    for c in session.chunks():
        tensors[f"video.{c.index}"] = c.video.detach().contiguous()
        tensors[f"audio.{c.index}"] = c.audio.detach().contiguous()
        chunks.append({"words_spoken": c.words_spoken, "closing": c.closing, "play_seconds": c.play_seconds})
    return tensors, {"text": text, "chunks": json.dumps(chunks)}


if __name__ == "__main__":
    from safetensors.torch import save_file

    from streamchar.streaming.pipeline import Pipeline

    tensors, meta = demo_stream(Pipeline.load())
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, FIXTURE, metadata=meta)
    print(f"{FIXTURE}: {len(tensors) // 2} chunks")
