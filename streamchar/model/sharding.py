"""FSDP2 for multi-process training: every DiT block and every orchestrator layer is its own
`fully_shard` unit (parameters gathered just before the block runs, freed after), then the
root module holds the rest (embeddings, heads), gathered for `forward` and for the streaming
engine's root methods (`StreamCharModel.ENGINE_METHODS`)."""

from __future__ import annotations

import torch
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

from streamchar.model.streamchar_model import StreamCharModel


def shard_model(model: StreamCharModel, mesh=None, param_dtype: torch.dtype | None = None) -> StreamCharModel:  # noqa: ANN001
    """Shard in place across the default process group (or `mesh`); `param_dtype` (e.g. bf16)
    gathers the weights in that precision while keeping fp32 master weights and fp32 gradient
    reduction. Inputs are not cast (autocast does that per operation): a bf16 timestep near 1000
    would be rounded to a multiple of 4, and the transcript positions alike."""
    policy = (MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32, cast_forward_inputs=False)
              if param_dtype else MixedPrecisionPolicy())
    for block in model.dit.blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    for layer in model.orchestrator.backbone.layers:
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    for name in StreamCharModel.ENGINE_METHODS:  # Stage II streams through these, not through forward
        register_fsdp_forward_method(model, name)
    return model
