"""The joint audio-video DiT (paper §3.1, §3.3; docs/architecture.md, "Models").

Wan2.2's transformer with what the paper adds:
- the sequence `[z_ref, z_sink, z_mot, x_v(t), x_a(t)]`: condition tokens (reference frame,
  sink chunk, motion latents) then the noisy video and audio tokens of the chunk;
- condition tokens take the t = 0 timestep embedding and attend only to each other, noisy
  tokens attend to everything (the asymmetric mask). So each block's condition keys/values
  do not depend on the noisy tokens: `condition_cache` computes them once per chunk and every
  denoising step reuses them;
- shared self-attention and prompt cross-attention over video and audio tokens, and a
  modality-aware mixture of feed-forward experts: `ffn` (Wan's) for video tokens, `ffn_audio`
  for audio tokens (initialised as a copy of the video FFN when Wan weights are loaded);
- an audio encoder fusing the orchestrator's condition `c_a` with the noisy audio latents
  before the blocks and an audio decoder after them; velocity outputs for both modalities;
- optionally (`audio_to_video`, a tiny-scale lip-sync aid, not in the paper) each noisy video
  token also gets, through a zero-initialised projection, the encoded audio tokens of the frames
  its latent covers, so the mouth reads the speech of its own time directly; and (`mouth_head`, a
  training aid) a linear head names each video latent's mouth shape from its tokens after the
  blocks, so that the video tokens learn to carry it.

Module names on the video path are those of diffusers' `WanTransformer3DModel`, built from its
own parts (`WanAttention`, `FeedForward`, `WanTimeTextImageEmbedding`), so its state dict loads
as is and, without conditions and audio, the forward pass is Wan's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from diffusers.models.normalization import FP32LayerNorm
from diffusers.models.transformers.transformer_wan import WanAttention, WanAttnProcessor, WanTimeTextImageEmbedding
from torch import nn

from streamchar.config.schema import DiTConfig, frames_of_latent
from streamchar.errors import StreamcharError
from streamchar.model.rope import MOTION_START, REFERENCE_TIME, SINK_START, ModalityRoPE, apply_rope

FREQ_DIM = 256
MOUTH_PARAMS = 3  # open, width, round (streamchar.data.visemes)
EPS = 1e-6

Rope = tuple[torch.Tensor, torch.Tensor]
KV = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class VideoInput:
    latents: torch.Tensor  # (B, C, F, H, W) noisy video latents of the chunk
    times: torch.Tensor | None = None  # (F,) temporal positions; default 0..F-1


@dataclass(frozen=True)
class AudioInput:
    latents: torch.Tensor  # (B, C, N) noisy audio latents of the chunk
    condition: torch.Tensor  # (B, N, D) the orchestrator's frame-aligned condition c_a
    times: torch.Tensor | None = None  # (N,) positions in audio latents; default 0..N-1


@dataclass(frozen=True)
class ConditionInput:
    reference: torch.Tensor | None = None  # (B, C, 1, H, W) reference frame latent
    sink: torch.Tensor | None = None  # (B, C, S, H, W) the stream's first chunk
    motion: torch.Tensor | None = None  # (B, C, K, H, W) the previous chunk's latents

    def without_reference(self) -> ConditionInput:
        """The unconditional branch of guidance: the reference frame zeroed, as pretraining drops it."""
        assert self.reference is not None
        return ConditionInput(torch.zeros_like(self.reference), self.sink, self.motion)

    def parts(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(latents, temporal positions) of each condition present, in sequence order."""
        out = []
        if self.reference is not None:
            out.append((self.reference, torch.tensor([REFERENCE_TIME])))
        if self.sink is not None:
            out.append((self.sink, SINK_START + torch.arange(self.sink.shape[2], dtype=torch.float64)))
        if self.motion is not None:
            k = self.motion.shape[2]
            out.append((self.motion, MOTION_START + (9 - k) + torch.arange(k, dtype=torch.float64)))
        return out


@dataclass
class ConditionCache:
    """Per block, the condition tokens' keys and values (after norm and RoPE)."""

    kv: list[KV]
    tokens: int


def _project(attn: WanAttention, x: torch.Tensor, rope: Rope | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    q = attn.norm_q(attn.to_q(x)).unflatten(2, (attn.heads, -1))
    k = attn.norm_k(attn.to_k(x)).unflatten(2, (attn.heads, -1))
    v = attn.to_v(x).unflatten(2, (attn.heads, -1))
    if rope is not None:
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
    return q, k, v


def _attend(attn: WanAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    out = out.transpose(1, 2).flatten(2, 3).type_as(q)
    return attn.to_out[1](attn.to_out[0](out))


def frame_audio_pooling(video_latents: int, audio_latents: int, temporal_stride: int = 4) -> torch.Tensor:
    """(F, N) averaging weights: video latent j covers the frames `frames_of_latent` names, and frame n
    is audio latent n (both run at 24 per second: docs/architecture.md, "Stream geometry"); frames past the audio take its last latent."""
    pool = torch.zeros(video_latents, audio_latents)
    for j in range(video_latents):
        for n in frames_of_latent(j, temporal_stride):
            pool[j, min(n, audio_latents - 1)] += 1.0
    return pool / pool.sum(dim=1, keepdim=True)


class JointBlock(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, heads: int, cross_attn_norm: bool = True):
        super().__init__()
        self.norm1 = FP32LayerNorm(dim, EPS, elementwise_affine=False)
        self.attn1 = WanAttention(dim, heads, dim // heads, EPS, processor=WanAttnProcessor())
        self.attn2 = WanAttention(dim, heads, dim // heads, EPS, cross_attention_dim_head=dim // heads, processor=WanAttnProcessor())
        self.norm2 = FP32LayerNorm(dim, EPS, elementwise_affine=True) if cross_attn_norm else nn.Identity()
        self.ffn = FeedForward(dim, inner_dim=ffn_dim, activation_fn="gelu-approximate")
        self.ffn_audio = FeedForward(dim, inner_dim=ffn_dim, activation_fn="gelu-approximate")
        self.norm3 = FP32LayerNorm(dim, EPS, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, rope: Rope, text: torch.Tensor, video_tokens: int,
                cond_kv: KV | None = None) -> tuple[torch.Tensor, KV]:
        """x: (B, L, D) tokens sharing the modulation `temb` (B, 6, D); the first `video_tokens`
        use the video expert, the rest the audio expert. Keys/values of `cond_kv` are attended
        to as well. Returns the new tokens and this call's own keys/values."""
        shift, scale, gate, c_shift, c_scale, c_gate = (self.scale_shift_table + temb.float()).chunk(6, dim=1)
        h = (self.norm1(x.float()) * (1 + scale) + shift).type_as(x)
        q, k, v = _project(self.attn1, h, rope)
        kk, vv = (torch.cat([cond_kv[0], k], dim=1), torch.cat([cond_kv[1], v], dim=1)) if cond_kv is not None else (k, v)
        x = (x.float() + _attend(self.attn1, q, kk, vv) * gate).type_as(x)

        h = self.norm2(x.float()).type_as(x)
        q2 = self.attn2.norm_q(self.attn2.to_q(h)).unflatten(2, (self.attn2.heads, -1))
        k2 = self.attn2.norm_k(self.attn2.to_k(text)).unflatten(2, (self.attn2.heads, -1))
        v2 = self.attn2.to_v(text).unflatten(2, (self.attn2.heads, -1))
        x = x + _attend(self.attn2, q2, k2, v2)

        h = (self.norm3(x.float()) * (1 + c_scale) + c_shift).type_as(x)
        if video_tokens >= h.shape[1]:
            ff = self.ffn(h)
        elif video_tokens == 0:
            ff = self.ffn_audio(h)
        else:  # modality-aware experts: route by token modality
            ff = torch.cat([self.ffn(h[:, :video_tokens]), self.ffn_audio(h[:, video_tokens:])], dim=1)
        x = (x.float() + ff.float() * c_gate).type_as(x)
        return x, (k, v)


class AudioStack(nn.Module):
    """A few bidirectional transformer layers over the chunk's audio tokens."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, layers: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, ffn_dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
            for _ in range(layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class JointDiT(nn.Module):
    def __init__(self, cfg: DiTConfig, video_channels: int, audio_channels: int, cross_attn_norm: bool = True):
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_dim
        self.video_channels, self.audio_channels = video_channels, audio_channels
        self.patch_size = tuple(cfg.patch_size)
        self.rope = ModalityRoPE(cfg.head_dim)
        self.patch_embedding = nn.Conv3d(video_channels, d, kernel_size=self.patch_size, stride=self.patch_size)
        self.condition_embedder = WanTimeTextImageEmbedding(dim=d, time_freq_dim=FREQ_DIM, time_proj_dim=6 * d, text_embed_dim=cfg.text_dim)
        self.blocks = nn.ModuleList(JointBlock(d, cfg.ffn_dim, cfg.num_heads, cross_attn_norm) for _ in range(cfg.num_layers))
        self.norm_out = FP32LayerNorm(d, EPS, elementwise_affine=False)
        self.proj_out = nn.Linear(d, video_channels * math.prod(self.patch_size))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, d) / d**0.5)
        # the audio path (not in Wan)
        self.audio_in = nn.Linear(audio_channels, d)
        self.audio_condition_in = nn.Linear(d, d)
        self.audio_encoder = AudioStack(d, cfg.num_heads, cfg.ffn_dim, cfg.audio_encoder_layers)
        self.audio_decoder = AudioStack(d, cfg.num_heads, cfg.ffn_dim, cfg.audio_decoder_layers)
        self.audio_norm_out = nn.LayerNorm(d, eps=EPS)
        self.audio_proj_out = nn.Linear(d, audio_channels)
        if cfg.audio_to_video and self.patch_size[0] != 1:
            raise StreamcharError(f"audio_to_video needs a temporal patch of 1 (one token per latent frame); the patch is {self.patch_size}")
        self.audio_to_video = nn.Linear(d, d) if cfg.audio_to_video else None
        if self.audio_to_video is not None:
            nn.init.zeros_(self.audio_to_video.weight)
            nn.init.zeros_(self.audio_to_video.bias)
        self.mouth_head = nn.Linear(d, MOUTH_PARAMS) if cfg.mouth_head else None

    # embeddings ---------------------------------------------------------------------------
    def time_embedding(self, timestep: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Wan's timestep path: (B,) in [0, 1000] -> temb (B, D), modulation (B, 6, D)."""
        ce = self.condition_embedder
        t = ce.timesteps_proj(timestep).to(next(ce.time_embedder.parameters()).dtype)
        temb = ce.time_embedder(t).type_as(like)
        return temb, ce.time_proj(ce.act_fn(temb)).unflatten(1, (6, -1))

    def embed_text(self, text: torch.Tensor) -> torch.Tensor:
        return self.condition_embedder.text_embedder(text)

    def _patchify(self, latents: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        if latents.ndim != 5:
            raise StreamcharError(f"video latents must be (batch, channels, frames, height, width), got {tuple(latents.shape)}")
        b, c, f, h, w = latents.shape
        pt, ph, pw = self.patch_size
        if c != self.video_channels or f % pt or h % ph or w % pw:
            raise StreamcharError(f"video latents {tuple(latents.shape)} do not fit the DiT: it takes {self.video_channels} channels "
                                  f"and frames/height/width divisible by the patch {self.patch_size}")
        x = self.patch_embedding(latents).flatten(2).transpose(1, 2).contiguous()
        return x, (f // pt, h // ph, w // pw)

    def _video_rope(self, times: torch.Tensor, grid: tuple[int, int, int]) -> Rope:
        return self.rope.video(times.double(), grid[1], grid[2])

    # conditions -------------------------------------------------------------------------
    def condition_cache(self, conditions: ConditionInput, text: torch.Tensor) -> ConditionCache | None:
        """Run the condition tokens (t = 0, attending only to each other) through all blocks and
        keep each block's keys/values: valid for every denoising step of the chunk."""
        parts = conditions.parts()
        if not parts:
            return None
        tokens, cos, sin = [], [], []
        for latents, times in parts:
            x, grid = self._patchify(latents)
            c, s = self._video_rope(times, grid)
            tokens.append(x)
            cos.append(c)
            sin.append(s)
        x = torch.cat(tokens, dim=1)
        rope = (torch.cat(cos, dim=1).to(x.device), torch.cat(sin, dim=1).to(x.device))
        text_h = self.embed_text(text)
        _, mod0 = self.time_embedding(torch.zeros(x.shape[0], device=x.device), x)
        kv = []
        for block in self.blocks:
            x, own = block(x, mod0, rope, text_h, video_tokens=x.shape[1])
            kv.append(own)
        return ConditionCache(kv, x.shape[1])

    # the denoising step -------------------------------------------------------------------
    def forward(self, video: VideoInput | None, timestep: torch.Tensor, text: torch.Tensor, audio: AudioInput | None = None,
                conditions: ConditionInput | None = None, cache: ConditionCache | None = None,
                mouth: bool = False) -> tuple[torch.Tensor | None, ...]:
        """Velocities for the noisy video (B, C, F, H, W) and audio (B, C, N) latents.
        `timestep` (B,) is flow time t scaled to [0, 1000]. Give `cache` (from
        `condition_cache`) to reuse condition keys/values; otherwise `conditions` are run now.
        `video=None` runs the audio path alone (the speech-only pretraining stage). With
        `mouth`, a third output: the mouth head's (B, F, 3) shapes (None without video or head)."""
        if video is None and audio is None:
            raise StreamcharError("the DiT needs video or audio latents")
        if cache is None and conditions is not None:
            cache = self.condition_cache(conditions, text)
        text_h = self.embed_text(text)
        tokens, cos, sin = [], [], []
        grid = (0, 0, 0)
        if video is not None:
            x, grid = self._patchify(video.latents)
            times = video.times if video.times is not None else torch.arange(grid[0], dtype=torch.float64)
            c, s_ = self._video_rope(times, grid)
            tokens.append(x), cos.append(c), sin.append(s_)
        b = (video.latents if video is not None else audio.latents).shape[0]  # type: ignore[union-attr]
        temb, mod = self.time_embedding(timestep, text_h)
        n_video = tokens[0].shape[1] if video is not None else 0
        if audio is not None:
            if audio.latents.ndim != 3 or audio.latents.shape[1] != self.audio_channels or audio.condition.shape[:2] != (b, audio.latents.shape[2]):
                raise StreamcharError(f"audio latents {tuple(audio.latents.shape)} with condition {tuple(audio.condition.shape)} do not fit: "
                                      f"expected (batch, {self.audio_channels}, N) and (batch, N, {self.cfg.hidden_dim})")
            a = self.audio_in(audio.latents.transpose(1, 2)) + self.audio_condition_in(audio.condition) + temb[:, None]
            a = self.audio_encoder(a)
            a_times = audio.times if audio.times is not None else torch.arange(a.shape[1], dtype=torch.float64)
            ac, as_ = self.rope.audio(a_times.double())
            tokens.append(a), cos.append(ac), sin.append(as_)
            if video is not None and self.audio_to_video is not None:
                pool = frame_audio_pooling(grid[0], a.shape[1]).to(a)
                per_frame = self.audio_to_video(pool @ a)  # (B, F, D)
                tokens[0] = tokens[0] + per_frame.repeat_interleave(grid[1] * grid[2], dim=1)
        x = torch.cat(tokens, dim=1)
        cos_all, sin_all = torch.cat(cos, dim=1).to(x.device), torch.cat(sin, dim=1).to(x.device)
        for i, block in enumerate(self.blocks):
            x, _ = block(x, mod, (cos_all, sin_all), text_h, n_video, cache.kv[i] if cache is not None else None)

        video_out = None
        if video is not None:
            v = x[:, :n_video]
            shift, scale = (self.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
            v = (self.norm_out(v.float()) * (1 + scale) + shift).type_as(v)
            v = self.proj_out(v)
            pt, ph, pw = self.patch_size
            f, h, w = grid
            v = v.reshape(b, f, h, w, pt, ph, pw, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
            video_out = v.flatten(6, 7).flatten(4, 5).flatten(2, 3)
        audio_out = None
        if audio is not None:
            a = self.audio_decoder(x[:, n_video:])
            audio_out = self.audio_proj_out(self.audio_norm_out(a)).transpose(1, 2)
        if not mouth:
            return video_out, audio_out
        shapes = None
        if video is not None and self.mouth_head is not None:
            shapes = self.mouth_head(x[:, :n_video].unflatten(1, (grid[0], grid[1] * grid[2])).mean(dim=2).float())
        return video_out, audio_out, shapes
