"""The frozen prompt encoder whose states the DiT cross-attends to (docs/architecture.md, "Models").

The paper uses umT5-XXL (4096-d). The tiny preset uses a small T5 encoder (transformers'
`T5EncoderModel`, 128-d, 2 layers) over the project's character tokenizer. No pretrained T5 of
that size can be had here, so it is initialised from a fixed seed, kept frozen like the real
one, and saved in the model checkpoint: the DiT learns to read it, as it learns to read umT5.
"""

from __future__ import annotations

import torch
from torch import nn

from streamchar.model.tokenizer import CharacterTokenizer

PROMPT_TOKENS = 160  # tiny: states padded with zeros to this length, as Wan pads umT5's to 512


def _pad_states(states: torch.Tensor, mask: torch.Tensor, length: int) -> torch.Tensor:
    """Zero the padding and give every prompt the same length, in training and streaming alike."""
    states = states * mask[..., None].to(states.dtype)
    if states.shape[1] < length:
        states = torch.nn.functional.pad(states, (0, 0, 0, length - states.shape[1]))
    return states[:, :length]


class PromptEncoder(nn.Module):
    def __init__(self, text_dim: int, vocab_size: int = 96, seed: int = 0):
        super().__init__()
        from transformers import T5Config, T5EncoderModel

        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        heads = max(1, text_dim // 32)
        self.encoder = T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=text_dim, d_kv=text_dim // heads, d_ff=2 * text_dim,
                                               num_layers=2, num_heads=heads, dropout_rate=0.0))  # fmt: skip
        torch.random.set_rng_state(gen_state)
        self.tokenizer = CharacterTokenizer(vocab_size)
        self.requires_grad_(False)
        self.eval()

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> torch.Tensor:
        """(B, L, text_dim); shorter prompts padded (and masked inside the encoder)."""
        toks = [self.tokenizer.encode(p or " ").ids[:PROMPT_TOKENS] for p in prompts]
        n = max(len(t) for t in toks)
        ids = torch.zeros(len(toks), n, dtype=torch.long)
        mask = torch.zeros(len(toks), n, dtype=torch.long)
        for i, t in enumerate(toks):
            ids[i, : len(t)], mask[i, : len(t)] = torch.tensor(t), 1
        device = next(self.encoder.parameters()).device
        states = self.encoder(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        return _pad_states(states, mask.to(device), PROMPT_TOKENS)
