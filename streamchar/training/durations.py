"""`streamchar train durations`: the orchestrator's word-duration head on the data's word timings
(SynthTalk's, or forced alignment's for prepared footage), with every other weight frozen, so the
model generates exactly what it did and the head learns from the hidden states it streams with.

A training example is a clip's transcript from its first word (the lead is learned there) or,
half the time, from a word drawn at random: a stream plans a long script a piece at a time, and
a piece starts mid-text. Its target is each word's true (start, end). Its voice is the clip's
reference voice or, half the time, 3 s of the clip's own speech.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from streamchar.config import Config
from streamchar.errors import StreamcharError
from streamchar.model.durations import duration_loss
from streamchar.model.orchestrator import REFERENCE_VOICE_LATENTS, fit_reference_voice
from streamchar.training.generator import GeneratorObjective
from streamchar.training.loop import Runtime
from streamchar.training.settings import TrainSettings
from streamchar.training.windows import word_times
from streamchar.utils.text import word_matches


@dataclass(frozen=True)
class TimedClip:
    """What a clip teaches the head: its transcript, its words' character starts and (start,
    end) times, its reference voice and its own speech."""

    text: str
    starts: list[int]
    times: list
    reference: torch.Tensor
    speech: torch.Tensor


class DurationObjective(GeneratorObjective):
    stages = ("durations",)

    def __init__(self, stage: str, cfg: Config, s: TrainSettings, rt: Runtime):
        if cfg.orchestrator.durations is None:
            raise StreamcharError("the model config has no word-duration head to train (orchestrator.durations); the tiny preset has one")
        super().__init__(stage, cfg, s, rt)
        cache = self.source.cache
        self.clips = [i for i, rec in enumerate(cache.records) if rec["split"] == "train" and rec.get("words")]
        if not self.clips:
            raise StreamcharError(f"the latent cache {cache.root} has no timed train clips to learn word durations from")
        self._examples: dict[int, TimedClip] = {}
        # how the model streams (a student's sampling steps, its teacher): the head changes none of it
        self._carried = {k: v for k, v in self.init_meta.items() if k not in ("format", "preset", "config", "stage", "step", "ema")}

    def freeze(self) -> None:
        """Everything but the head: the model generates exactly what it did."""
        self.model.requires_grad_(False)
        self.model.orchestrator.durations.requires_grad_(True)

    def _clip(self, i: int) -> TimedClip:
        if i not in self._examples:
            rec, tensors = self.source.cache.records[i], self.source.cache.tensors(i)
            voice = tensors.get("reference_voice")
            if voice is None or voice.shape[-1] == 0:
                raise StreamcharError(f"clip {rec['clip_id']} of {self.source.cache.root} has no reference voice to learn a rate from")
            text = rec["transcript"]
            self._examples[i] = TimedClip(text, [m.start() for m in word_matches(text)], word_times(rec), fit_reference_voice(voice[None])[0],
                                          tensors["audio"])  # fmt: skip
        return self._examples[i]

    @staticmethod
    def _voice(reference: torch.Tensor, own: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """The reference voice, or half the time 3 s of the clip's own speech from a random start:
        the same speaker at the same rate saying other words, so that the rate is learned from
        how the voice sounds, not from the few reference clips there are."""
        n = REFERENCE_VOICE_LATENTS
        if own.shape[-1] <= n or rng.random() < 0.5:
            return reference
        start = int(rng.integers(0, own.shape[-1] - n + 1))
        return own[:, start : start + n]

    def losses(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.s.seed, step, micro, self.rt.rank])
        examples = []
        for i in rng.integers(len(self.clips), size=self.s.batch):
            clip = self._clip(self.clips[int(i)])
            voice = self._voice(clip.reference, clip.speech, rng)
            first = int(rng.integers(1, len(clip.starts))) if len(clip.starts) > 1 and rng.random() < 0.5 else 0
            tokens = self.tokenizer.encode(clip.text[clip.starts[first] :])
            examples.append((tokens, clip.times[first : first + tokens.words], first == 0, voice))
        length, words = max(len(t.ids) for t, *_ in examples), max(t.words for t, *_ in examples)
        ids = torch.zeros(len(examples), length, dtype=torch.long)
        numbers, mask = torch.zeros_like(ids), torch.zeros_like(ids)
        target = torch.zeros(len(examples), words, 2)
        for b, (tokens, times, _, _) in enumerate(examples):
            n = len(tokens.ids)
            ids[b, :n], numbers[b, :n], mask[b, :n] = torch.tensor(tokens.ids), torch.tensor(tokens.word_numbers), 1
            target[b, : len(times)] = torch.tensor(times)
        voices = torch.stack([v for *_, v in examples]).to(self.rt.device)
        from_start = torch.tensor([f for _, _, f, _ in examples], device=self.rt.device)
        ids, numbers, mask, target = ids.to(self.rt.device), numbers.to(self.rt.device), mask.to(self.rt.device), target.to(self.rt.device)
        orchestrator = self.model.orchestrator
        with torch.no_grad(), self.rt.autocast_context():
            hidden = orchestrator.text_states(voices, ids, mask)
        durations, pauses, lead, real = orchestrator.durations(hidden, numbers, mask, words, voices)
        return duration_loss(durations, pauses, lead, real, target, from_start)

    def export_meta(self) -> dict:
        return {**self._carried, "durations_init": str(self.s.init)}

    def validate(self, loop) -> None:  # noqa: ANN001
        """No stream to render: the head does not change what the model generates."""
