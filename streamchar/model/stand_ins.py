"""Random stand-ins for the public weights the paper preset is assembled from, in their real
classes and formats: diffusers' `WanTransformer3DModel`, `AutoencoderKLWan` (the Wan2.2 layout)
and `AutoencoderOobleck`; transformers' `Qwen2ForCausalLM` with a `Qwen2Tokenizer` and
`UMT5EncoderModel` with a `T5Tokenizer`, each written with `save_pretrained`. They let the paper
preset's geometry run end to end where the real weights cannot be had (`streamchar bench paper`,
the tests): the sizes that change the output's quality but not its shape (depth, width,
vocabulary) come from the config given, the rest is the real layout. The tokenizers are trained
on the Harvard sentences, so that words split into several pieces as they do in Qwen's."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from streamchar.config import Config
from streamchar.data.harvard import split_sentences
from streamchar.model.dit import FREQ_DIM

# Wan2.2-TI2V-5B's VAE and Stable Audio Open's, as diffusers configures them; `width` scales the channels
WAN22_VAE = {"base_dim": 160, "decoder_base_dim": 256, "z_dim": 48, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2,
             "temperal_downsample": [False, True, True], "is_residual": True, "in_channels": 12, "out_channels": 12,
             "patch_size": 2, "scale_factor_temporal": 4, "scale_factor_spatial": 16}  # fmt: skip
OOBLECK = {"downsampling_ratios": [2, 4, 4, 8, 8], "channel_multiples": [1, 2, 4, 8, 16],
           "decoder_channels": 128, "audio_channels": 2}  # fmt: skip  (the encoder emits 2 x the latent channels: mean and scale)
UMT5_XXL = {"d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64, "vocab_size": 256384}


def _corpus() -> list[str]:
    return split_sentences("train")


def qwen_tokenizer(vocab: int):  # noqa: ANN201
    """A `Qwen2Tokenizer` (Qwen's byte-level BPE and pre-tokenizer) with `vocab` pieces learnt here."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(_corpus(), trainers.BpeTrainer(vocab_size=vocab - 1, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                           show_progress=False))  # fmt: skip
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return Qwen2Tokenizer(vocab={**model["vocab"], "<|endoftext|>": len(model["vocab"])}, merges=merges)


def t5_tokenizer(vocab: int):  # noqa: ANN201
    """A `T5Tokenizer` (SentencePiece-style unigram, as umT5's) with `vocab` pieces learnt here."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5Tokenizer

    uni = Tokenizer(models.Unigram())
    uni.pre_tokenizer = pre_tokenizers.Metaspace()
    uni.train_from_iterator(_corpus(), trainers.UnigramTrainer(vocab_size=vocab, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>",
                                                               show_progress=False))  # fmt: skip
    pieces = [(p, float(s)) for p, s in json.loads(uni.to_str())["model"]["vocab"]]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def wan_transformer(cfg: Config):  # noqa: ANN201
    from diffusers import WanTransformer3DModel

    d = cfg.dit
    return WanTransformer3DModel(patch_size=tuple(d.patch_size), num_attention_heads=d.num_heads, attention_head_dim=d.head_dim,
                                 in_channels=cfg.video.latent_channels, out_channels=cfg.video.latent_channels, text_dim=d.text_dim,
                                 freq_dim=FREQ_DIM, ffn_dim=d.ffn_dim, num_layers=d.num_layers, cross_attn_norm=True)  # fmt: skip


def wan_vae(width: float = 1.0):  # noqa: ANN201
    from diffusers import AutoencoderKLWan

    z = WAN22_VAE["z_dim"]
    dims = {k: max(4, round(WAN22_VAE[k] * width)) for k in ("base_dim", "decoder_base_dim")}
    return AutoencoderKLWan(**{**WAN22_VAE, **dims}, latents_mean=[0.0] * z, latents_std=[1.0] * z)


def oobleck(cfg: Config, width: float = 1.0):  # noqa: ANN201
    from diffusers import AutoencoderOobleck

    z = cfg.audio.latent_channels
    return AutoencoderOobleck(**{**OOBLECK, "decoder_channels": max(4, round(OOBLECK["decoder_channels"] * width))},
                              encoder_hidden_size=2 * z, decoder_input_channels=z, sampling_rate=cfg.audio.sample_rate)  # fmt: skip


def qwen_lm(cfg: Config):  # noqa: ANN201
    from transformers import Qwen2Config, Qwen2ForCausalLM

    o = cfg.orchestrator
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=o.vocab_size, hidden_size=o.hidden_size, intermediate_size=o.ffn_dim,
                                        num_hidden_layers=o.num_layers, num_attention_heads=o.num_heads, num_key_value_heads=o.num_kv_heads,
                                        tie_word_embeddings=True))  # fmt: skip


def umt5_encoder(cfg: Config, full: bool = False):  # noqa: ANN201
    """umT5-XXL's layout at `dit.text_dim` wide (`full`: its depth, heads and vocabulary too)."""
    from transformers import UMT5Config, UMT5EncoderModel

    d = cfg.dit.text_dim
    shape = UMT5_XXL if full else {"d_kv": 32, "d_ff": 2 * d, "num_layers": 2, "num_heads": max(1, d // 32), "vocab_size": 512}
    return UMT5EncoderModel(UMT5Config(d_model=d, dropout_rate=0.0, **shape))


def write_stand_ins(cfg: Config, root: Path, seed: int = 0, vae_width: float = 1.0) -> dict[str, Path]:
    """Every part `streamchar checkpoint assemble` takes, random, each in its own directory under
    `root`: {wan, qwen, umt5, video_vae, audio_vae} -> directory."""
    torch.manual_seed(seed)
    root = Path(root)
    out = {name: root / name for name in ("wan", "qwen", "umt5", "video_vae", "audio_vae")}
    wan_transformer(cfg).save_pretrained(out["wan"])
    qwen_lm(cfg).save_pretrained(out["qwen"])
    qwen_tokenizer(min(cfg.orchestrator.vocab_size, 1024)).save_pretrained(out["qwen"])
    umt5_encoder(cfg).save_pretrained(out["umt5"])
    t5_tokenizer(512).save_pretrained(out["umt5"])
    wan_vae(vae_width).save_pretrained(out["video_vae"])
    oobleck(cfg, vae_width).save_pretrained(out["audio_vae"])
    return out
