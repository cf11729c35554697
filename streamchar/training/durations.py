"""`streamchar train durations`: the orchestrator's word-duration head on the data's word timings
(SynthTalk's, or forced alignment's for prepared footage), with every other weight frozen, so the
model generates exactly what it did and the head learns from the hidden states it streams with.

A training example is a clip's transcript from its first word (the lead is learned there) or,
half the time, from a word drawn at random: a stream plans a long script a piece at a time, and
a piece starts mid-text. Its target is each word's true (start, end). Its voice is the clip's
reference voice or, half the time, 3 s of the clip's own speech.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from streamchar.config import Config
from streamchar.errors import StreamcharError
from streamchar.model.durations import duration_loss
from streamchar.model.orchestrator import REFERENCE_VOICE_LATENTS, fit_reference_voice
from streamchar.training.settings import TrainSettings
from streamchar.training.trainer import Trainer
from streamchar.training.windows import word_times
from streamchar.utils.text import word_matches


class DurationTrainer(Trainer):
    stages = ("durations",)

    def __init__(self, stage: str, cfg: Config, s: TrainSettings, run: Path, command: str = ""):
        if cfg.orchestrator.durations is None:
            raise StreamcharError("the model config has no word-duration head to train (orchestrator.durations); the tiny preset has one")
        super().__init__(stage, cfg, s, run, command)
        head = self.model.orchestrator.durations
        for p in self.model.parameters():
            p.requires_grad_(False)
        for p in head.parameters():
            p.requires_grad_(True)
        self.opt = torch.optim.AdamW(head.parameters(), lr=s.lr, weight_decay=s.weight_decay, betas=(0.9, 0.99))
        if self.ema is not None:  # frozen weights' averages are the weights: average the head's alone, each step
            self.ema = {n: v for n, v in self.ema.items() if n.startswith("orchestrator.durations.")}
        cache = self.source.cache
        self.clips = [i for i, rec in enumerate(cache.records) if rec["split"] == "train" and rec.get("words")]
        if not self.clips:
            raise StreamcharError(f"the latent cache {cache.root} has no timed train clips to learn word durations from")
        self._examples: dict[int, tuple] = {}
        # how the model streams (a student's sampling steps, its teacher): the head changes none of it
        self._carried = {k: v for k, v in self.init_meta.items() if k not in ("format", "preset", "config", "stage", "step", "ema")}

    def _clip(self, i: int) -> tuple:
        """A clip's transcript, its words' character spans and times, its reference voice and its own speech."""
        if i not in self._examples:
            rec, tensors = self.source.cache.records[i], self.source.cache.tensors(i)
            voice = tensors.get("reference_voice")
            if voice is None or voice.shape[-1] == 0:
                raise StreamcharError(f"clip {rec['clip_id']} of {self.source.cache.root} has no reference voice to learn a rate from")
            text = rec["transcript"]
            self._examples[i] = (text, [m.start() for m in word_matches(text)], word_times(rec), fit_reference_voice(voice[None])[0],
                                 tensors["audio"])
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
        rng = np.random.default_rng([self.s.seed, step, micro, self.rank])
        examples = []
        for i in rng.integers(len(self.clips), size=self.s.batch):
            text, starts, times, reference, own = self._clip(self.clips[int(i)])
            voice = self._voice(reference, own, rng)
            first = int(rng.integers(1, len(starts))) if len(starts) > 1 and rng.random() < 0.5 else 0
            tokens = self.tokenizer.encode(text[starts[first] :])
            examples.append((tokens, times[first : first + tokens.words], first == 0, voice))
        length, words = max(len(t.ids) for t, *_ in examples), max(t.words for t, *_ in examples)
        ids = torch.zeros(len(examples), length, dtype=torch.long)
        numbers, mask = torch.zeros_like(ids), torch.zeros_like(ids)
        target = torch.zeros(len(examples), words, 2)
        for b, (tokens, times, _, _) in enumerate(examples):
            n = len(tokens.ids)
            ids[b, :n], numbers[b, :n], mask[b, :n] = torch.tensor(tokens.ids), torch.tensor(tokens.word_numbers), 1
            target[b, : len(times)] = torch.tensor(times)
        voices = torch.stack([v for *_, v in examples]).to(self.device)
        from_start = torch.tensor([f for _, _, f, _ in examples], device=self.device)
        ids, numbers, mask, target = ids.to(self.device), numbers.to(self.device), mask.to(self.device), target.to(self.device)
        orchestrator = self.model.orchestrator
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            hidden = orchestrator.text_states(voices, ids, mask)
        durations, pauses, lead, real = orchestrator.durations(hidden, numbers, mask, words, voices)
        return duration_loss(durations, pauses, lead, real, target, from_start)

    def export_meta(self) -> dict:
        return {**self._carried, "durations_init": str(self.s.init)}

    def validate(self) -> Path:
        """No stream to render: the head does not change what the model generates."""
        return self.run
