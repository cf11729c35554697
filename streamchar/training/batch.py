"""Batches of training windows and the pretraining loss (paper eq. 2 and eq. 5).

A batch holds windows of one kind (a clip's first chunk, without sink and motion, or a later
chunk, with both) so that every sample has the same condition tokens. Text is right-padded,
history left-padded (its mask marks the real latents), the reference voice fitted to 3 s.
Condition dropout, so that classifier-free guidance works: the prompt is replaced by the empty
prompt, and the reference frame by zeros, each with its own probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from streamchar.diffusion.flow import flow_loss, noisy, velocity_target
from streamchar.model.context import DenoiseContext
from streamchar.model.dit import ConditionInput, VideoInput
from streamchar.model.orchestrator import fit_reference_voice, pointer_loss
from streamchar.model.prompt import PromptEncoder
from streamchar.model.streamchar_model import StreamCharModel
from streamchar.training.phonemes import IGNORE
from streamchar.training.windows import Window


@dataclass
class Batch:
    video: torch.Tensor
    audio: torch.Tensor
    conditions: ConditionInput
    prompts: list[str]
    reference_voice: torch.Tensor
    text_ids: torch.Tensor
    text_mask: torch.Tensor
    word_numbers: torch.Tensor
    word_counts: torch.Tensor
    history: torch.Tensor
    history_mask: torch.Tensor
    spoken: torch.Tensor
    phonemes: torch.Tensor  # (B, Nh + N) phoneme classes at history (left-padded with IGNORE) and chunk latents
    text_positions: torch.Tensor | None = None  # (B, Nh + N) where in the text each latent is spoken (left-padded), presets that read by the plan
    mouth: torch.Tensor | None = None  # (B, F, 3) mouth shape of each target video latent, presets with the DiT's mouth head
    mouth_cells: torch.Tensor | None = None  # (B, 1, F, h, w) 1 on the target latent cells that hold the mouth

    def context(self, prompt: torch.Tensor) -> DenoiseContext:
        return DenoiseContext(self.reference_voice, self.text_ids, self.text_mask, self.word_numbers, self.word_counts,
                              self.history, self.history_mask, prompt, self.conditions, self.text_positions)  # fmt: skip


def collate(windows: list[Window], prompt_dropout: float = 0.0, reference_dropout: float = 0.0,
            generator: torch.Generator | None = None) -> Batch:
    with_motion = windows[0].motion is not None
    if any((w.motion is not None) != with_motion for w in windows):
        raise ValueError("a batch mixes first chunks and later chunks")
    b = len(windows)
    drop = torch.rand(b, 2, generator=generator)
    prompts = ["" if drop[i, 0] < prompt_dropout else w.prompt for i, w in enumerate(windows)]
    ref = torch.stack([w.reference for w in windows])
    ref = ref * (drop[:, 1] >= reference_dropout).float().reshape(b, 1, 1, 1, 1)
    n_text = max(len(w.text_ids) for w in windows)
    ids = torch.zeros(b, n_text, dtype=torch.long)
    mask = torch.zeros(b, n_text, dtype=torch.long)
    numbers = torch.zeros(b, n_text)
    n_hist = max(w.history.shape[1] for w in windows)
    z_a = windows[0].audio.shape[0]
    hist = torch.zeros(b, z_a, n_hist)
    hist_mask = torch.zeros(b, n_hist, dtype=torch.long)
    phonemes = torch.full((b, n_hist + windows[0].audio.shape[1]), IGNORE, dtype=torch.long)
    aligned = all(w.text_positions is not None for w in windows)
    positions = torch.zeros(phonemes.shape) if aligned else None
    for i, w in enumerate(windows):
        ids[i, : len(w.text_ids)] = torch.tensor(w.text_ids)
        mask[i, : len(w.text_ids)] = 1
        numbers[i, : len(w.text_ids)] = torch.tensor(w.word_numbers, dtype=torch.float32)
        h = w.history.shape[1]
        if h:
            hist[i, :, n_hist - h :] = w.history
            hist_mask[i, n_hist - h :] = 1
        if w.phonemes is not None:
            phonemes[i, n_hist - h :] = w.phonemes
        if positions is not None:
            positions[i, n_hist - h :] = w.text_positions
    voices = torch.cat([fit_reference_voice(w.reference_voice[None]) for w in windows])
    conditions = ConditionInput(
        ref, torch.stack([w.sink for w in windows]) if with_motion else None, torch.stack([w.motion for w in windows]) if with_motion else None
    )
    mouth = torch.stack([w.mouth for w in windows]).float() if all(w.mouth is not None for w in windows) else None
    cells = torch.stack([w.mouth_cells for w in windows])[:, None].float() if all(w.mouth_cells is not None for w in windows) else None
    return Batch(torch.stack([w.video for w in windows]), torch.stack([w.audio for w in windows]), conditions, prompts, voices, ids, mask,
                 numbers, torch.tensor([float(w.words) for w in windows]), hist, hist_mask,
                 torch.tensor([w.spoken for w in windows]), phonemes, positions, mouth, cells)  # fmt: skip


def sample_t(b: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Logit-normal flow times (more weight on the middle of the path, as in SD3 / Wan)."""
    return torch.sigmoid(torch.randn(b, generator=generator))


def pretraining_loss(model: StreamCharModel, prompt_encoder: PromptEncoder, batch: Batch, generator: torch.Generator | None = None,
                     speech_only: bool = False, pointer_weight: float = 0.1, phoneme_weight: float = 0.0,
                     mouth_weight: float = 0.0, mouth_region_weight: float = 0.0, condition_dropout: float = 0.0) -> dict[str, torch.Tensor]:
    """Flow-matching loss on both modalities (audio only, without video tokens, for the
    speech-only stage) plus the pointer's smooth-L1 and, where the model has the heads, the
    orchestrator's phoneme cross-entropy and the DiT's mouth-shape squared error; with
    `mouth_region_weight` and the batch's mouth cells, the video velocity error again over the
    mouth's latent cells alone; one t per sample shared by both modalities. With
    `condition_dropout`, that share of the samples' DiT gets no orchestrator condition: the
    unconditional branch of text guidance (`SamplerSettings.text_guidance`)."""
    b, device = batch.video.shape[0], batch.video.device
    t = sample_t(b, generator).to(device)  # drawn on the CPU generator, so runs agree across devices
    ev = torch.randn(batch.video.shape, generator=generator).to(device)
    ea = torch.randn(batch.audio.shape, generator=generator).to(device)
    xv, xa = noisy(batch.video, ev, t), noisy(batch.audio, ea, t)
    prompt = prompt_encoder(batch.prompts)
    x = batch.context(prompt).orchestrator_input(xa, t)
    keep = (torch.rand(b, generator=generator) >= condition_dropout).float().to(device) if condition_dropout > 0 else None
    if speech_only:
        _, da, orch = model.velocity(None, x, prompt, condition_keep=keep)
        losses = {"audio": flow_loss(da, velocity_target(batch.audio, ea))["loss"]}
    else:
        shapes = None
        if mouth_weight > 0 and batch.mouth is not None:
            dv, da, orch, shapes = model.velocity_and_mouth(VideoInput(xv), x, prompt, conditions=batch.conditions, condition_keep=keep)
        else:
            dv, da, orch = model.velocity(VideoInput(xv), x, prompt, conditions=batch.conditions, condition_keep=keep)
        target_video = velocity_target(batch.video, ev)
        losses = flow_loss(dv, target_video, da, velocity_target(batch.audio, ea))
        if shapes is not None:
            losses["mouth"] = F.mse_loss(shapes, batch.mouth.to(shapes))
        if mouth_region_weight > 0 and batch.mouth_cells is not None:
            losses["mouth_region"] = region_loss(dv, target_video, batch.mouth_cells)
    losses["pointer"] = pointer_loss(orch.progress_raw, batch.spoken)
    losses["loss"] = losses.get("video", 0.0) + losses["audio"] + pointer_weight * losses["pointer"]
    if orch.phoneme_logits is not None and phoneme_weight > 0:
        losses["phoneme"] = phoneme_loss(orch.phoneme_logits, batch.phonemes)
        losses["loss"] = losses["loss"] + phoneme_weight * losses["phoneme"]
    if "mouth" in losses:
        losses["loss"] = losses["loss"] + mouth_weight * losses["mouth"]
    if "mouth_region" in losses:
        losses["loss"] = losses["loss"] + mouth_region_weight * losses["mouth_region"]
    return losses


def region_loss(pred: torch.Tensor, target: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the latent cells where `cells` (B, 1, F, h, w) is 1, all channels."""
    err = (pred.float() - target.float()).pow(2) * cells.to(pred.device)
    return err.sum() / (cells.sum().clamp(min=1) * pred.shape[1])


def phoneme_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the latents that have a target (history padding has none)."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
