"""Named presets: `paper` has the dimensions of Wan2.2-TI2V-5B and Qwen2.5-3B (docs/architecture.md, "Models"),
`tiny` the same architecture small enough to train and stream on two CPU cores."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "video": {"height": 512, "width": 512, "latent_channels": 48},
        "audio": {"sample_rate": 49152, "hop_length": 2048, "latent_channels": 64},
        "dit": {
            "num_layers": 30,
            "num_heads": 24,
            "head_dim": 128,
            "ffn_dim": 14336,
            "patch_size": (1, 2, 2),
            "text_dim": 4096,
            "audio_encoder_layers": 2,
            "audio_decoder_layers": 2,
        },
        "orchestrator": {
            "num_layers": 36,
            "hidden_size": 2048,
            "num_heads": 16,
            "num_kv_heads": 2,
            "ffn_dim": 11008,
            "vocab_size": 151936,
            "context_window": 32768,
            "tokenizer": "qwen2",
            "tokenizer_directory": "tokenizer",  # Qwen2.5's, kept in the checkpoint's folder
            # §3.2: the text block is the prompt and the transcript; the prompt's length is the project's bound
            "prompt_tokens": 64,
        },
        # Wan2.2's text encoder: umT5-XXL (4,096-d), 512 tokens; a checkpoint keeps it in its folder, beside its own weights
        "prompt": {"encoder": "umt5", "tokens": 512, "directory": "umt5"},
    },
    "tiny": {
        # 6 chunks of history: SynthTalk's clips hold at most 8 chunks, so no training window shows more
        # than 7, and a 2-minute stream read with 10 lost its words once its history grew past them
        "stream": {"history_seconds": 8.25},
        "video": {"height": 128, "width": 128, "latent_channels": 48},
        "audio": {"sample_rate": 24000, "hop_length": 1000, "latent_channels": 64},
        "dit": {
            "num_layers": 4,
            "num_heads": 4,
            "head_dim": 32,
            "ffn_dim": 512,
            "patch_size": (1, 2, 2),
            "text_dim": 128,
            "audio_encoder_layers": 1,
            "audio_decoder_layers": 1,
            # with 12 of 32 head dimensions for time, shared attention alone did not tie the mouth to
            # the speech (docs/tiny-scale.md): each video token also gets its frames' audio
            "audio_to_video": True,
            "mouth_head": True,  # and asked to name its mouth shape (train.mouth_weight), as the orchestrator its phonemes
        },
        "orchestrator": {
            "num_layers": 4,
            "hidden_size": 128,
            "num_heads": 4,
            "num_kv_heads": 2,
            "ffn_dim": 384,
            "vocab_size": 96,
            "context_window": 2048,
            "tokenizer": "characters",
            "phoneme_classes": 75,  # training.phonemes.PHONEME_CLASSES
            # a 4-layer orchestrator trained on two cores did not align text and speech by itself: a plan
            # places each latent in the text, and the pointer's reading keeps the plan where the speech is
            "reading": "plan-pointer",
            "plan": {
                "text_rate": 0.74,  # SynthTalk's mean: characters per audio latent
                "text_window": 2.0,  # tokens; the positions come from word timings, so the bias can be narrow
                # each word timed by the orchestrator's duration head; the tail fitted to SynthTalk's training
                # timings (`streamchar bench pace --cache runs/latents`, benchmarks/results/pace.json)
                "word_pace": {"durations": "learned", "tail_seconds": 0.343},
            },
            "durations": {"width": 64, "layers": 2, "heads": 4},
        },
    },
}
