"""The N-step Euler sampler that turns one chunk's noise into its video and audio latents:
per step the orchestrator reads the transcript window and history, and the DiT denoises both
modalities with the condition tokens' keys and values computed once for the chunk."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from streamchar.diffusion.flow import TIMESTEP_SCALE, guided, sample_times, with_guidance
from streamchar.model.context import DenoiseContext
from streamchar.model.dit import AudioInput, VideoInput
from streamchar.model.orchestrator import OrchestratorInput
from streamchar.model.streamchar_model import StreamCharModel
from streamchar.utils.precision import computing_in


@dataclass
class SamplerSettings:
    steps: int
    shift: float = 1.0
    guidance: float = 1.0  # on prompt and reference frame; 1: off (one DiT pass per step)
    text_guidance: float = 1.0  # on the orchestrator's condition (a model trained with train.condition_dropout); 1: off


@dataclass
class SampledChunk:
    video: torch.Tensor
    audio: torch.Tensor
    pointer: torch.Tensor  # (B,) the orchestrator's progress output after the last step (words since the window's cut)
    timings: dict[str, float]
    pointer_raw: torch.Tensor  # the same before clamping, for training's pointer loss


def device_clock(device: torch.device) -> Callable[[], float]:
    """perf_counter, after the work this thread queued on the GPU: the split of a chunk's time is
    then what each part took, not when it was queued (decoding, on its own stream, not waited for)."""
    if device.type != "cuda":
        return time.perf_counter

    def now() -> float:
        torch.cuda.current_stream(device).synchronize()
        return time.perf_counter()

    return now


def sample_chunk(model: StreamCharModel, x: DenoiseContext, empty_prompt: torch.Tensor | None, video: torch.Tensor, audio: torch.Tensor,
                 s: SamplerSettings, exit_step: int | None = None, grad: bool = False) -> SampledChunk:
    """Euler steps from the noise `video`, `audio`; with guidance, `empty_prompt` is the
    unconditional branch's prompt. With `exit_step` k the chunk is the clean estimate after k
    steps, with a graph (when `grad`) through step k alone; the full sampler's last step is the
    same estimate."""
    with computing_in(model, video.device):
        return _sample(model, x, empty_prompt, video, audio, s, exit_step, grad)


def _sample(model: StreamCharModel, x: DenoiseContext, empty_prompt: torch.Tensor | None, video: torch.Tensor, audio: torch.Tensor,
            s: SamplerSettings, exit_step: int | None, grad: bool) -> SampledChunk:
    steps = s.steps if exit_step is None else exit_step
    timings = {"orchestrator_s": 0.0, "dit_s": 0.0}
    now = device_clock(video.device)
    t0 = now()
    with torch.set_grad_enabled(grad):
        cache = model.condition_cache(x.conditions, x.prompt)
        if empty_prompt is not None:  # the unconditional branch: empty prompt, no reference (as dropped in training)
            free_cache = model.condition_cache(x.conditions.without_reference(), empty_prompt)
    timings["dit_s"] += now() - t0
    ts = sample_times(s.steps, s.shift)
    prefix, orch = None, None
    for k, (a, b) in enumerate(zip(ts[:steps], ts[1 : steps + 1])):
        last = k == steps - 1
        with torch.set_grad_enabled(grad and last):
            t0 = now()
            timestep = torch.full((audio.shape[0],), a * TIMESTEP_SCALE, device=audio.device)
            inputs = OrchestratorInput(x.reference_voice, x.text_ids, x.text_mask, x.word_numbers, x.word_counts, x.history, audio,
                                       timestep, x.history_mask, x.text_positions)  # fmt: skip
            if not grad and prefix is None:  # inference: the prefix is run once for all steps
                prefix = model.encode_prefix(inputs)
            orch = model.orchestrate(inputs, prefix=prefix)
            t1 = now()
            cv, ca = model.dit_velocity(VideoInput(video), inputs.timestep, x.prompt, AudioInput(audio, orch.condition), cache)
            dv, da = cv, ca
            if empty_prompt is not None:
                fv, fa = model.dit_velocity(VideoInput(video), inputs.timestep, empty_prompt, AudioInput(audio, orch.condition), free_cache)
                dv, da = guided(cv, fv, s.guidance), guided(ca, fa, s.guidance)
            if s.text_guidance != 1.0:
                nv, na = model.dit_velocity(VideoInput(video), inputs.timestep, x.prompt, AudioInput(audio, torch.zeros_like(orch.condition)), cache)
                dv, da = with_guidance(dv, cv, nv, s.text_guidance), with_guidance(da, ca, na, s.text_guidance)
            if last:  # the clean estimate x - t v; after the full sampler (b = 0) it is the Euler step
                video, audio = video - a * dv, audio - a * da
            else:
                video, audio = video + (b - a) * dv, audio + (b - a) * da
            timings["orchestrator_s"] += t1 - t0
            timings["dit_s"] += now() - t1
    assert orch is not None
    return SampledChunk(video, audio, orch.progress, timings, orch.progress_raw)
