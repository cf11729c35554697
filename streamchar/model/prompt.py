"""The frozen prompt encoder whose states the DiT cross-attends to (docs/architecture.md, "Models").

The paper, as Wan2.2, uses umT5-XXL (4096-d, 512 tokens), loaded here from a local transformers
directory (`prompt.encoder: umt5`). The tiny preset uses a small T5 encoder (transformers'
`T5EncoderModel`, 128-d, 2 layers) over the project's character tokenizer. No pretrained T5 of
that size can be had here, so it is initialised from a fixed seed, kept frozen like the real
one, and saved in the model checkpoint: the DiT learns to read it, as it learns to read umT5.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from streamchar.config import Config
from streamchar.errors import StreamcharError
from streamchar.model.tokenizer import CharacterTokenizer
from streamchar.utils.files import in_folder


def _pad_states(states: torch.Tensor, mask: torch.Tensor, length: int) -> torch.Tensor:
    """Zero the padding and give every prompt the same length, in training and streaming alike."""
    states = states * mask[..., None].to(states.dtype)
    if states.shape[1] < length:
        states = torch.nn.functional.pad(states, (0, 0, 0, length - states.shape[1]))
    return states[:, :length]


class PromptEncoder(nn.Module):
    """Prompts -> (B, tokens, text_dim) states, padding zeroed. `in_checkpoint`: its weights are
    saved with the generator's (else it is loaded from its own directory)."""

    in_checkpoint = True
    tokens: int
    execution_device: torch.device | None = None  # where it runs when its weights wait elsewhere (offloaded); None: with its weights

    def input_device(self) -> torch.device:
        return self.execution_device or next(self.parameters()).device


class TinyT5PromptEncoder(PromptEncoder):
    def __init__(self, text_dim: int, vocab_size: int = 96, seed: int = 0, tokens: int = 160):
        super().__init__()
        from transformers import T5Config, T5EncoderModel

        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        heads = max(1, text_dim // 32)
        self.encoder = T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=text_dim, d_kv=text_dim // heads, d_ff=2 * text_dim,
                                               num_layers=2, num_heads=heads, dropout_rate=0.0))  # fmt: skip
        torch.random.set_rng_state(gen_state)
        self.tokenizer = CharacterTokenizer(vocab_size)
        self.tokens = tokens
        self.requires_grad_(False)
        self.eval()

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> torch.Tensor:
        """(B, L, text_dim); shorter prompts padded (and masked inside the encoder)."""
        toks = [self.tokenizer.encode(p or " ").ids[: self.tokens] for p in prompts]
        n = max(len(t) for t in toks)
        ids = torch.zeros(len(toks), n, dtype=torch.long)
        mask = torch.zeros(len(toks), n, dtype=torch.long)
        for i, t in enumerate(toks):
            ids[i, : len(t)], mask[i, : len(t)] = torch.tensor(t), 1
        device = self.input_device()
        states = self.encoder(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        return _pad_states(states, mask.to(device), self.tokens)


class UMT5PromptEncoder(PromptEncoder):
    """Wan's text encoder: transformers' `UMT5EncoderModel` and its tokenizer from one local
    directory, frozen. Prompts are cut at `tokens` and padded to it, the padding's states zeroed."""

    in_checkpoint = False

    def __init__(self, directory: Path, text_dim: int, tokens: int, dtype: torch.dtype = torch.float32):
        super().__init__()
        from transformers import AutoTokenizer, UMT5EncoderModel

        if not (directory / "config.json").is_file():
            raise StreamcharError(f"no umT5 encoder at {directory}: expected a transformers directory (config.json, weights, tokenizer) "
                                  "as UMT5EncoderModel.save_pretrained and the tokenizer's save_pretrained write it")  # fmt: skip
        try:
            self.encoder = UMT5EncoderModel.from_pretrained(directory, dtype=dtype)
            self.tokenizer = AutoTokenizer.from_pretrained(directory)
        except (OSError, ValueError) as e:
            raise StreamcharError(f"cannot load the umT5 encoder from {directory}: {e}") from None
        if self.encoder.config.d_model != text_dim:
            raise StreamcharError(f"the umT5 encoder at {directory} is {self.encoder.config.d_model}-d; this config's DiT reads "
                                  f"{text_dim}-d prompt states (dit.text_dim)")  # fmt: skip
        self._take(directory, tokens)

    @classmethod
    def from_modules(cls, encoder: nn.Module, tokenizer: object, tokens: int) -> UMT5PromptEncoder:
        """An encoder already in memory (the GPU benchmark's random full-size one); it has no
        directory, so a checkpoint cannot be saved with it."""
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self.encoder, self.tokenizer = encoder, tokenizer
        self._take(None, tokens)
        return self

    def _take(self, directory: Path | None, tokens: int) -> None:
        self.directory, self.tokens = directory, tokens
        self.requires_grad_(False)
        self.eval()

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> torch.Tensor:
        batch = self.tokenizer([p or "" for p in prompts], padding="max_length", truncation=True, max_length=self.tokens,
                               return_tensors="pt")  # fmt: skip
        device = self.input_device()
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        states = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return _pad_states(states, mask, self.tokens)

    def save(self, directory: Path) -> None:
        self.encoder.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)


def umt5_directory(cfg: Config, folder: Path | None) -> Path:
    """Where `cfg`'s umT5 encoder is (`folder`: a checkpoint's)."""
    return in_folder(str(cfg.prompt.directory), folder, "the umT5 prompt encoder", "prompt.directory")


def build_prompt_encoder(cfg: Config, seed: int = 0, folder: Path | None = None) -> PromptEncoder:
    """The prompt encoder `cfg.prompt` names; `folder`: the checkpoint's, where a umT5 encoder lives."""
    if cfg.prompt.encoder == "t5":
        return TinyT5PromptEncoder(cfg.dit.text_dim, cfg.orchestrator.vocab_size, seed=seed, tokens=cfg.prompt.tokens)
    return UMT5PromptEncoder(umt5_directory(cfg, folder), cfg.dit.text_dim, cfg.prompt.tokens)
