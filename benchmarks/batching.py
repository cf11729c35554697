"""What batching sessions saves on this machine: the shipped student's chunk through the model for
n sessions one by one and in one batch, and the video decoder (fp32 and bf16) and the audio
decoder for a batch of n chunks (seconds per round, 3 rounds each), on one torch thread as a
server's worker runs them.

    python benchmarks/batching.py > benchmarks/results/batching.json
"""

from __future__ import annotations

import json
import sys
import time

import torch

from streamchar.streaming.batching import next_chunks
from streamchar.streaming.engine import SessionSettings
from streamchar.streaming.inputs import character_request
from streamchar.streaming.pipeline import Pipeline

TEXT = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. " * 6
SIZES = (1, 2, 4, 8)


def sessions(pipe: Pipeline, n: int) -> list:
    out = [pipe.session(character_request(f"unseen-{k % 8}", TEXT, pipe.cfg), SessionSettings(steps=pipe.steps, seed=k)) for k in range(n)]
    for s in out:
        for i in range(2):  # past the first chunks: sink and motion latents, as most of a stream
            s.next_chunk(i)
    return out


def timed(fn, rounds: int = 3) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    for r in range(rounds):
        fn(r)
    return (time.perf_counter() - t0) / rounds


@torch.no_grad()
def main() -> None:
    torch.set_num_threads(1)
    pipe = Pipeline.load()
    result = {}
    for n in SIZES:
        alone, together = sessions(pipe, n), sessions(pipe, n)
        one_by_one = timed(lambda r, ss=alone: [s.next_chunk(2 + r) for s in ss])
        batched = timed(lambda r, ss=together, n=n: next_chunks(ss, [2 + r] * n))
        chunk = together[0].next_chunk(5)
        refs = [x.repeat(n, *([1] * (x.dim() - 1))) for x in together[0].decode_reference]
        latents, previous = chunk.video.repeat(n, 1, 1, 1, 1), chunk.video[:, :, -1].repeat(n, 1, 1, 1)
        sound = chunk.audio.repeat(n, 1, 1)
        decode = lambda r, latents=latents, refs=refs, previous=previous: pipe.video_codec.decode(latents, reference=refs, previous=previous)  # noqa: E731
        video = {}
        for precision in ("fp32", "bf16"):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                video[precision] = timed(decode)
        audio = timed(lambda r, sound=sound: pipe.audio_codec.decode_stream(sound, None))
        result[n] = {"model_one_by_one_s": round(one_by_one, 3), "model_batched_s": round(batched, 3),
                     "video_decode_batched_s": round(video["fp32"], 3), "video_decode_batched_bf16_s": round(video["bf16"], 3),
                     "audio_decode_batched_s": round(audio, 3)}  # fmt: skip
        print(n, result[n], file=sys.stderr, flush=True)
    print(json.dumps(result, indent=4))


if __name__ == "__main__":
    main()
