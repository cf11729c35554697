"""The stream's conditions, encoded once before its first chunk: the prompt, the reference image
(its latent for the model and what the video decoder reads of it) and the reference voice."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from streamchar.codecs.base import AudioCodec, VideoCodec
from streamchar.config import Config
from streamchar.model.orchestrator import fit_reference_voice
from streamchar.model.prompt import PromptEncoder
from streamchar.streaming.inputs import StreamRequest


@dataclass
class EncodedConditions:
    prompt: torch.Tensor  # (1, L, d)
    empty_prompt: torch.Tensor | None  # the unconditional branch's prompt, with guidance only
    reference: torch.Tensor  # (1, z, 1, h, w): the reference image's latent
    reference_audio: torch.Tensor  # (1, z_a, 72): the reference voice's latents
    decode_reference: object | None = None  # what the video decoder reads of the reference image
    encoder_calls: int = 0  # codec encoder runs (one per reference)


def encode_reference(video_codec: VideoCodec, cfg: Config, image: np.ndarray) -> tuple[torch.Tensor, object]:
    """The reference image's latent for the model, and what the video decoder reads of it. The
    causal VAE's first latent codes one frame, so a still chunk's first latent is the image's."""
    x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1
    decode_reference = video_codec.prepare_reference(x[None])
    chunk = x[None, :, None].expand(1, 3, 4 * cfg.stream.chunk_latent_frames - 3, *x.shape[1:])
    return video_codec.encode_chunks(chunk.contiguous())[:, :, :1], decode_reference


def encode_voice(audio_codec: AudioCodec, cfg: Config, voice: np.ndarray) -> torch.Tensor:
    hop = audio_codec.hop_length
    n = len(voice) // hop * hop
    return fit_reference_voice(audio_codec.encode(torch.from_numpy(voice[:n])[None], cfg.audio.sample_rate))


@torch.no_grad()
def encode_conditions(prompt_encoder: PromptEncoder, video_codec: VideoCodec, audio_codec: AudioCodec, cfg: Config,
                      request: StreamRequest, guidance: float) -> EncodedConditions:
    """Every condition of a request; the empty prompt only where guidance needs it (guidance != 1)."""
    prompt = prompt_encoder([request.prompt])
    empty = prompt_encoder([""]) if guidance != 1.0 else None
    reference, decode_reference = encode_reference(video_codec, cfg, request.reference_image)
    voice = encode_voice(audio_codec, cfg, request.reference_voice)
    return EncodedConditions(prompt, empty, reference, voice, decode_reference, encoder_calls=2)
