"""Chunk-by-chunk generation (paper §4.1, §5.1): the session loop.

Per chunk the session asks its transcript reader (`reading.py`) where the history window cuts
the words already spoken and where each latent is in the text, builds the orchestrator's window
(at most `lookahead_words` words after the cut, so that a long script does not grow its
sequence) and the history (the audio latents this stream generated, whole chunks), and runs the
sampler (`sampler.py`) with the reference frame, the sink (the stream's first chunk) and the
motion latents (the previous chunk's, reused directly, never re-encoded) as condition tokens.
The reader then records the words spoken and says when the stream ends.

The encoders run only for the reference image and voice, before the first chunk
(`encoding.py`). Decoding and writing happen elsewhere (`runner.py`), overlapped with the next
chunk's generation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from streamchar.codecs.base import AudioCodec, VideoCodec
from streamchar.errors import StreamcharError
from streamchar.model.context import DenoiseContext
from streamchar.model.dit import ConditionInput
from streamchar.model.prompt import PromptEncoder
from streamchar.model.streamchar_model import StreamCharModel
from streamchar.model.tokenizer import Tokenizer, build_tokenizer, prompt_ids, with_prompt
from streamchar.streaming.encoding import EncodedConditions, encode_conditions
from streamchar.streaming.inputs import StreamRequest
from streamchar.streaming.reading import TranscriptReader, make_reader
from streamchar.streaming.sampler import SamplerSettings, sample_chunk

SECONDS_PER_WORD_LIMIT = 1.0  # a stream may take at most this long per word before it is stopped


@dataclass
class ChunkLatents:
    index: int
    video: torch.Tensor  # (1, z, 9, h, w)
    audio: torch.Tensor  # (1, z_a, 33)
    words_spoken: float  # transcript words spoken by the end of this chunk, as the stream's reader counts them
    words_total: int
    closing: bool  # the stream's last chunk
    timings: dict[str, float] = field(default_factory=dict)
    play_seconds: float | None = None  # a last chunk that plays only this far (the word plan's tail); None: all of it
    pointer_words: float = 0.0  # the pointer's reading of the words spoken by the chunk's end (cut + pointer), read or not


@dataclass
class SessionSettings:
    steps: int = 4
    sink: bool = True
    seed: int = 0
    shift: float = 1.0
    max_chunks: int | None = None
    stop_at_end: bool = True  # False: run max_chunks whatever the reader says (benchmarks with random weights)
    guidance: float = 1.0  # classifier-free guidance on prompt and reference frame; 1: off (one DiT pass per step)
    text_guidance: float = 1.0  # guidance on the orchestrator's condition, for a model trained with train.condition_dropout; 1: off


@dataclass
class ChunkContext(DenoiseContext):
    """What a chunk was generated from besides its noise, and where its window starts. Training
    (Stage II) scores a span of chunks from its first one's."""

    cut: float = 0.0  # words cut away before the window
    first_latent: int = 0  # the history's first audio latent, counted from the stream's start


class StreamSession:
    """One stream's state between chunks: its reader, history, sink and motion latents."""

    def __init__(self, model: StreamCharModel, prompt_encoder: PromptEncoder, video_codec: VideoCodec, audio_codec: AudioCodec,
                 request: StreamRequest, settings: SessionSettings, tokenizer: Tokenizer | None = None, listening: bool = False):
        """`listening`: the transcript may be empty (a live session that waits for its first words)."""
        _check(settings)
        self.video_codec, self.audio_codec = video_codec, audio_codec
        t0 = time.perf_counter()
        conditions = encode_conditions(prompt_encoder, video_codec, audio_codec, model.cfg, request, settings.guidance)
        self._begin(model, settings, tokenizer, request.transcript, conditions, listening, request.prompt)
        self.setup_seconds = time.perf_counter() - t0

    @classmethod
    def from_latents(cls, model: StreamCharModel, settings: SessionSettings, transcript: str, prompt: torch.Tensor, reference: torch.Tensor,
                     reference_audio: torch.Tensor, empty_prompt: torch.Tensor | None = None,
                     tokenizer: Tokenizer | None = None, prompt_text: str = "") -> StreamSession:
        """A session on already encoded conditions (training rollouts read them from the latent
        cache): prompt (1, L, d), reference (1, z, 1, h, w), reference voice latents (1, z_a, n);
        `prompt_text` the prompt the orchestrator reads where the preset has it read one."""
        _check(settings)
        if settings.guidance != 1.0 and empty_prompt is None:
            raise StreamcharError("guidance needs the empty prompt's embedding")
        self = cls.__new__(cls)
        self.video_codec = self.audio_codec = None
        conditions = EncodedConditions(prompt, empty_prompt, reference, reference_audio)
        self._begin(model, settings, tokenizer, transcript, conditions, False, prompt_text)
        self.setup_seconds = 0.0
        return self

    def _begin(self, model: StreamCharModel, settings: SessionSettings, tokenizer: Tokenizer | None, transcript: str,
               conditions: EncodedConditions, listening: bool, prompt_text: str) -> None:
        self.model, self.cfg, self.settings = model, model.cfg, settings
        self.conditions = conditions
        self.tokenizer = tokenizer or model.tokenizer or build_tokenizer(self.cfg)
        self.prompt_ids = prompt_ids(self.tokenizer, prompt_text, self.cfg.orchestrator.prompt_tokens)
        self.reader: TranscriptReader = make_reader(self.cfg, self.tokenizer, self._word_timer())
        if transcript.strip() or not listening:
            self.reader.append(transcript)  # (an empty transcript is refused here)
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.history: list[torch.Tensor] = []  # audio latents of the chunks in the window
        self.sink: torch.Tensor | None = None
        self.motion: torch.Tensor | None = None
        self.last_context: ChunkContext | None = None

    def _word_timer(self):  # noqa: ANN202 - a WordTimer, or None
        """The learned plan's timer: the model's duration head with this session's reference voice."""
        plan = self.cfg.orchestrator.plan
        if plan is None or plan.word_pace is None or plan.word_pace.durations != "learned":
            return None
        model, voice, tokenizer = self.model, self.conditions.reference_audio, self.tokenizer

        def timer(text: str) -> list[tuple[float, float]]:
            tokens = tokenizer.encode(text)
            return model.word_times(tokens.ids, tokens.word_numbers, tokens.words, voice)

        return timer

    # what the session reads ---------------------------------------------------------------
    @property
    def transcript(self) -> str:
        return self.reader.transcript

    @property
    def words_total(self) -> int:
        return self.reader.words_total

    @property
    def progress(self) -> list[float]:
        """Words spoken by the end of each chunk made."""
        return self.reader.spoken

    @property
    def encoder_calls(self) -> int:
        return self.conditions.encoder_calls

    @property
    def decode_reference(self) -> object | None:
        return self.conditions.decode_reference

    @property
    def reference(self) -> torch.Tensor:
        return self.conditions.reference

    def append_text(self, text: str) -> None:
        """Extend the transcript while the stream runs; the next chunk reads the new words."""
        self.reader.append(text)

    def interrupt(self) -> int:
        """Drop the words not yet begun when the next chunk starts; the word being spoken then is
        finished. The stream goes on (silent, listening) and takes new text as before. Returns
        the number of words kept."""
        return self.reader.interrupt()

    def word_times(self, first: int = 0) -> list[tuple[float, float]]:
        """The planned (start, end) of words `first`.. (s from the stream's start), as far as
        they are planned; empty for readers without timings."""
        return self.reader.word_times(first)

    def text_positions(self, cut: float, first_latent: int, count: int, end: int | None = None) -> torch.Tensor | None:
        """(1, count): the reader's transcript positions of `count` latents from `first_latent`
        on, in the window cut at `cut` words (and at `end`); None where positions run on in sequence."""
        positions = self.reader.positions(int(cut), first_latent, count, end)
        if positions is None:
            return None
        return torch.from_numpy(positions + len(self.prompt_ids)).float()[None].to(self.reference.device)

    def text_window(self, cut: float, end: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(1, L) token ids, (1, L) word numbers and (1,) word count of the orchestrator's text:
        the prompt's tokens where the preset reads them, then the window after `cut` words, ending
        at word `end` where given (Stage II's cut at the pointer)."""
        device = self.reference.device
        ids, numbers, n = self.reader.tokens.window(int(cut), self.cfg.orchestrator.lookahead_words, end)
        ids, numbers = with_prompt(self.prompt_ids, ids, numbers)
        return (torch.tensor([ids], dtype=torch.long, device=device), torch.tensor([numbers], dtype=torch.float32, device=device),
                torch.tensor([float(n)], device=device))  # fmt: skip

    # one chunk ---------------------------------------------------------------------------
    def _context(self) -> ChunkContext:
        """The transcript window after the reader's cut, the history and the condition tokens."""
        device = self.reference.device
        cut = self.reader.cut()
        ids, numbers, n = self.text_window(cut)
        history = torch.cat(self.history, dim=2) if self.history else torch.zeros(1, self.cfg.audio.latent_channels, 0, device=device)
        first_latent = self.reader.window_start() * self.cfg.stream.chunk_audio_latents
        positions = self.text_positions(cut, first_latent, history.shape[2] + self.cfg.stream.chunk_audio_latents)
        conditions = ConditionInput(self.reference, *self.condition_latents)
        c = self.conditions
        return ChunkContext(c.reference_audio, ids, torch.ones_like(ids), numbers, n, history, None, c.prompt, conditions, positions,
                            float(cut), first_latent)

    def next_chunk(self, index: int, exit_step: int | None = None) -> ChunkLatents:
        """One chunk through the N-step sampler. With `exit_step` k (training, Stage II) the chunk
        is the clean estimate after k steps, with a graph through step k alone (the earlier steps
        and the stream's state stay detached); the full sampler's last step is the same estimate."""
        s = self.settings
        if exit_step is not None and not 1 <= exit_step <= s.steps:
            raise StreamcharError(f"exit step {exit_step} is outside 1..{s.steps}")
        t0 = time.perf_counter()
        video, audio = self.begin_chunk()
        prepare = time.perf_counter() - t0
        grad = exit_step is not None and torch.is_grad_enabled()
        out = sample_chunk(self.model, self.last_context, self.conditions.empty_prompt, video, audio, self.sampler_settings, exit_step, grad)
        t1 = time.perf_counter()
        chunk = self.end_chunk(index, out.video, out.audio, out.pointer, out.timings)
        chunk.timings["prepare_s"] = prepare + time.perf_counter() - t1  # the paper's per-chunk "preprocessing"
        return chunk

    @property
    def condition_latents(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The next chunk's sink (with `settings.sink`) and motion latents; None before the first chunk."""
        return self.sink if self.settings.sink else None, self.motion

    @property
    def sampler_settings(self) -> SamplerSettings:
        return SamplerSettings(self.settings.steps, self.settings.shift, self.settings.guidance, self.settings.text_guidance)

    def begin_chunk(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next chunk's noise (from the session's own generator) and its context
        (`last_context`): what the sampler runs on, alone or batched with other sessions."""
        cfg = self.cfg
        h, w = cfg.video.height // cfg.stream.vae_spatial_stride, cfg.video.width // cfg.stream.vae_spatial_stride
        device = self.reference.device
        video = torch.randn(1, cfg.video.latent_channels, cfg.stream.chunk_latent_frames, h, w, generator=self.generator).to(device)
        audio = torch.randn(1, cfg.audio.latent_channels, cfg.stream.chunk_audio_latents, generator=self.generator).to(device)
        self.reader.prepare()
        self.last_context = self._context()
        return video, audio

    def end_chunk(self, index: int, video: torch.Tensor, audio: torch.Tensor, pointer: torch.Tensor,
                  timings: dict[str, float]) -> ChunkLatents:
        """Take the sampled chunk: the reader counts its words; it joins the history, and becomes
        the motion latents (and, the first time, the sink)."""
        reading = float(pointer.detach())
        words_spoken = self.reader.finish_chunk(int(self.last_context.cut), reading if self.reader.reads_pointer else 0.0)
        self.history.append(audio.detach())
        if len(self.history) > self.cfg.stream.history_chunks:
            self.history.pop(0)
        if self.sink is None:
            self.sink = video.detach()
        self.motion = video.detach()
        return ChunkLatents(index, video, audio, words_spoken, self.words_total, False, timings, pointer_words=self.last_context.cut + reading)

    def chunks(self) -> Iterator[ChunkLatents]:
        """Until the reader says the last word is spoken, then one closing chunk; with the word
        plan, until its end (`tail_seconds` after the last word), the last chunk cut there.
        A stream that has not finished after `max_chunks` (default: one second per word, at
        least 4 chunks) stops there, with its last chunk marked closing."""
        k = 0
        period = self.cfg.stream.chunk_seconds
        while True:
            limit = self.settings.max_chunks or max(4, math.ceil(self.words_total * SECONDS_PER_WORD_LIMIT / period))
            with torch.no_grad():
                chunk = self.next_chunk(k)
            k += 1
            end = self.reader.end_seconds()
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


def _check(settings: SessionSettings) -> None:
    if settings.steps <= 0:
        raise StreamcharError(f"the number of denoising steps per chunk must be positive, got {settings.steps}")
    if settings.guidance < 0:
        raise StreamcharError(f"the guidance scale must be 0 or more (1 turns it off), got {settings.guidance}")
    if settings.text_guidance < 0:
        raise StreamcharError(f"the text guidance scale must be 0 or more (1 turns it off), got {settings.text_guidance}")
