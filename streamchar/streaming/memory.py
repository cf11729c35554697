"""Ways to hold a generator on a GPU in less memory, from diffusers' hooks (each one's cost is
measured by `streamchar bench paper`):

- `resident`: every part on the GPU, as loaded.
- `offload`: the umT5 prompt encoder, which runs once per session before its first chunk and is
  idle afterwards, stays on the CPU; its blocks come to the GPU one group at a time while it
  runs (diffusers' group offloading).
- `fp8`: `offload`, and the linear and convolution weights of the DiT and of the orchestrator's
  backbone stored in float8 (e4m3), each cast to bfloat16 as its layer runs (diffusers'
  layerwise casting): half of bfloat16's memory for the weights, at the cost of the casts.
"""

from __future__ import annotations

import torch

from streamchar.errors import StreamcharError
from streamchar.model.prompt import UMT5PromptEncoder
from streamchar.streaming.pipeline import Pipeline

MEMORY_MODES = ("resident", "offload", "fp8")
# small layers whose weights are read directly (not through their forward) or matter most to precision
KEEP_BF16 = ("norm", "embed", "time", "patch", "proj_out", "^audio_")


def apply_memory_mode(pipe: Pipeline, mode: str, device: torch.device) -> Pipeline:
    """`pipe` (in bfloat16 on `device`, or anywhere for `resident`) arranged as `mode` says."""
    if mode not in MEMORY_MODES:
        raise StreamcharError(f"unknown memory mode {mode!r}; accepted: {', '.join(MEMORY_MODES)}")
    if mode == "resident":
        return pipe
    from diffusers.hooks import apply_group_offloading, apply_layerwise_casting

    prompt = pipe.prompt_encoder
    if not isinstance(prompt, UMT5PromptEncoder):
        raise StreamcharError(f"memory mode {mode!r} offloads a umT5 prompt encoder; this generator's is {type(prompt).__name__}")
    prompt.to("cpu")
    apply_group_offloading(prompt.encoder.encoder, onload_device=device, offload_device=torch.device("cpu"), offload_type="block_level",
                           num_blocks_per_group=1)  # fmt: skip
    prompt.execution_device = device
    if mode == "fp8":
        for part in (pipe.model.dit, pipe.model.orchestrator.backbone):
            apply_layerwise_casting(part, storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16, skip_modules_pattern=KEEP_BF16)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return pipe
