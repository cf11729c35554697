"""The LLM orchestrator (paper §3.2) and the progress-aware pointer (§4.2, eq. 5).

A causal Qwen2 language model from transformers runs on input embeddings
`[e_ref, E_txt, e_hist, E_cond(t)]`: the reference voice's audio latents, the transcript's
token embeddings, the history audio latents (at most `stream.history_seconds`), then the current chunk's noisy
audio latents with the timestep. Its final hidden states at the E_cond positions, projected to
the DiT's width, are the frame-aligned audio condition c_a. No discrete audio tokens: audio
latents enter through a linear projection plus a learned segment embedding.

The pointer reads the transcript's hidden states (the E_txt positions of the same pass) and c_a:
cross-attention gives each audio frame j a soft transcript position p_j (the attention-weighted
word number), refined by an offset delta_j and pooled with confidence weights w_j:
s = sum_j w_j (p_j + delta_j), clamped to [0, N]: the number of the last word spoken by the
end of the chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from streamchar.config.schema import OrchestratorConfig
from streamchar.errors import StreamcharError
from streamchar.model.durations import DurationHead, starts_from

if TYPE_CHECKING:
    from transformers import DynamicCache

SEGMENTS = {"reference": 0, "history": 1, "condition": 2}
REFERENCE_VOICE_LATENTS = 72  # 3 s of the reference voice at 24 latents/s, in training and streaming alike
TEXT_BOOST = 4.0  # log-weight that the text bias adds at distance 0: e^4 ~ 55 audio latents


def fit_reference_voice(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, n) -> (B, C, 72): the first 3 s, zero-padded when shorter."""
    n = latents.shape[-1]
    if n >= REFERENCE_VOICE_LATENTS:
        return latents[..., :REFERENCE_VOICE_LATENTS]
    return F.pad(latents, (0, REFERENCE_VOICE_LATENTS - n))


def qwen2_config(cfg: OrchestratorConfig):  # noqa: ANN201 - transformers type
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.ffn_dim, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_kv_heads, max_position_embeddings=32768,
        rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
    )  # fmt: skip


@dataclass(frozen=True)
class OrchestratorInput:
    reference_audio: torch.Tensor  # (B, C, Nr) latents of the reference voice
    text_ids: torch.Tensor  # (B, Lt) right-padded
    text_mask: torch.Tensor  # (B, Lt) 1 for tokens
    word_numbers: torch.Tensor  # (B, Lt) the word each token belongs to
    word_counts: torch.Tensor  # (B,) N, words in the (possibly cut) transcript
    history_audio: torch.Tensor  # (B, C, Nh), Nh may be 0
    noisy_audio: torch.Tensor  # (B, C, N) the chunk being denoised
    timestep: torch.Tensor  # (B,) in [0, 1000]
    history_mask: torch.Tensor | None = None  # (B, Nh) 1 for real history latents (left-padded batches)
    text_positions: torch.Tensor | None = None  # (B, Nh + N) where in text_ids each audio latent is spoken (model.alignment)


@dataclass(frozen=True)
class OrchestratorOutput:
    condition: torch.Tensor  # c_a (B, N, D_dit)
    progress: torch.Tensor  # (B,) the pointer's estimate of the last word spoken by the chunk's end, in [0, N]
    progress_raw: torch.Tensor  # (B,) the same before clamping: the loss uses it, so an overshoot still has a gradient
    phoneme_logits: torch.Tensor | None = None  # (B, Nh + N, classes) at history and chunk latents, when the preset has the head


def _fp32(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, linear.weight.float(), None if linear.bias is None else linear.bias.float())


class ProgressPointer(nn.Module):
    def __init__(self, hidden: int, cond_dim: int, dim: int = 128):
        super().__init__()
        self.query = nn.Linear(cond_dim, dim)
        self.key = nn.Linear(hidden, dim)
        self.offset = nn.Linear(cond_dim, 1)
        self.confidence = nn.Linear(cond_dim, 1)
        self.dim = dim

    def forward(self, condition: torch.Tensor, text_hidden: torch.Tensor, word_numbers: torch.Tensor, text_mask: torch.Tensor,
                word_counts: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """In fp32 even under autocast, and with weights FSDP gathered in bf16: the stream cuts
        its transcript at floor(s)."""
        with torch.autocast(condition.device.type, enabled=False):
            condition, text_hidden = condition.float(), text_hidden.float()
            scores = _fp32(self.query, condition) @ _fp32(self.key, text_hidden).transpose(1, 2) / math.sqrt(self.dim)  # (B, N, Lt)
            scores = scores.masked_fill(~text_mask.bool()[:, None], float("-inf"))
            p = scores.softmax(dim=-1) @ word_numbers[..., None].float()  # (B, N, 1)
            delta = _fp32(self.offset, condition)
            w = _fp32(self.confidence, condition).softmax(dim=1)
            s = (w * (p + delta)).sum(dim=(1, 2))
            return self.clamp(s, word_counts) if clamp else s

    @staticmethod
    def clamp(s: torch.Tensor, word_counts: torch.Tensor) -> torch.Tensor:
        """Into [0, N]: no fewer than none and no more than all of the transcript's words."""
        return torch.minimum(s.clamp(min=0), word_counts.to(s.device).float())


class Orchestrator(nn.Module):
    def __init__(self, cfg: OrchestratorConfig, audio_channels: int, cond_dim: int):
        super().__init__()
        from transformers import Qwen2Model

        self.cfg = cfg
        h = cfg.hidden_size
        self.backbone = Qwen2Model(qwen2_config(cfg))
        self.audio_in = nn.Linear(audio_channels, h)
        self.segment = nn.Embedding(len(SEGMENTS), h)
        self.time_proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(256, h)
        self.condition_out = nn.Linear(h, cond_dim)
        self.pointer = ProgressPointer(h, cond_dim)
        self.phoneme_head = nn.Linear(h, cfg.phoneme_classes) if cfg.phoneme_classes else None
        self.durations = None
        if cfg.durations is not None:
            with torch.random.fork_rng(devices=[]):  # drawn aside: every other weight starts as it would without the head
                self.durations = DurationHead(cfg.durations, h, audio_channels)
        self._match_embedding_scale()

    @torch.no_grad()
    def _match_embedding_scale(self) -> None:
        """Start the audio-side inputs at the token embeddings' scale. At default init the
        projected audio latents were far larger than the character embeddings, and the transcript was
        drowned in the residual stream after the first layer: the trained tiny teacher's audio
        loss did not change when its transcripts were shuffled."""
        w = self.backbone.embed_tokens.weight
        rms = self.backbone.config.initializer_range if w.is_meta else float(w.float().pow(2).mean().sqrt())
        nn.init.normal_(self.audio_in.weight, std=rms / math.sqrt(self.audio_in.in_features))
        nn.init.zeros_(self.audio_in.bias)
        nn.init.normal_(self.segment.weight, std=rms)
        out = self.time_embed.linear_2
        nn.init.normal_(out.weight, std=rms / math.sqrt(out.in_features))
        nn.init.zeros_(out.bias)

    def load_backbone(self, directory: str | Path, dtype: torch.dtype = torch.float32) -> None:
        """Qwen2 / Qwen2.5 weights from a local transformers directory (a causal-LM checkpoint:
        its `model.` weights; the LM head is not used), held in `dtype`."""
        from transformers import Qwen2Config, Qwen2Model

        try:
            have = Qwen2Config.from_pretrained(str(directory), local_files_only=True)
        except Exception as e:  # noqa: BLE001 - transformers raises several kinds for a missing or invalid config
            raise StreamcharError(f"no usable Qwen2 config at {directory}: {str(e).splitlines()[0]}") from None
        want = qwen2_config(self.cfg)
        fields = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size")
        problems = [f"{f} {getattr(have, f)} (preset needs {getattr(want, f)})" for f in fields if getattr(have, f) != getattr(want, f)]
        if problems:
            raise StreamcharError(f"the Qwen2 checkpoint in {directory} does not fit the preset: " + "; ".join(problems))
        try:
            self.backbone = Qwen2Model.from_pretrained(str(directory), local_files_only=True, dtype=dtype)
        except (OSError, ValueError) as e:
            raise StreamcharError(f"cannot load Qwen2 weights from {directory}: {str(e).splitlines()[0]}") from None
        self._match_embedding_scale()

    def _audio(self, latents: torch.Tensor, segment: str) -> torch.Tensor:
        return self.audio_in(latents.transpose(1, 2)) + self.segment.weight[SEGMENTS[segment]]

    def _positions(self, mask: torch.Tensor, n_ref: int, n_txt: int, hist_mask: torch.Tensor, n_cond: int,
                   text_positions: torch.Tensor | None = None) -> torch.Tensor:
        """RoPE positions. Sequential when the stream reads by the pointer (Qwen2's own); with the
        plan, each audio latent sits beside the transcript token spoken then (`text_positions`: from
        word timings in training, the stream's plan in streaming; without them the k-th latent after
        the transcript's start reads token k `text_rate`)."""
        plan = self.cfg.plan
        if plan is None:
            return (mask.cumsum(dim=1) - 1).clamp(min=0)
        b, device = mask.shape[0], mask.device
        if text_positions is not None:
            if text_positions.shape != (b, hist_mask.shape[1] + n_cond):
                raise StreamcharError(f"text_positions has shape {tuple(text_positions.shape)}; "
                                      f"the history and chunk need {(b, hist_mask.shape[1] + n_cond)}")
            audio = n_ref + text_positions.float()
        else:
            frames = torch.cat([hist_mask.cumsum(dim=1) - 1, hist_mask.sum(dim=1, keepdim=True) + torch.arange(n_cond, device=device)], dim=1)
            audio = n_ref + frames.clamp(min=0).float() * plan.text_rate
        head = torch.arange(n_ref + n_txt, device=device, dtype=torch.float32).expand(b, -1)
        return torch.cat([head, audio], dim=1)

    def _text_bias(self, mask: torch.Tensor, positions: torch.Tensor, n_ref: int, n_txt: int, dtype: torch.dtype) -> torch.Tensor:
        """Additive (B, 1, L, L) mask: causal and padding, plus -(d / w)^2 / 2 from each audio latent
        to each transcript token d positions away, so that reading the text at the right place is
        where training starts rather than something to discover."""
        b, n = mask.shape
        low = torch.finfo(dtype).min
        allowed = torch.ones(n, n, dtype=torch.bool, device=mask.device).tril()[None] & mask.bool()[:, None, :]
        bias = torch.zeros(b, n, n, device=mask.device)
        d = positions[:, n_ref + n_txt :, None] - positions[:, None, n_ref : n_ref + n_txt]
        bias[:, n_ref + n_txt :, n_ref : n_ref + n_txt] = TEXT_BOOST - 0.5 * (d / self.cfg.plan.text_window) ** 2
        return bias.masked_fill(~allowed, low).clamp(min=low).to(dtype)[:, None]

    def _layout(self, x: OrchestratorInput) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
        """The pass's prefix embeddings [e_ref, E_txt, e_hist], then positions, attention mask and
        the reference and transcript lengths, laid out for the prefix and the chunk together."""
        b, n_cond = x.noisy_audio.shape[0], x.noisy_audio.shape[2]
        ref = self._audio(x.reference_audio, "reference")
        txt = self.backbone.embed_tokens(x.text_ids)
        hist = self._audio(x.history_audio, "history")
        prefix = torch.cat([ref, txt, hist], dim=1)
        ones = lambda n: torch.ones(b, n, dtype=torch.long, device=prefix.device)  # noqa: E731
        hist_mask = x.history_mask.long() if x.history_mask is not None else ones(hist.shape[1])
        mask = torch.cat([ones(ref.shape[1]), x.text_mask.long(), hist_mask, ones(n_cond)], dim=1)
        n_ref, n_txt = ref.shape[1], txt.shape[1]
        positions = self._positions(mask, n_ref, n_txt, hist_mask, n_cond, x.text_positions)
        biased = self.cfg.plan is not None and self.cfg.plan.text_window > 0
        attention = self._text_bias(mask, positions, n_ref, n_txt, prefix.dtype) if biased else mask
        return prefix, positions, attention, n_ref, n_txt

    def _condition_tokens(self, x: OrchestratorInput) -> torch.Tensor:
        tokens = self._audio(x.noisy_audio, "condition")
        return tokens + self.time_embed(self.time_proj(x.timestep).to(tokens.dtype))[:, None]

    def _outputs(self, x: OrchestratorInput, hidden: torch.Tensor, n_ref: int, n_txt: int) -> OrchestratorOutput:
        condition = self.condition_out(hidden[:, -x.noisy_audio.shape[2] :])
        text_hidden = hidden[:, n_ref : n_ref + n_txt]
        raw = self.pointer(condition, text_hidden, x.word_numbers, x.text_mask, x.word_counts, clamp=False)
        progress = self.pointer.clamp(raw, x.word_counts)
        phonemes = self.phoneme_head(hidden[:, n_ref + n_txt :]) if self.phoneme_head is not None else None
        return OrchestratorOutput(condition, progress, raw, phonemes)

    def forward(self, x: OrchestratorInput, prefix: OrchestratorPrefix | None = None) -> OrchestratorOutput:
        """With `prefix` (from `encode_prefix` on an input with the same reference voice, transcript
        window and history) only the chunk's noisy audio is run, against the prefix's cached keys
        and values: the pass is causal and the timestep enters the chunk's tokens alone, so the
        result is the full pass's, at a fraction of its cost for the sampler's later steps."""
        if prefix is None:
            embeds, positions, attention, n_ref, n_txt = self._layout(x)
            embeds = torch.cat([embeds, self._condition_tokens(x)], dim=1)
            hidden = self.backbone(inputs_embeds=embeds, attention_mask=attention, position_ids=positions).last_hidden_state
            return self._outputs(x, hidden, n_ref, n_txt)
        if x.noisy_audio.shape[2] != prefix.positions.shape[1]:
            raise StreamcharError(f"the prefix was laid out for {prefix.positions.shape[1]} chunk latents, got {x.noisy_audio.shape[2]}")
        n = prefix.hidden.shape[1]
        try:
            out = self.backbone(inputs_embeds=self._condition_tokens(x), attention_mask=prefix.attention, position_ids=prefix.positions,
                                past_key_values=prefix.cache, use_cache=True).last_hidden_state  # fmt: skip
        finally:
            prefix.cache.crop(n - prefix.cache.get_seq_length())  # drop the chunk's entries: the prefix alone for the next step
        return self._outputs(x, torch.cat([prefix.hidden, out], dim=1), prefix.n_ref, prefix.n_txt)

    def text_states(self, reference_audio: torch.Tensor, text_ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """(B, Lt, H) the transcript's hidden states from a pass over [e_ref, E_txt] alone. The
        pass is causal and the transcript comes before any audio latent, so these are the states a
        chunk's full pass has at the same tokens."""
        ref = self._audio(reference_audio, "reference")
        embeds = torch.cat([ref, self.backbone.embed_tokens(text_ids)], dim=1)
        mask = torch.cat([torch.ones(ref.shape[:2], dtype=torch.long, device=ref.device), text_mask.long()], dim=1)
        positions = torch.arange(mask.shape[1], device=ref.device).expand(mask.shape[0], -1)
        hidden = self.backbone(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).last_hidden_state
        return hidden[:, ref.shape[1] :]

    @torch.no_grad()
    def word_times(self, ids: list[int], word_numbers: list[int], words: int, reference_audio: torch.Tensor) -> list[tuple[float, float]]:
        """Each word's (start, end) in seconds from the text's start, as the duration head plans
        them for the voice `reference_audio` (1, C, n) speaking the tokens `ids`."""
        if self.durations is None:
            raise StreamcharError("this model has no word-duration head (orchestrator.durations); train one with `streamchar train "
                                  "durations`, or read by another plan (orchestrator.plan.word_pace.durations: letters)")
        device = reference_audio.device
        voice = fit_reference_voice(reference_audio.float())
        ids_t = torch.tensor([ids], dtype=torch.long, device=device)
        mask = torch.ones_like(ids_t)
        hidden = self.text_states(voice, ids_t, mask)
        durations, pauses, lead, _ = self.durations(hidden, torch.tensor([word_numbers], device=device), mask, words, voice)
        starts = starts_from(durations, pauses, lead)[0]
        return [(float(a), float(a + d)) for a, d in zip(starts.cpu(), durations[0].cpu())]

    def encode_prefix(self, x: OrchestratorInput) -> OrchestratorPrefix:
        """One pass over [e_ref, E_txt, e_hist] for all of a chunk's sampler steps (inference)."""
        from transformers import DynamicCache

        embeds, positions, attention, n_ref, n_txt = self._layout(x)
        n = embeds.shape[1]
        bias = attention.dim() == 4  # additive (B, 1, L, L) rows by columns, or a (B, L) padding mask
        own, rows = (attention[:, :, :n, :n], attention[:, :, n:]) if bias else (attention[:, :n], attention)
        cache = DynamicCache(config=self.backbone.config)
        hidden = self.backbone(inputs_embeds=embeds, attention_mask=own, position_ids=positions[:, :n],
                               past_key_values=cache, use_cache=True).last_hidden_state  # fmt: skip
        return OrchestratorPrefix(cache, hidden, positions[:, n:], rows, n_ref, n_txt)


@dataclass
class OrchestratorPrefix:
    """The orchestrator's pass over a chunk's prefix, and what each sampler step needs to run the
    chunk's tokens after it."""

    cache: DynamicCache  # the prefix's keys and values
    hidden: torch.Tensor  # (B, n, H) the prefix's final hidden states
    positions: torch.Tensor  # (B, N) RoPE positions of the chunk's latents
    attention: torch.Tensor  # the chunk's rows of the full pass's mask: (B, 1, N, n + N) additive, or (B, n + N) padding
    n_ref: int
    n_txt: int


def pointer_loss(progress: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 against the number of the last word spoken by the end of the chunk."""
    return F.smooth_l1_loss(progress, target.to(progress.dtype))
