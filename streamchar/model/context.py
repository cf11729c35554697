"""What a denoiser reads besides the noisy latents and t: the same for a training batch, a
distillation rollout and a streaming chunk, so that all three feed the model alike."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from streamchar.diffusion.flow import TIMESTEP_SCALE
from streamchar.model.dit import ConditionInput
from streamchar.model.orchestrator import OrchestratorInput


@dataclass
class DenoiseContext:
    """Everything a denoiser reads besides the noisy latents and t, for a batch of samples."""

    reference_voice: torch.Tensor
    text_ids: torch.Tensor
    text_mask: torch.Tensor
    word_numbers: torch.Tensor
    word_counts: torch.Tensor
    history: torch.Tensor
    history_mask: torch.Tensor | None
    prompt: torch.Tensor
    conditions: ConditionInput
    text_positions: torch.Tensor | None = None

    def orchestrator_input(self, noisy_audio: torch.Tensor, t: torch.Tensor) -> OrchestratorInput:
        return OrchestratorInput(self.reference_voice, self.text_ids, self.text_mask, self.word_numbers, self.word_counts,
                                 self.history, noisy_audio, t * TIMESTEP_SCALE, self.history_mask, self.text_positions)  # fmt: skip

    def unconditional(self, empty_prompt: torch.Tensor) -> DenoiseContext:
        """Prompt and reference frame dropped, as pretraining's condition dropout drops them."""
        return replace(self, prompt=empty_prompt.expand(self.prompt.shape[0], -1, -1), conditions=self.conditions.without_reference())
