"""Training for text guidance: `train.condition_dropout` gives that share of the windows' DiT no
orchestrator condition, the branch a stream's `text_guidance` pushes away from."""

import torch

from streamchar.config import load_config
from streamchar.data.latents import LatentCache
from streamchar.model.checkpoint import new_generator
from streamchar.model.tokenizer import CharacterTokenizer
from streamchar.training.batch import collate, pretraining_loss
from streamchar.training.windows import WindowSource


def _grad_of_condition_input(model, prompt, batch, dropout: float) -> float:
    model.zero_grad()
    out = pretraining_loss(model, prompt, batch, torch.Generator().manual_seed(1), condition_dropout=dropout)
    out["audio"].backward()
    return float(model.dit.audio_condition_in.weight.grad.abs().sum())


def test_dropped_windows_teach_the_dit_without_the_orchestrator(cache):
    cfg = load_config("tiny")
    src = WindowSource(LatentCache(cache), cfg, CharacterTokenizer(96))
    later = [k for k, (_, c) in enumerate(src.index) if c >= 1][:2]
    batch = collate([src.window(k) for k in later])
    model, prompt = new_generator(cfg, seed=0)
    with torch.no_grad():
        plain = pretraining_loss(model, prompt, batch, torch.Generator().manual_seed(1))
        off = pretraining_loss(model, prompt, batch, torch.Generator().manual_seed(1), condition_dropout=0.0)
    assert torch.equal(plain["loss"], off["loss"])  # off draws nothing: runs without it are unchanged
    assert _grad_of_condition_input(model, prompt, batch, 0.0) > 0
    assert _grad_of_condition_input(model, prompt, batch, 1.0) == 0  # every window dropped: the condition's input sees zeros
