"""Typed configuration shared by every part of streamchar.

The stream geometry (docs/architecture.md, "Stream geometry") is the contract between the codecs, the
model, the trainer and the streaming engine, so it is validated here once:
a config that would make those parts disagree never gets built.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

# The paper's chunk (§4.1, §5.1): 9 latent frames = 33 RGB frames = 1.375 s = 33 audio latents.
CHUNK_LATENT_FRAMES = 9
CHUNK_AUDIO_LATENTS = 33
FPS = 24
AUDIO_LATENT_RATE = 24
_FIXED_GEOMETRY = {
    "fps": (FPS, "the paper's frame rate"),
    "vae_temporal_stride": (4, "so that 9 latents decode to 33 frames"),
    "vae_spatial_stride": (16, "the Wan2.2 VAE's spatial stride"),
    "chunk_latent_frames": (CHUNK_LATENT_FRAMES, "a chunk is 9 latent video frames"),
    "audio_latent_rate": (AUDIO_LATENT_RATE, "audio latents run at 24 Hz"),
    "chunk_audio_latents": (CHUNK_AUDIO_LATENTS, "a chunk is 33 audio latents at 24 Hz"),
}


def frames_of_latent(j: int, temporal_stride: int) -> range:
    """The frames video latent j codes (of a chunk): the causal VAE's first latent is frame 0 alone,
    each later one the `temporal_stride` frames after the one before."""
    return range(0, 1) if j == 0 else range(temporal_stride * (j - 1) + 1, temporal_stride * j + 1)


class Strict(BaseModel):
    """Base for every config block: unknown fields are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class StreamGeometry(Strict):
    fps: int = Field(FPS, description="video frame rate (frames per second)")
    vae_temporal_stride: int = Field(4, description="video VAE time stride; the first latent is one frame (causal)")
    vae_spatial_stride: int = Field(16, description="video VAE space stride")
    chunk_latent_frames: int = Field(CHUNK_LATENT_FRAMES, description="video latents per chunk")
    audio_latent_rate: int = Field(AUDIO_LATENT_RATE, description="audio latents per second")
    chunk_audio_latents: int = Field(CHUNK_AUDIO_LATENTS, description="audio latents per chunk")
    history_seconds: float = Field(15.0, gt=0, le=15.0, description="orchestrator history window (s), kept as whole chunks")

    @field_validator("fps", "vae_temporal_stride", "vae_spatial_stride", "chunk_latent_frames", "audio_latent_rate", "chunk_audio_latents")
    @classmethod
    def _fixed(cls, v: int, info: ValidationInfo) -> int:
        want, why = _FIXED_GEOMETRY[info.field_name]
        if v != want:
            raise ValueError(f"must be {want} ({why}); got {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> StreamGeometry:
        # audio and video chunks must cover the same time span
        if self.chunk_frames * self.audio_latent_rate != self.chunk_audio_latents * self.fps:
            raise ValueError(
                f"chunk_audio_latents: {self.chunk_audio_latents} audio latents do not cover the "
                f"{self.chunk_frames} video frames of a chunk"
            )
        return self

    @property
    def chunk_frames(self) -> int:
        """RGB frames per chunk: the first latent is one frame, each later one `stride` frames."""
        return 1 + self.vae_temporal_stride * (self.chunk_latent_frames - 1)

    @property
    def chunk_seconds(self) -> float:
        return self.chunk_frames / self.fps

    @property
    def history_chunks(self) -> int:
        """Whole chunks of history the orchestrator reads (at most `history_seconds`)."""
        return max(1, int(self.history_seconds / self.chunk_seconds + 1e-9))


class VideoConfig(Strict):
    height: int = Field(gt=0, description="frame height in pixels (multiple of the VAE spatial stride)")
    width: int = Field(gt=0, description="frame width in pixels (multiple of the VAE spatial stride)")
    latent_channels: int = Field(gt=0, description="video VAE latent channels (z)")


class AudioConfig(Strict):
    sample_rate: int = Field(gt=0, description="waveform sample rate (Hz)")
    hop_length: int = Field(gt=0, description="audio VAE hop (samples per latent)")
    latent_channels: int = Field(gt=0, description="audio VAE latent channels")


class DiTConfig(Strict):
    num_layers: int = Field(gt=0, description="transformer blocks (Wan2.2-5B: 30)")
    num_heads: int = Field(gt=0, description="attention heads")
    head_dim: int = Field(gt=0, description="width of each head; hidden width is heads x head_dim")
    ffn_dim: int = Field(gt=0, description="feed-forward width (the audio experts copy the video FFN's)")
    patch_size: tuple[int, int, int] = Field((1, 2, 2), description="latent patch (frames, height, width) per video token")
    text_dim: int = Field(gt=0, description="prompt encoder width (umT5-XXL: 4096)")
    audio_encoder_layers: int = Field(gt=0, description="audio-only blocks before the shared blocks")
    audio_decoder_layers: int = Field(gt=0, description="audio-only blocks after the shared blocks")
    audio_to_video: bool = Field(False, description="lip-sync aid: add to each noisy video token the audio tokens of its own "
                                 "frames (zero-initialised), besides the shared attention (false: the paper's DiT)")
    mouth_head: bool = Field(False, description="lip-sync aid for training: a linear head naming each video latent's mouth "
                             "shape (open, width, round) from its tokens after the blocks (false: none, as in the paper)")

    @property
    def hidden_dim(self) -> int:
        return self.num_heads * self.head_dim


class WordPaceConfig(Strict):
    """When each word is spoken, for streams that read by the plan. `durations` "learned": the
    orchestrator's duration head predicts each word's duration and the pause after it, and the
    silence before the first, from the transcript's hidden states and the reference voice.
    "letters": each word lasts `word_seconds` + `letter_seconds` per letter, a pause follows a
    comma and a longer one a full stop, the first word after `lead_seconds`. "espeak": each word
    lasts as long as espeak-ng's phoneme rules make it at `espeak_rate`, pauses included, times
    `espeak_scale`, the first word after `lead_seconds`. The stream ends `tail_seconds` after the
    last word. The rule-based numbers are fitted to SynthTalk's training timings (`streamchar bench pace`)."""

    durations: Literal["learned", "letters", "espeak"] = Field("letters", description="what times each word: the orchestrator's "
                                                                 "duration head, its letters, or espeak-ng's phonemes")
    lead_seconds: float = Field(0.2, ge=0, description="silence before the first word (letters, espeak)")
    word_seconds: float = Field(0.0043, ge=0, description="each word's duration before its letters (letters)")
    letter_seconds: float = Field(0.0655, gt=0, description="duration added by each letter (letters)")
    clause_pause_seconds: float = Field(0.302, ge=0, description="pause after , ; : and -- between words (letters)")
    sentence_pause_seconds: float = Field(0.452, ge=0, description="pause after . ! ? between words (letters)")
    espeak_voice: str = Field("en-us", min_length=1, description="the espeak-ng voice whose timing the plan takes (durations: espeak)")
    espeak_rate: int = Field(168, ge=80, le=450, description="words per minute espeak-ng times the words at (durations: espeak)")
    espeak_scale: float = Field(1.0, gt=0, description="planned seconds per second of espeak-ng's timing (durations: espeak)")
    tail_seconds: float = Field(0.35, ge=0, description="the stream ends this long after the last word; its last chunk plays only that far")


class TextPlanConfig(Strict):
    """How a stream that reads by a plan (`orchestrator.reading: plan`, or `plan-pointer` as the tiny preset does) places
    its audio latents in the transcript. The orchestrator's RoPE puts each audio latent beside the
    token spoken then (from word timings in training, from the plan in streams), and a Gaussian
    bias points its attention there: a small orchestrator trained from scratch finds the text by
    relative position instead of counting through the history."""

    text_rate: float = Field(gt=0, description="transcript tokens per audio latent: the plan's even pace without word_pace, "
                             "and the positions of latents no timing places")
    text_window: float = Field(0.0, ge=0, description="width (tokens) of the Gaussian bias from each audio latent to the "
                               "transcript tokens beside it (0: no bias)")
    word_pace: WordPaceConfig | None = Field(None, description="time each word by its letters or phonemes and its punctuation "
                                             "(None: one even pace, text_rate tokens per latent)")


class DurationHeadConfig(Strict):
    """The orchestrator's word-duration head (`word_pace.durations: learned`): a small transformer
    over the transcript's words, each read from the orchestrator's hidden states of its tokens, with
    the reference voice summed in by a convolution over its latents. Trained alone, the rest of the
    model frozen (`streamchar train durations`)."""

    width: int = Field(64, gt=0, description="width of the word transformer and the voice convolution")
    layers: int = Field(2, gt=0, description="word transformer layers")
    heads: int = Field(4, gt=0, description="word transformer attention heads")

    @model_validator(mode="after")
    def _heads(self) -> DurationHeadConfig:
        if self.width % self.heads:
            raise ValueError(f"width: {self.width} is not divisible by heads={self.heads}")
        return self


class OrchestratorConfig(Strict):
    num_layers: int = Field(gt=0, description="decoder layers (Qwen2.5-3B: 36)")
    hidden_size: int = Field(gt=0, description="hidden width")
    num_heads: int = Field(gt=0, description="attention heads")
    num_kv_heads: int = Field(gt=0, description="key/value heads (grouped-query attention)")
    ffn_dim: int = Field(gt=0, description="feed-forward width")
    vocab_size: int = Field(gt=0, description="token vocabulary (qwen2: Qwen2.5's; characters: the project's)")
    context_window: int = Field(gt=0, description="most positions the orchestrator reads: reference + transcript + history + chunk")
    lookahead_words: int = Field(48, gt=0, description="transcript words after the history window's cut that the orchestrator reads")
    prompt_tokens: int = Field(
        0, ge=0, description="the prompt's first tokens, read before the transcript (§3.2); 0: the transcript alone (tiny, docs/tiny-scale.md)"
    )
    tokenizer: Literal["qwen2", "characters", "phonemes"] = Field(
        description="qwen2: Qwen2.5's, loaded from tokenizer_directory; characters: the project's own, one token per character; "
        "phonemes: each word's phonemes from gruut's English lexicon and g2p (pip install 'streamchar[phonemes]')")
    tokenizer_directory: str | None = Field(None, description="qwen2: the directory its tokenizer loads from (AutoTokenizer), relative "
                                            "to the checkpoint's folder or absolute")
    phoneme_classes: int = Field(0, ge=0, description="classes of the frame-level phoneme head (training aid, 0: no head)")
    reading: Literal["pointer", "plan", "plan-pointer"] = Field(
        "pointer", description="how a stream reads its transcript: pointer (the paper's progress pointer), plan (each latent placed "
        "in the text by a timed plan, which also counts the words spoken), or plan-pointer (latents placed by the plan; the "
        "pointer's reading counts the words, cuts the history, ends the stream and re-times the words ahead); both plans need plan")
    plan: TextPlanConfig | None = Field(None, description="the plan's parameters (reading: plan or plan-pointer)")
    durations: DurationHeadConfig | None = Field(None, description="the word-duration head (plan.word_pace.durations: learned)")

    @model_validator(mode="after")
    def _heads(self) -> OrchestratorConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size: {self.hidden_size} is not divisible by num_heads={self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_kv_heads: {self.num_kv_heads} must divide num_heads={self.num_heads}")
        if (self.tokenizer == "qwen2") != bool(self.tokenizer_directory):
            raise ValueError("tokenizer_directory: the qwen2 tokenizer loads from a directory; name it" if self.tokenizer == "qwen2"
                             else f"tokenizer_directory: the {self.tokenizer} tokenizer reads no directory; drop it")
        if (self.reading != "pointer") != (self.plan is not None):
            raise ValueError(f"plan: reading {self.reading} needs it" if self.plan is None
                             else "plan: reading is pointer, which reads no plan; set reading: plan or plan-pointer, or drop plan")
        pace = self.plan.word_pace if self.plan is not None else None
        if self.reading == "plan-pointer" and pace is None:
            raise ValueError("plan.word_pace: reading plan-pointer moves the words of a timed plan; give word_pace, or read by plan")
        if pace is not None and pace.durations == "learned" and self.durations is None:
            raise ValueError("durations: word_pace.durations learned reads the orchestrator's duration head; give durations")
        return self


class SynthTalkConfig(Strict):
    """How SynthTalk clips are made (docs/architecture.md, "SynthTalk")."""

    text: list[Literal["harvard", "everyday", "wordnet", "fortunes", "chatterbot"]] = Field(
        ["harvard"], min_length=1, description="the sources transcripts are drawn from (data/corpus.py; docs/data-card.md): harvard "
        "alone, split by list, as the first sets; with any other source, every source is split by document and chatterbot, "
        "when named, is held out entirely as the open split")  # fmt: skip
    open_fraction: float = Field(0.0, ge=0, lt=1, description="share of clips in the open split: seen characters speaking the "
                                 "held-out source's sentences (needs chatterbot in text)")  # fmt: skip
    held_out_voices: list[str] = Field([], description="voices no training character speaks with, as engine:name (flite:awb): "
                                       "unseen characters may, so that a voice the model never heard can be evaluated")  # fmt: skip
    voice: str | None = Field(None, pattern=r"^(espeak|festival|flite):\S+$", description="every character speaks with this one "
                              "voice, engine:name at its own pitch (flite:kal, which no other set uses): a test set in a voice no "
                              "model heard")  # fmt: skip
    min_sentences: int = Field(1, ge=1, le=4, description="fewest sentences in a clip")
    max_sentences: int = Field(4, ge=1, le=4, description="most sentences in a clip")
    max_seconds: float = Field(20.0, gt=0, le=20.0, description="longest clip (s); the paper trains on clips up to 20 s")
    clips_per_shard: int = Field(64, ge=1, description="clips per MP4 shard folder")
    train_characters: int = Field(48, ge=1, description="characters that appear in training")
    unseen_characters: int = Field(8, ge=1, description="characters that never appear in training")
    val_fraction: float = Field(0.05, ge=0, lt=1, description="share of seen characters' clips in the val split")
    test_fraction: float = Field(0.05, ge=0, lt=1, description="share of seen characters' clips in the test split")
    unseen_fraction: float = Field(0.10, ge=0, lt=1, description="share of clips in the test-unseen split")
    reference_voice_seconds: float = Field(3.0, gt=0, le=15.0, description="shortest reference voice clip (s)")
    crf: int = Field(16, ge=0, le=51, description="H.264 quality of the MP4 (lower is better)")
    engines: list[Literal["espeak", "festival", "flite"]] = Field(["espeak"], min_length=1, description="speech engines the "
                                                                   "characters' voices are drawn from, one per character by its seed "
                                                                   "(`data synth --engines`)")  # fmt: skip

    @model_validator(mode="after")
    def _ranges(self) -> SynthTalkConfig:
        if self.min_sentences > self.max_sentences:
            raise ValueError("min_sentences: must not exceed max_sentences")
        if self.val_fraction + self.test_fraction + self.unseen_fraction + self.open_fraction >= 1:
            raise ValueError("val_fraction + test_fraction + unseen_fraction + open_fraction must be below 1")
        if self.open_fraction and "chatterbot" not in self.text:
            raise ValueError("open_fraction: the open split speaks the held-out chatterbot source; add chatterbot to text")
        if len(set(self.text)) != len(self.text):
            raise ValueError("text: name each source once")
        return self


class PromptConfig(Strict):
    encoder: Literal["t5", "umt5"] = Field("t5", description="the frozen prompt encoder. t5: a small T5 encoder initialised from a "
                                            "fixed seed over the project's characters, saved in the checkpoint (tiny only: no "
                                            "pretrained T5 that small exists); umt5: Wan's umT5 encoder and its tokenizer, loaded "
                                            "from `directory`")  # fmt: skip
    tokens: int = Field(160, gt=0, description="prompt states per prompt: longer prompts are cut, shorter ones zero-padded "
                        "(Wan: 512)")
    directory: str | None = Field(None, description="umt5: the transformers directory holding UMT5EncoderModel and its tokenizer, "
                                  "relative to the checkpoint's folder or absolute")

    @model_validator(mode="after")
    def _directory(self) -> PromptConfig:
        if self.encoder == "umt5" and not self.directory:
            raise ValueError("prompt.directory: the umt5 encoder is loaded from a directory; name it")
        return self


class Config(Strict):
    preset: str = Field(description="the named preset this config started from")
    stream: StreamGeometry = Field(default_factory=StreamGeometry)
    video: VideoConfig
    audio: AudioConfig
    dit: DiTConfig
    orchestrator: OrchestratorConfig
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    synthtalk: SynthTalkConfig = Field(default_factory=SynthTalkConfig)

    @model_validator(mode="after")
    def _geometry(self) -> Config:
        s = self.stream.vae_spatial_stride
        for name in ("height", "width"):
            v = getattr(self.video, name)
            if v % s:
                raise ValueError(f"video.{name}: {v} is not a multiple of the VAE spatial stride {s}")
        latent_h = self.video.height // s
        latent_w = self.video.width // s
        ph, pw = self.dit.patch_size[1], self.dit.patch_size[2]
        if latent_h % ph or latent_w % pw:
            raise ValueError(
                f"dit.patch_size: latent grid {latent_h}x{latent_w} is not divisible by the patch {ph}x{pw}"
            )
        sr, hop = self.audio.sample_rate, self.audio.hop_length
        if sr % hop or sr // hop != self.stream.audio_latent_rate:
            raise ValueError(
                f"audio.hop_length: sample_rate {sr} / hop {hop} must be exactly "
                f"{self.stream.audio_latent_rate} latents per second"
            )
        if sr % self.stream.fps:
            raise ValueError(f"audio.sample_rate: {sr} must be a whole number of samples per video frame")
        return self

    @property
    def samples_per_frame(self) -> int:
        return self.audio.sample_rate // self.stream.fps

    @property
    def chunk_samples(self) -> int:
        return self.stream.chunk_audio_latents * self.audio.hop_length
