"""What the tiny model's lips follow: held-out clips rendered with the stream's plan of word
timings swapped for others, or with its audio taken from elsewhere (README, "Planning the words").

Plans (`--plan`): `even` (one pace, `text_rate`), `word-pace` (the preset's), `true` (the clip's
own word timings, which no real stream has), `stretched` (the word-pace plan scaled to the
clip's true length, as if the character's speaking rate were known).
Audio (`--audio`): `own`; `ground-truth` (every sampler step's audio velocity replaced by the
one that lands on the clip's cached latents, so the audio follows the ground truth's path);
`two-pass` (the chunk generated once, then again with its audio held to the first pass's).

    python benchmarks/plan_diagnostic.py --cache runs/latents --data runs/synthtalk --checkpoint tiny-teacher \\
        --steps 50 --clips 10 --plan true --out runs/render/teacher-true-timings

The output folder is what `streamchar eval short --videos NAME=DIR` reads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streamchar.data.latents import LatentCache
from streamchar.diffusion.flow import TIMESTEP_SCALE
from streamchar.evaluation.render import render_items, synthtalk_render_items
from streamchar.model.alignment import paced_word_times
from streamchar.streaming.engine import SessionSettings, StreamSession
from streamchar.streaming.pipeline import Pipeline
from streamchar.training.windows import word_times

PLANS = ("even", "word-pace", "true", "stretched")
AUDIO = ("own", "ground-truth", "two-pass")


def planned_times(plan: str, record: dict, pace) -> list[tuple[float, float]] | None:
    """The word timings a session plans with; None keeps the session's own."""
    true = word_times(record)
    if plan == "true":
        return true
    if plan == "stretched":
        paced = paced_word_times(record["transcript"], pace)
        k = (true[-1][1] - true[0][0]) / (paced[-1][1] - paced[0][0])
        return [(true[0][0] + (a - paced[0][0]) * k, true[0][0] + (b - paced[0][0]) * k) for a, b in paced]
    return None


class Diagnostic:
    """Hooks one pipeline's sessions: their plan, and the audio path their sampler takes."""

    def __init__(self, pipe: Pipeline, cache: LatentCache, plan: str, audio: str):
        self.pipe, self.cache, self.plan, self.audio = pipe, cache, plan, audio
        self.index = {r["clip_id"]: i for i, r in enumerate(cache.records)}
        self.target = None  # (1, z, n) audio latents the sampler is held to, from the current chunk's start
        self.session: StreamSession | None = None
        self.clip: str | None = None
        if plan == "even":
            pipe.model.cfg.orchestrator.word_pace = None
        self._velocity = pipe.model.dit_velocity
        pipe.model.dit_velocity = self.velocity
        self._session = pipe.session
        pipe.session = self.new_session

    def velocity(self, video, timestep, prompt, audio, cache):
        dv, da = self._velocity(video, timestep, prompt, audio, cache)
        target = self.chunk_target()
        if target is not None and target.shape[2]:
            n, t = target.shape[2], float(timestep[0]) / TIMESTEP_SCALE
            da = da.clone()
            da[:, :, :n] = (audio.latents[:, :, :n] - target) / t  # lands on the target at t = 0
        return dv, da

    def chunk_target(self):
        if self.audio == "two-pass":
            return self.target
        if self.audio == "ground-truth":
            k = len(self.session.progress)
            return self.ground_truth[:, :, 33 * k : 33 * k + 33]
        return None

    def new_session(self, request, settings) -> StreamSession:
        s = self._session(request, settings)
        self.session = s
        i = self.index[self.clip]
        self.ground_truth = self.cache.tensors(i)["audio"][None]
        times = planned_times(self.plan, self.cache.records[i], s.cfg.orchestrator.word_pace)
        if times is not None:
            if len(times) != s.words_total:
                raise SystemExit(f"{self.clip}: {len(times)} timed words, the tokenizer counts {s.words_total}")
            s._word_times = times
        if self.audio == "two-pass":
            first_pass = s.next_chunk

            def next_chunk(index, exit_step=None):
                state = (list(s.progress), list(s.history), s.sink, s.motion, s.generator.get_state())
                self.target = None
                audio = first_pass(index).audio
                s.progress, s.history, s.sink, s.motion = list(state[0]), list(state[1]), state[2], state[3]
                s.generator.set_state(state[4])  # the same noise again
                self.target = audio
                chunk = first_pass(index)
                self.target = None
                return chunk

            s.next_chunk = next_chunk
        return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("runs/synthtalk"))
    ap.add_argument("--cache", type=Path, default=Path("runs/latents"))
    ap.add_argument("--split", default="test-unseen")
    ap.add_argument("--checkpoint", default="tiny-teacher")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--clips", type=int, default=10)
    ap.add_argument("--plan", choices=PLANS, default="word-pace")
    ap.add_argument("--audio", choices=AUDIO, default="own")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    pipe = Pipeline.load(args.checkpoint)
    if args.plan != "even" and pipe.cfg.orchestrator.word_pace is None:
        raise SystemExit(f"{args.checkpoint} has no word_pace to plan with; --plan even is its plan")
    diagnostic = Diagnostic(pipe, LatentCache(args.cache), args.plan, args.audio)
    for item in synthtalk_render_items(args.data, args.split, pipe, args.clips):
        diagnostic.clip = item.name
        render_items(pipe, [item], args.out, SessionSettings(steps=args.steps, seed=0))
        print(item.name, flush=True)


if __name__ == "__main__":
    main()
