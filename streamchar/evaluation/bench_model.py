"""Speed of one denoising step on one chunk, with the condition keys/values cached once per chunk
against recomputing them at every step (random weights: speed does not depend on them)."""

from __future__ import annotations

import time

import torch

from streamchar.config import Config
from streamchar.diffusion.flow import TIMESTEP_SCALE, sample_times
from streamchar.model.dit import ConditionInput, VideoInput
from streamchar.model.orchestrator import OrchestratorInput
from streamchar.model.streamchar_model import build_model

TRANSCRIPT_TOKENS = 200


def chunk_inputs(cfg: Config, batch: int = 1, device: str = "cpu", dtype: torch.dtype = torch.float32) -> dict:
    """A steady-state chunk: reference frame, sink and motion latents, a full history window of audio,
    a 200-token transcript, 3 s of reference voice."""
    s = cfg.stream
    h, w = cfg.video.height // s.vae_spatial_stride, cfg.video.width // s.vae_spatial_stride
    cv, ca = cfg.video.latent_channels, cfg.audio.latent_channels
    per_s = cfg.audio.sample_rate / cfg.audio.hop_length
    g = torch.Generator().manual_seed(0)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    k = s.chunk_latent_frames
    conditions = ConditionInput(r(batch, cv, 1, h, w), r(batch, cv, k, h, w), r(batch, cv, k, h, w))
    ids = torch.randint(3, min(cfg.orchestrator.vocab_size, 60), (batch, TRANSCRIPT_TOKENS), generator=g).to(device)
    words = (torch.arange(TRANSCRIPT_TOKENS, dtype=dtype, device=device) / 6).expand(batch, -1)
    orch = dict(reference_audio=r(batch, ca, int(3 * per_s)), text_ids=ids, text_mask=torch.ones_like(ids), word_numbers=words,
                word_counts=torch.full((batch,), TRANSCRIPT_TOKENS / 6, device=device),
                history_audio=r(batch, ca, int(s.history_seconds * per_s)))  # fmt: skip
    return {"video": r(batch, cv, k, h, w), "audio": r(batch, ca, s.chunk_audio_latents), "conditions": conditions,
            "orchestrator": orch, "prompt": r(batch, 16, cfg.dit.text_dim)}


@torch.no_grad()
def time_chunk(model, inputs: dict, steps: int, cached: bool) -> float:  # noqa: ANN001
    """Seconds to denoise one chunk in `steps` Euler steps (orchestrator + DiT at every step)."""
    video, audio = inputs["video"].clone(), inputs["audio"].clone()
    t0 = time.perf_counter()
    cache = model.dit.condition_cache(inputs["conditions"], inputs["prompt"]) if cached else None
    ts = sample_times(steps)
    for a, b in zip(ts, ts[1:]):
        timestep = torch.full((video.shape[0],), a * TIMESTEP_SCALE, device=video.device)
        x = OrchestratorInput(**inputs["orchestrator"], noisy_audio=audio, timestep=timestep)
        dv, da, _ = model.velocity(VideoInput(video), x, inputs["prompt"], cache=cache, conditions=None if cached else inputs["conditions"])
        video, audio = video + (b - a) * dv, audio + (b - a) * da
    if video.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def bench_denoise(cfg: Config, steps: int = 4, repeats: int = 3, device: str = "cpu", dtype: torch.dtype = torch.float32) -> dict:
    model = build_model(cfg, device).to(dtype).eval()
    inputs = chunk_inputs(cfg, device=device, dtype=dtype)
    time_chunk(model, inputs, 1, True)  # warm-up
    cached = min(time_chunk(model, inputs, steps, True) for _ in range(repeats))
    uncached = min(time_chunk(model, inputs, steps, False) for _ in range(repeats))
    return {
        "preset": cfg.preset, "device": device, "dtype": str(dtype).replace("torch.", ""), "steps": steps, "threads": torch.get_num_threads(),
        "per_step_cached_s": cached / steps, "per_step_uncached_s": uncached / steps, "uncached_over_cached": uncached / cached,
        "chunk_cached_s": cached, "chunk_seconds": cfg.stream.chunk_seconds,
    }  # fmt: skip
