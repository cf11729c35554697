"""One paper-preset checkpoint from the public parts (`streamchar checkpoint assemble`): a
diffusers Wan2.2-TI2V-5B transformer and VAE, a transformers Qwen2.5-3B with its tokenizer, an
umT5 encoder and an Oobleck-layout audio VAE, each from a local directory.

Initialised as the paper says (§5.1): the DiT's video path is Wan's, each block's audio expert a
copy of its video FFN, the orchestrator's backbone Qwen's; the parts the paper adds (audio
encoder and decoder, the orchestrator's audio projections, the pointer) start from `seed`.
Every part is checked against the config before anything is written, and every mismatch is named
in one error. The checkpoint's folder holds the generator's weights and config, and copies of the
umT5 encoder, the tokenizer and both VAEs, so that it streams with no other path given."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from streamchar.codecs.paper import OobleckAudioCodec, WanVideoCodec
from streamchar.config import Config
from streamchar.errors import StreamcharError
from streamchar.model.checkpoint import save_generator
from streamchar.model.prompt import UMT5PromptEncoder
from streamchar.model.streamchar_model import build_model
from streamchar.model.tokenizer import QwenTokenizer, check_vocabulary
from streamchar.model.weights import load_wan_into

CODEC_FOLDERS = {"video_codec": "video-vae", "audio_codec": "audio-vae"}  # in the checkpoint's folder, named by its config.json


@dataclass(frozen=True)
class Parts:
    """The directories a paper checkpoint is assembled from."""

    wan: Path
    qwen: Path
    umt5: Path
    video_vae: Path
    audio_vae: Path


def _check_parts(cfg: Config, parts: Parts, dtype: torch.dtype) -> tuple[QwenTokenizer, UMT5PromptEncoder]:
    """Every part loaded or checked against `cfg`; one error naming each that does not fit."""
    problems: list[str] = []
    loaded: dict[str, object] = {}
    checks = {
        "qwen": lambda: check_vocabulary(QwenTokenizer(parts.qwen), cfg),
        "umt5": lambda: UMT5PromptEncoder(Path(parts.umt5), cfg.dit.text_dim, cfg.prompt.tokens, dtype),
        "video_vae": lambda: WanVideoCodec.load(parts.video_vae, cfg),
        "audio_vae": lambda: OobleckAudioCodec.load(parts.audio_vae, cfg),
    }
    for name, check in checks.items():
        try:
            loaded[name] = check()
        except StreamcharError as e:
            problems.append(f"--{name.replace('_', '-')}: {e}")
    if problems:
        raise StreamcharError("the parts do not fit the paper preset:\n  " + "\n  ".join(problems))
    return loaded["qwen"], loaded["umt5"]  # type: ignore[return-value]


def assemble_checkpoint(cfg: Config, parts: Parts, out: Path, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict:
    """Writes the checkpoint to `out` (which must not hold one yet) and returns what was loaded.
    `dtype` bfloat16: built, loaded and written in bfloat16 from the start (the duration head
    aside), in half float32's memory and disk."""
    out = Path(out)
    if cfg.prompt.encoder != "umt5" or cfg.orchestrator.tokenizer != "qwen2":
        raise StreamcharError("assemble builds the paper's generator: the config needs prompt.encoder umt5 and orchestrator.tokenizer qwen2")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise StreamcharError(f"{out} is not empty; assemble writes a new checkpoint folder")
    tokenizer, prompt = _check_parts(cfg, parts, dtype)
    torch.manual_seed(seed)
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # each layer made in dtype: no float32 copy of the whole
    try:
        model = build_model(cfg, tokenizer=tokenizer).in_precision(dtype)
    finally:
        torch.set_default_dtype(before)
    wan = load_wan_into(model.dit, parts.wan)
    model.orchestrator.load_backbone(parts.qwen, dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        for key, folder in CODEC_FOLDERS.items():
            shutil.copytree(getattr(parts, key.replace("codec", "vae")), work / folder)
        sources = {k: str(Path(v).resolve()) for k, v in vars(parts).items()}
        save_generator(work, model, prompt, {"stage": "assembled", "seed": seed, "sources": sources, **CODEC_FOLDERS})
        if out.exists():
            out.rmdir()
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return {**wan, "qwen_layers": cfg.orchestrator.num_layers, "tokenizer_tokens": tokenizer.vocab_size, "out": str(out)}
