"""Pretraining (`streamchar train orchestrator|joint`; paper §5.1; docs/architecture.md, "Training stages").

- stage `orchestrator`: speech only. The DiT's audio path without video tokens learns, with the
  orchestrator and its pointer, to produce a chunk's audio latents.
- stage `joint`: orchestrator and DiT together on audio-video windows with reference, sink and
  motion conditions.

The loop (`training/loop.py`) runs it; the teacher is the EMA of its weights.
"""

from __future__ import annotations

import numpy as np
import torch

from streamchar.training.batch import collate, pretraining_loss
from streamchar.training.generator import GeneratorObjective, to_device

STAGES = ("orchestrator", "joint")


class PretrainObjective(GeneratorObjective):
    stages = STAGES

    def losses(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        s = self.s
        seed = int(np.random.SeedSequence([s.seed, step, micro, self.rt.rank]).generate_state(1)[0])
        g = torch.Generator().manual_seed(seed)
        batch = to_device(collate(self.windows(step, micro), s.prompt_dropout, s.reference_dropout, g), self.rt.device)
        with self.rt.autocast_context():
            return pretraining_loss(self.model, self.prompt, batch, g, speech_only=self.stage == "orchestrator",
                                    pointer_weight=s.pointer_weight, phoneme_weight=s.phoneme_weight, mouth_weight=s.mouth_weight,
                                    mouth_region_weight=s.mouth_region_weight, condition_dropout=s.condition_dropout)  # fmt: skip
