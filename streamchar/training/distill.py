"""Distillation (`streamchar train dmd|rollout`; paper §4.2, §5.1, Fig. 2; docs/architecture.md, "Training stages").

- stage `dmd` (Stage I, step reduction): the student starts from the teacher and learns a
  4-step sampler on single chunks cut from the latent cache (reference, sink and motion from
  the data, as in pretraining). Distribution matching: the frozen teacher with guidance is the
  real score, a copy of it trained online on the student's samples is the fake score.
- stage `rollout` (Stage II, online rollout): the student streams K consecutive chunks through
  the engine's own chunk loop (`StreamSession.next_chunk`), its motion latents its own outputs
  and its first chunk the sink. The last `score_chunks` chunks are concatenated and scored
  together, with the first of them's history and cut, and the transcript ending where the
  progress-aware pointer says their speech ends (ŝ, Figs. 2-3), as a training clip's transcript
  ends with its speech. Earlier chunks run without a graph; the scored ones keep one step each.

Ablations are settings of the same loop: `sink: false` (no sink chunk), `score_chunks: 1` (Stage
II scores one chunk), `truncate_at_pointer: false` (the transcript's lookahead window instead of
the cut at ŝ), and `--init` the teacher for the rollout stage (Stage II without Stage I).

The student uses the engine's sampler: `student_steps` Euler steps; at a random exit step k it
returns the clean estimate after k steps (backward simulation, as in DMD2 and Self Forcing).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.distributed as dist

from streamchar.config import Config
from streamchar.diffusion.dmd import clean_estimate, dmd_loss, sample_score_times
from streamchar.diffusion.flow import flow_loss, guided, noisy, velocity_target, with_guidance
from streamchar.errors import StreamcharError
from streamchar.model.checkpoint import load_generator
from streamchar.model.context import DenoiseContext
from streamchar.model.dit import VideoInput
from streamchar.model.orchestrator import fit_reference_voice, pointer_loss
from streamchar.model.streamchar_model import StreamCharModel
from streamchar.streaming.engine import ChunkContext, SessionSettings, StreamSession
from streamchar.streaming.sampler import SamplerSettings, sample_chunk
from streamchar.training.batch import Batch, collate, sample_t
from streamchar.training.generator import GeneratorObjective, to_device
from streamchar.training.loop import Part, Runtime, TrainLoop
from streamchar.training.settings import TrainSettings

DISTILL_STAGES = ("dmd", "rollout")


@dataclass
class StudentSample:
    video: torch.Tensor  # clean estimates, with a graph through the exit step
    audio: torch.Tensor
    context: DenoiseContext
    pointer: torch.Tensor | None  # the pointer loss against the data's target (Stage I)
    pointer_ends: list[float] = field(default_factory=list)  # Stage II: the pointer's ŝ after each rollout chunk (words from the start)


def velocity(model: StreamCharModel, ctx: DenoiseContext, video: torch.Tensor, audio: torch.Tensor,
             t: torch.Tensor, condition_keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    dv, da, _ = model.velocity(VideoInput(video), ctx.orchestrator_input(audio, t), ctx.prompt, conditions=ctx.conditions,
                               condition_keep=condition_keep)  # fmt: skip
    assert dv is not None
    return dv, da


class DistillObjective(GeneratorObjective):
    stages = DISTILL_STAGES

    def __init__(self, stage: str, cfg: Config, s: TrainSettings, rt: Runtime):
        if not s.init:
            raise StreamcharError("distillation starts from a trained generator: give --init (the teacher for dmd, the Stage I student for rollout)")
        super().__init__(stage, cfg, s, rt)
        d = self.d = s.distill
        teacher_path = d.teacher or s.init
        self.teacher, _, _ = load_generator(teacher_path)
        if self.teacher.cfg.model_dump() != cfg.model_dump():
            raise StreamcharError(f"the teacher {teacher_path} has another model config than this run's")
        self.fake = copy.deepcopy(self.teacher)  # the fake score starts as the teacher
        self.teacher.to(rt.device).eval().requires_grad_(False)
        with torch.no_grad():
            self.empty_prompt = self.prompt([""]).to(rt.device)
        self.teacher_name = str(teacher_path)
        if stage == "rollout":
            self.prepare_rollouts()

    def _shard_fake(self, module: torch.nn.Module) -> None:
        from streamchar.model.sharding import shard_model

        shard_model(module)  # type: ignore[arg-type]

    # what is saved and exported beside the student --------------------------------------
    def parts(self) -> dict[str, Part]:
        """The student, and the fake score at its own constant learning rate, without momentum."""
        fake = Part(self.fake, self.d.fake_lr, self.s.weight_decay, (0.0, 0.99), self.s.grad_clip, scheduled=False, shard=self._shard_fake)
        return {**super().parts(), "fake": fake}

    def export_meta(self) -> dict:
        return {"sampling_steps": self.d.student_steps, "teacher": self.teacher_name, "sink": self.d.sink,
                "score_chunks": self.d.score_chunks, "rollout_chunks": self.d.rollout_chunks}  # fmt: skip

    @property
    def validation_steps(self) -> int:
        return self.d.student_steps

    # samples -------------------------------------------------------------------------------
    def _generator(self, step: int, micro: int, part: int) -> tuple[torch.Generator, np.random.Generator]:
        seed = int(np.random.SeedSequence([self.s.seed, step, micro, self.rt.rank, part]).generate_state(1)[0])
        return torch.Generator().manual_seed(seed), np.random.default_rng(seed)

    def _exit_step(self, rng: np.random.Generator) -> int:
        """Rank 0's draw on every rank: under FSDP each sampler step gathers the student's shards,
        so all ranks must run the same number of steps."""
        k = int(rng.integers(1, self.d.student_steps + 1))
        if self.rt.world > 1:
            shared = torch.tensor([k], device=self.rt.device)
            dist.broadcast(shared, src=0)
            k = int(shared.item())
        return k

    def _window_sample(self, step: int, micro: int) -> StudentSample:
        """Stage I: a batch of single chunks from the cache, generated by the student."""
        g, rng = self._generator(step, micro, 0)
        batch: Batch = to_device(collate(self.windows(step, micro), generator=g), self.rt.device)
        ctx = batch.context(self.prompt(batch.prompts).to(self.rt.device))
        xv = torch.randn(batch.video.shape, generator=g).to(self.rt.device)
        xa = torch.randn(batch.audio.shape, generator=g).to(self.rt.device)
        sampler = SamplerSettings(self.d.student_steps, self.d.shift)
        chunk = sample_chunk(self.model, ctx, None, xv, xa, sampler, exit_step=self._exit_step(rng), grad=True)
        return StudentSample(chunk.video, chunk.audio, ctx, pointer_loss(chunk.pointer_raw, batch.spoken))

    def _rollout_sample(self, step: int, micro: int) -> StudentSample:
        """Stage II: K chunks streamed by the student; the last `score_chunks` are the sample."""
        g, rng = self._generator(step, micro, 0)
        d = self.d
        i = self.rollout_clips[int(rng.integers(len(self.rollout_clips)))]
        rec, t = self.source.cache.records[i], self.source.cache.tensors(i)
        words_needed = 5 * d.rollout_chunks + 5  # more words per chunk than SynthTalk speaks, so the text outlasts the rollout
        text = []
        while sum(len(x.split()) for x in text) < words_needed:
            text.append(self.rollout_texts[int(rng.integers(len(self.rollout_texts)))])
        voice = fit_reference_voice(t.get("reference_voice", torch.zeros(t["audio"].shape[0], 0))[None]).to(self.rt.device)
        with torch.no_grad():
            prompt = self.prompt([rec.get("prompt", "")]).to(self.rt.device)
        settings = SessionSettings(steps=d.student_steps, sink=d.sink, shift=d.shift, seed=int(rng.integers(2**31)))
        session = StreamSession.from_latents(self.model, settings, " ".join(text), prompt, t["reference"][None].to(self.rt.device), voice,
                                             tokenizer=self.tokenizer, prompt_text=rec.get("prompt", ""))  # fmt: skip
        exit_step = self._exit_step(rng)
        scored, context, ends = [], None, []
        for k in range(d.rollout_chunks):
            if k < d.rollout_chunks - d.score_chunks:
                with torch.no_grad():
                    ends.append(session.next_chunk(k).pointer_words)
                continue
            chunk = session.next_chunk(k, exit_step=exit_step)
            if context is None:
                context = session.last_context
            scored.append(chunk)
            ends.append(chunk.pointer_words)
        assert context is not None
        video = torch.cat([c.video for c in scored], dim=2)
        audio = torch.cat([c.audio for c in scored], dim=2)
        return StudentSample(video, audio, self._scored_context(session, context, audio.shape[2], ends[-1]), None, ends)

    def _scored_context(self, session: StreamSession, context: ChunkContext, latents: int, pointer_end: float) -> ChunkContext:
        """The first scored chunk's context over the whole scored span: its history and cut, the
        text positions of every scored latent and, with `truncate_at_pointer`, the transcript
        ending with the word the pointer says the span's speech reaches (ŝ, rounded up; at least
        one word after the cut)."""
        end = None
        if self.d.truncate_at_pointer:
            end = int(min(session.words_total, max(context.cut + 1, math.ceil(float(pointer_end) - 1e-6))))
            ids, numbers, n = session.text_window(context.cut, end)
            context = replace(context, text_ids=ids, text_mask=torch.ones_like(ids), word_numbers=numbers, word_counts=n)
        positions = session.text_positions(context.cut, context.first_latent, context.history.shape[2] + latents, end)
        return replace(context, text_positions=positions)

    # losses --------------------------------------------------------------------------------
    def _scores(self, sample: StudentSample, g: torch.Generator) -> dict[str, torch.Tensor]:
        b = sample.video.shape[0]
        t = sample_score_times(b, self.d.score_t_min, self.d.score_t_max, g).to(self.rt.device)
        xv = noisy(sample.video.detach(), torch.randn(sample.video.shape, generator=g).to(self.rt.device), t)
        xa = noisy(sample.audio.detach(), torch.randn(sample.audio.shape, generator=g).to(self.rt.device), t)
        ctx = sample.context
        with torch.no_grad():
            cv, ca = velocity(self.teacher, ctx, xv, xa, t)
            rv, ra = cv, ca
            if self.d.guidance != 1.0:
                uv, ua = velocity(self.teacher, ctx.unconditional(self.empty_prompt), xv, xa, t)
                rv, ra = guided(cv, uv, self.d.guidance), guided(ca, ua, self.d.guidance)
            if self.d.text_guidance != 1.0:  # the teacher without the orchestrator's condition (train.condition_dropout)
                nv, na = velocity(self.teacher, ctx, xv, xa, t, condition_keep=torch.zeros(b, device=xa.device))
                rv, ra = with_guidance(rv, cv, nv, self.d.text_guidance), with_guidance(ra, ca, na, self.d.text_guidance)
            fv, fa = velocity(self.fake, ctx, xv, xa, t)
        loss_v, grad_v = dmd_loss(sample.video, clean_estimate(xv, rv, t), clean_estimate(xv, fv, t))
        loss_a, grad_a = dmd_loss(sample.audio, clean_estimate(xa, ra, t), clean_estimate(xa, fa, t))
        out = {"dmd_video": loss_v, "dmd_audio": loss_a, "grad_video": grad_v, "grad_audio": grad_a}
        out["loss"] = loss_v + loss_a
        if sample.pointer is not None:
            out["pointer"] = sample.pointer
            out["loss"] = out["loss"] + self.s.pointer_weight * sample.pointer
        return out

    def _fake_loss(self, sample: StudentSample, g: torch.Generator) -> torch.Tensor:
        """The fake score learns the student's current distribution by flow matching."""
        b = sample.video.shape[0]
        t = sample_t(b, g).to(self.rt.device)
        ev = torch.randn(sample.video.shape, generator=g).to(self.rt.device)
        ea = torch.randn(sample.audio.shape, generator=g).to(self.rt.device)
        z_v, z_a = sample.video.detach(), sample.audio.detach()
        dv, da = velocity(self.fake, sample.context, noisy(z_v, ev, t), noisy(z_a, ea, t), t)
        return flow_loss(dv, velocity_target(z_v, ev), da, velocity_target(z_a, ea))["loss"]

    def train_step(self, step: int, loop: TrainLoop) -> dict[str, float]:
        """The student's update on its samples' DMD loss, then the fake score's on the same samples."""
        with self.rt.autocast_context():
            samples = []

            def losses(step: int, micro: int) -> dict[str, torch.Tensor]:
                sample = self._window_sample(step, micro) if self.stage == "dmd" else self._rollout_sample(step, micro)
                samples.append(replace(sample, video=sample.video.detach(), audio=sample.audio.detach(), pointer=None))
                return self._scores(sample, self._generator(step, micro, 1)[0])

            parts = loop.accumulate(step, losses)
            parts["grad_norm"] = loop.update("model")
            fake = 0.0
            for j in range(self.d.fake_updates):
                for micro, sample in enumerate(samples):
                    g, _ = self._generator(step, micro, 2 + j)
                    loss = self._fake_loss(sample, g) / len(samples)
                    loss.backward()
                    fake += float(loss.detach()) / self.d.fake_updates
                loop.update("fake")
            parts["fake_flow"] = fake
        return parts

    def prepare_rollouts(self) -> None:
        """Clips whose reference and voice the rollouts borrow, and the sentences they speak."""
        records = self.source.cache.records
        self.rollout_clips = [i for i, r in enumerate(records) if r["split"] == "train"]
        self.rollout_texts = sorted({r["transcript"] for r in records if r["split"] == "train"})
        if not self.rollout_clips:
            raise StreamcharError(f"the latent cache {self.source.cache.root} has no train clips to roll out")
