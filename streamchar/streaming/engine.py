"""Chunk-by-chunk generation (paper §4.1, §5.1; design.md §1).

Per chunk:
- the orchestrator reads the reference voice's latents, the transcript, at most 15 s of history
  audio (the latents this stream generated, whole chunks) and the noisy chunk audio. The part
  of the transcript spoken before the history window is cut away, at the word the pointer gave
  for the end of the chunk just before the window, and only `lookahead_words` words after that
  cut are read, so that a long script does not grow the orchestrator's sequence;
- the DiT denoises with the reference frame, the sink (the stream's first chunk) and the motion
  latents (the previous chunk's latents, reused directly, never re-encoded) as condition tokens
  whose keys/values are computed once per chunk; N Euler steps;
- the stream ends when the pointer says the last word is spoken, with one closing chunk after.
  Presets with `text_rate` (tiny) read the transcript by a plan instead (each word timed by espeak-ng's
  phonemes or its letters with `word_pace`, else one even pace): the plan places each latent
  in the text, cuts the history's finished words and ends the stream (`model.alignment`) where
  elsewhere the pointer does.

The encoders run only for the reference image and voice, before the first chunk. Decoding and
writing happen elsewhere (`runner.py`), overlapped with the next chunk's generation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from streamchar.codecs.base import AudioCodec, VideoCodec
from streamchar.diffusion.flow import TIMESTEP_SCALE, guided, sample_times
from streamchar.errors import StreamcharError
from streamchar.model.alignment import paced_word_times, planned_positions, spoken_positions, transcript_word_spans, window_positions, word_spans, words_done
from streamchar.model.dit import ConditionInput, VideoInput, AudioInput
from streamchar.model.orchestrator import OrchestratorInput, fit_reference_voice
from streamchar.model.prompt import PromptEncoder
from streamchar.model.streamchar_model import StreamCharModel
from streamchar.model.tokenizer import CharacterTokenizer, Tokens, make_tokenizer
from streamchar.streaming.inputs import StreamRequest, check_transcript

SECONDS_PER_WORD_LIMIT = 1.0  # a stream may take at most this long per word before it is stopped
PLAN_AHEAD_SECONDS = 10.0  # the word pace's plan reaches at least this far past the chunk being made
PLAN_PIECE_WORDS = 64  # words timed at once (about 20 s of speech; espeak-ng takes about 40 ms for them)
PLAN_CONTEXT_WORDS = 8  # words timed with a piece before and after it (and dropped), so that it is timed as spoken among them


@dataclass
class ChunkLatents:
    index: int
    video: torch.Tensor  # (1, z, 9, h, w)
    audio: torch.Tensor  # (1, z_a, 33)
    words_spoken: float  # the pointer: transcript words spoken by the end of this chunk
    words_total: int
    closing: bool  # the stream's last chunk
    timings: dict[str, float] = field(default_factory=dict)
    play_seconds: float | None = None  # a last chunk that plays only this far (the word pace's tail); None: all of it


@dataclass
class SessionSettings:
    steps: int = 4
    sink: bool = True
    seed: int = 0
    shift: float = 1.0
    max_chunks: int | None = None
    stop_at_end: bool = True  # False: run max_chunks whatever the pointer says (benchmarks with random weights)
    guidance: float = 1.0  # classifier-free guidance on prompt and reference frame; 1: off (one DiT pass per step)


@dataclass
class ChunkContext:
    """What a chunk was generated from besides its noise: the transcript window, the history and
    the condition latents. Training (Stage II) scores a span of chunks from its first one's."""

    text_ids: torch.Tensor
    word_numbers: torch.Tensor
    history: torch.Tensor
    words: torch.Tensor
    cut: float
    conditions: ConditionInput
    first_latent: int  # the history's first audio latent, counted from the stream's start


class StreamSession:
    def __init__(self, model: StreamCharModel, prompt_encoder: PromptEncoder, video_codec: VideoCodec, audio_codec: AudioCodec,
                 request: StreamRequest, settings: SessionSettings, tokenizer: CharacterTokenizer | None = None, listening: bool = False):
        """`listening`: the transcript may be empty (a live session that waits for its first words)."""
        self.video_codec, self.audio_codec = video_codec, audio_codec
        self._listening = listening
        self.encoder_calls = 0
        self._check(settings)
        self.model, self.cfg, self.settings = model, model.cfg, settings
        t0 = time.perf_counter()
        with torch.no_grad():
            prompt = prompt_encoder([request.prompt])
            empty = prompt_encoder([""]) if settings.guidance != 1.0 else None
            reference = self._encode_reference(request.reference_image)
            reference_audio = self._encode_voice(request.reference_voice)
        self._begin(model, settings, tokenizer, request.transcript, prompt, empty, reference, reference_audio)
        self.setup_seconds = time.perf_counter() - t0

    @classmethod
    def from_latents(cls, model: StreamCharModel, settings: SessionSettings, transcript: str, prompt: torch.Tensor, reference: torch.Tensor,
                     reference_audio: torch.Tensor, empty_prompt: torch.Tensor | None = None, tokenizer: CharacterTokenizer | None = None) -> StreamSession:
        """A session on already encoded conditions (training rollouts read them from the latent
        cache): prompt (1, L, d), reference (1, z, 1, h, w), reference voice latents (1, z_a, n)."""
        self = cls.__new__(cls)
        self._listening = False
        self.video_codec = self.audio_codec = None
        self.decode_reference = None
        self.encoder_calls = 0
        cls._check(settings)
        if settings.guidance != 1.0 and empty_prompt is None:
            raise StreamcharError("guidance needs the empty prompt's embedding")
        self._begin(model, settings, tokenizer, transcript, prompt, empty_prompt, reference, reference_audio)
        self.setup_seconds = 0.0
        return self

    @staticmethod
    def _check(settings: SessionSettings) -> None:
        if settings.steps <= 0:
            raise StreamcharError(f"--steps must be positive, got {settings.steps}")
        if settings.guidance < 0:
            raise StreamcharError(f"--guidance must be 0 or more (1 turns it off), got {settings.guidance}")

    def _begin(self, model: StreamCharModel, settings: SessionSettings, tokenizer: CharacterTokenizer | None, transcript: str,
               prompt: torch.Tensor, empty_prompt: torch.Tensor | None, reference: torch.Tensor, reference_audio: torch.Tensor) -> None:
        self.model, self.cfg, self.settings = model, model.cfg, settings
        oc = self.cfg.orchestrator
        self.tokenizer = tokenizer or make_tokenizer(oc.tokenizer, oc.vocab_size)
        self.transcript = ""
        self._tokens: Tokens | None = None
        self._word_times: list[tuple[float, float]] = []  # the word pace's plan (s from the stream's start)
        self.progress: list[float] = []  # pointer, absolute words spoken by the end of each chunk
        if transcript.strip() or not self._listening:
            self.append_text(transcript)  # (an empty transcript is refused here)
        else:
            self._tokens = self.tokenizer.encode("")
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.prompt, self.empty_prompt = prompt, empty_prompt
        self.reference, self.reference_audio = reference, reference_audio
        self.chunks_per_history = self.cfg.stream.history_chunks
        self.history: list[torch.Tensor] = []  # audio latents of the chunks in the window
        self.sink: torch.Tensor | None = None
        self.motion: torch.Tensor | None = None
        self.last_context: ChunkContext | None = None

    # inputs ------------------------------------------------------------------------------
    def append_text(self, text: str) -> None:
        """Extend the transcript while the stream runs; the next chunk reads the new words."""
        text = check_transcript(text)
        joined = f"{self.transcript} {text}".strip()
        tokens = self.tokenizer.encode(joined)  # raises a clear error for characters it cannot encode
        old_transcript, old_tokens, planned = self.transcript, self._tokens, len(self._word_times)
        self._tokens, self.transcript = tokens, joined
        if self._paced:
            try:
                self._plan_ahead()
            except BaseException:  # a plan that failed (espeak-ng) leaves the stream as it was: the text is not taken
                self.transcript, self._tokens = old_transcript, old_tokens
                del self._word_times[planned:]
                raise

    def _plan_ahead(self) -> None:
        """Time the transcript's words up to `PLAN_AHEAD_SECONDS` past the next chunk's end, a
        piece at a time: a half-hour script timed at once would hold the first chunk back by
        seconds (espeak-ng takes about 0.5 s per 1,000 words)."""
        spans = transcript_word_spans(self.transcript)
        horizon = (len(self.progress) + 1) * self.cfg.stream.chunk_seconds + PLAN_AHEAD_SECONDS
        while len(self._word_times) < len(spans) and (not self._word_times or self._word_times[-1][1] < horizon):
            if not self._plan_piece(spans):
                break

    def _plan_piece(self, spans: list[tuple[int, int]]) -> bool:
        """Time the next words, through the first sentence end after `PLAN_PIECE_WORDS` of them
        (at most twice as many). Planned words keep their times. New ones are timed among the
        words around them, so that the pause after the last planned word counts, and follow it, or
        start when the next chunk does if the plan has run out of words by then. False when the
        piece held no word to time."""
        done, n = len(self._word_times), len(spans)
        upto = min(done + PLAN_PIECE_WORDS, n)
        while upto < min(done + 2 * PLAN_PIECE_WORDS, n) and not any(c in self.transcript[spans[upto - 1][1] : spans[upto][0]] for c in ".!?"):
            upto += 1
        context = min(done, PLAN_CONTEXT_WORDS)
        since = spans[done - context][0] if done else 0
        after = min(upto + PLAN_CONTEXT_WORDS, n)  # and the words after them, timed and left for the next piece
        until = spans[after][0] if after < n else len(self.transcript)
        part = paced_word_times(self.transcript[since:until], self.cfg.orchestrator.word_pace)
        new = part[context : context + upto - done]
        if not new:
            return False
        now = len(self.progress) * self.cfg.stream.chunk_seconds
        shift = max(0.0, now - new[0][0])  # a live stream's first words, given after it began, start when the next chunk does
        if done:
            shift = max(self._word_times[-1][1] - part[context - 1][1], now - new[0][0])
        self._word_times += [(a + shift, b + shift) for a, b in new]
        return True

    def interrupt(self) -> int:
        """Drop the words not yet begun when the next chunk starts; the word being spoken then is
        finished. The stream goes on (silent, listening) and takes new text as before. Returns
        the number of words kept."""
        spans = transcript_word_spans(self.transcript)
        next_start = len(self.progress) * self.cfg.stream.chunk_seconds
        if self._paced:
            keep = sum(1 for start, _ in self._word_times if start < next_start)
        elif self._planned:
            spoken = self._plan(len(self.progress) * self.cfg.stream.chunk_audio_latents, 1)[0]
            keep = min(len(spans), int(np.sum(word_spans(self._tokens)[0] <= spoken)))
        else:
            keep = math.ceil(self.progress[-1] - 1e-6) if self.progress else 0
        keep = min(keep, len(spans))
        if keep:  # the kept words end a sentence, as every transcript the model learned from did
            end = spans[keep][0] if keep < len(spans) else len(self.transcript)
            tail = self.transcript[spans[keep - 1][1] : end].rstrip()
            self.transcript = self.transcript[: spans[keep - 1][1]] + (tail if any(c in tail for c in ".!?") else ".")  # "canoe," -> "canoe."
        else:
            self.transcript = ""
        self._tokens = self.tokenizer.encode(self.transcript)
        del self._word_times[keep:]
        return keep

    def word_times(self, first: int = 0) -> list[tuple[float, float]]:
        """The planned (start, end) of words `first`.. (s from the stream's start), as far as
        they are planned; empty for presets that read the transcript by the pointer alone."""
        return list(self._word_times[first:])

    @property
    def words_total(self) -> int:
        return self._tokens.words if self._tokens else 0

    def _encode_reference(self, image: np.ndarray) -> torch.Tensor:
        """The reference image's latent for the model, and what the video decoder reads of it."""
        self.encoder_calls += 1
        x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1
        self.decode_reference = self.video_codec.prepare_reference(x[None])
        chunk = x[None, :, None].expand(1, 3, 4 * self.cfg.stream.chunk_latent_frames - 3, *x.shape[1:])
        return self.video_codec.encode_chunks(chunk.contiguous())[:, :, :1]  # the first latent codes one frame

    def _encode_voice(self, voice: np.ndarray) -> torch.Tensor:
        self.encoder_calls += 1
        hop = self.audio_codec.hop_length
        n = len(voice) // hop * hop
        return fit_reference_voice(self.audio_codec.encode(torch.from_numpy(voice[:n])[None], self.cfg.audio.sample_rate))

    # one chunk ---------------------------------------------------------------------------
    @property
    def _planned(self) -> bool:
        """Presets with `text_rate` read the transcript at a planned pace (model.alignment)."""
        return bool(self.cfg.orchestrator.text_rate)

    @property
    def _paced(self) -> bool:
        """A plan that times each word (`word_pace`; read only where `text_rate` switches the plan on)."""
        return self._planned and self.cfg.orchestrator.word_pace is not None

    def text_positions(self, cut: float, first_latent: int, count: int) -> torch.Tensor | None:
        """(1, count): the plan's transcript positions of `count` latents from `first_latent` on,
        in the window cut at `cut` words; None for presets without `text_rate`."""
        if not self._planned:
            return None
        assert self._tokens is not None
        plan = self._plan(first_latent, count)
        return torch.from_numpy(window_positions(self._tokens, int(cut), self.cfg.orchestrator.lookahead_words, plan)).float()[None].to(self.reference.device)

    def _plan(self, first_latent: int, count: int) -> np.ndarray:
        """Global transcript positions the plan gives `count` latents from `first_latent` on."""
        if not self._paced:
            return planned_positions(first_latent, count, self.cfg.orchestrator.text_rate)
        assert self._tokens is not None
        centres = (first_latent + np.arange(count) + 0.5) / self.cfg.stream.audio_latent_rate
        return spoken_positions(self._tokens, self._word_times, centres)

    def _window(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """History latents and the transcript with what was spoken before the window cut away:
        by the pointer's word for the chunk before the window, or by the plan at the window's start."""
        toks = self._tokens
        assert toks is not None
        if self._planned:
            cut = words_done(toks, float(self._plan(self._first_latent(), 1)[0]))
        else:
            first_in_window = len(self.progress) - len(self.history)
            cut = math.floor(self.progress[first_in_window - 1]) if first_in_window > 0 else 0
        ids_list, numbers_list, n = toks.window(cut, self.cfg.orchestrator.lookahead_words)
        device = self.reference.device
        ids = torch.tensor([ids_list], dtype=torch.long, device=device)
        numbers = torch.tensor([numbers_list], dtype=torch.float32, device=device)
        history = torch.cat(self.history, dim=2) if self.history else torch.zeros(1, self.cfg.audio.latent_channels, 0, device=device)
        return ids, numbers, history, torch.tensor([float(n)], device=device), float(cut)

    def planned_end(self) -> float | None:
        """With the word pace: when the stream ends (s from its start), `tail_seconds` after the
        planned last word (infinity while words are still to be planned); None otherwise."""
        if not self._paced or not self._word_times:
            return None
        if len(self._word_times) < self.words_total:
            return math.inf
        return self._word_times[-1][1] + self.cfg.orchestrator.word_pace.tail_seconds

    def _first_latent(self) -> int:
        return (len(self.progress) - len(self.history)) * self.cfg.stream.chunk_audio_latents

    def next_chunk(self, index: int, exit_step: int | None = None) -> ChunkLatents:
        """One chunk through the N-step sampler. With `exit_step` k (training, Stage II) the chunk
        is the clean estimate after k steps, with a graph through step k alone (the earlier steps
        and the stream's state stay detached); the full sampler's last step is the same estimate."""
        s, cfg = self.settings, self.cfg
        g = self.generator
        grad = exit_step is not None and torch.is_grad_enabled()
        steps = s.steps if exit_step is None else exit_step
        if not 1 <= steps <= s.steps:
            raise StreamcharError(f"exit step {exit_step} is outside 1..{s.steps}")
        h, w = cfg.video.height // cfg.stream.vae_spatial_stride, cfg.video.width // cfg.stream.vae_spatial_stride
        video = torch.randn(1, cfg.video.latent_channels, cfg.stream.chunk_latent_frames, h, w, generator=g).to(self.reference.device)
        audio = torch.randn(1, cfg.audio.latent_channels, cfg.stream.chunk_audio_latents, generator=g).to(self.reference.device)
        if self._paced:
            self._plan_ahead()
        ids, numbers, history, n_words, cut = self._window()
        first_latent = self._first_latent()
        positions = self.text_positions(cut, first_latent, history.shape[2] + audio.shape[2])
        conditions = ConditionInput(self.reference, self.sink if s.sink else None, self.motion)
        self.last_context = ChunkContext(ids, numbers, history, n_words, cut, conditions, first_latent)
        timings = {"orchestrator_s": 0.0, "dit_s": 0.0}
        t0 = time.perf_counter()
        with torch.set_grad_enabled(grad):
            cache = self.model.condition_cache(conditions, self.prompt)
            if self.empty_prompt is not None:  # the unconditional branch: empty prompt, no reference (as dropped in training)
                free_cache = self.model.condition_cache(conditions.without_reference(), self.empty_prompt)
        timings["dit_s"] += time.perf_counter() - t0
        ts = sample_times(s.steps, s.shift)
        progress, prefix = 0.0, None
        for k, (a, b) in enumerate(zip(ts[:steps], ts[1 : steps + 1])):
            last = k == steps - 1
            with torch.set_grad_enabled(grad and last):
                t0 = time.perf_counter()
                x = OrchestratorInput(self.reference_audio, ids, torch.ones_like(ids), numbers, n_words, history, audio,
                                      torch.tensor([a * TIMESTEP_SCALE], device=audio.device), None, positions)  # fmt: skip
                if not grad and prefix is None:  # inference: the prefix is run once for all steps
                    prefix = self.model.encode_prefix(x)
                orch = self.model.orchestrate(x, prefix=prefix)
                t1 = time.perf_counter()
                dv, da = self.model.dit_velocity(VideoInput(video), x.timestep, self.prompt, AudioInput(audio, orch.condition), cache)
                if self.empty_prompt is not None:
                    fv, fa = self.model.dit_velocity(VideoInput(video), x.timestep, self.empty_prompt, AudioInput(audio, orch.condition), free_cache)
                    dv, da = guided(dv, fv, s.guidance), guided(da, fa, s.guidance)
                if last:  # the clean estimate x - t v; after the full sampler (b = 0) it is the Euler step
                    video, audio = video - a * dv, audio - a * da
                else:
                    video, audio = video + (b - a) * dv, audio + (b - a) * da
                timings["orchestrator_s"] += t1 - t0
                timings["dit_s"] += time.perf_counter() - t1
                progress = float(orch.progress[0].detach())
        if self._planned:
            end = self._plan((len(self.progress) + 1) * cfg.stream.chunk_audio_latents, 1)[0]
            progress = words_done(self._tokens, float(end)) - cut
        words_spoken = min(float(self.words_total), cut + progress)
        if self.progress:
            words_spoken = max(words_spoken, self.progress[-1])  # speech does not go backwards
        self.progress.append(words_spoken)
        self.history.append(audio.detach())
        if len(self.history) > self.chunks_per_history:
            self.history.pop(0)
        if self.sink is None:
            self.sink = video.detach()
        self.motion = video.detach()
        return ChunkLatents(index, video, audio, words_spoken, self.words_total, False, timings)

    def chunks(self) -> Iterator[ChunkLatents]:
        """Until the pointer says the last word is spoken, then one closing chunk; with the word
        pace, until the plan's end (`tail_seconds` after the last word), the last chunk cut there.
        A stream that has not finished after `max_chunks` (default: one second per word, at
        least 4 chunks) stops there, with its last chunk marked closing."""
        k = 0
        period = self.cfg.stream.chunk_seconds
        while True:
            limit = self.settings.max_chunks or max(4, math.ceil(self.words_total * SECONDS_PER_WORD_LIMIT / period))
            with torch.no_grad():
                chunk = self.next_chunk(k)
            k += 1
            end = self.planned_end()
            if end is not None and self.settings.stop_at_end:
                reached = bool(end <= k * period + 1e-9)
                if reached:
                    chunk.play_seconds = float(max(1.0 / self.cfg.stream.fps, end - (k - 1) * period))
                chunk.closing = reached or k >= limit
                yield chunk
                if chunk.closing:
                    return
                continue
            done = chunk.words_spoken >= self.words_total - 0.5
            done = done and self.settings.stop_at_end
            if done or k >= limit:
                if done and k < limit:
                    yield chunk  # decoded and written while the closing chunk is generated
                    with torch.no_grad():
                        closing = self.next_chunk(k)
                    closing.closing = True
                    yield closing
                else:
                    chunk.closing = True
                    yield chunk
                return
            yield chunk
