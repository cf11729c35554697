"""A generator with its codecs, loaded once and streamed many times: what `generate`, `demo`,
`eval render` and the trainer's validation streams share."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from streamchar.codecs.base import AudioCodec, VideoCodec
from streamchar.codecs.store import load_audio_codec, load_video_codec
from streamchar.config import Config
from streamchar.model.checkpoint import SHIPPED_GENERATORS, load_generator, resolve_generator_path
from streamchar.model.prompt import PromptEncoder
from streamchar.model.streamchar_model import StreamCharModel
from streamchar.streaming.engine import SessionSettings, StreamSession
from streamchar.streaming.inputs import StreamRequest
from streamchar.streaming.runner import ChunkRecord, StreamReport, run_stream
from streamchar.streaming.writers import ChunkWriter, FragmentedMp4Writer

TEACHER_STEPS, STUDENT_STEPS = 50, 4


DEFAULT_GENERATOR = SHIPPED_GENERATORS[0]


def default_steps(meta: dict) -> int:
    """The sampler a checkpoint was trained for: 4 for a distilled student, 50 for a teacher."""
    if "sampling_steps" in meta:
        return int(meta["sampling_steps"])
    return STUDENT_STEPS if meta.get("stage") in ("dmd", "rollout") else TEACHER_STEPS


@dataclass
class Pipeline:
    model: StreamCharModel
    prompt_encoder: PromptEncoder
    video_codec: VideoCodec
    audio_codec: AudioCodec
    meta: dict

    @property
    def cfg(self) -> Config:
        return self.model.cfg

    @classmethod
    def load(cls, checkpoint: str | Path | None = None, video_codec: str | Path | None = None,
             audio_codec: str | Path | None = None, config: Path | None = None) -> Pipeline:
        """By directory or shipped name; None: the default shipped generator. The codecs: the
        directories given (a model trained on another codec's latents, or the paper preset's
        VAEs), else the checkpoint's own (an assembled one keeps them in its folder), else the
        preset's shipped ones. `config`: a YAML file of fields layered on the
        checkpoint's config (how the transcript is read; fields the weights depend on are refused)."""
        name = str(checkpoint) if checkpoint is not None else DEFAULT_GENERATOR
        model, prompt, meta = load_generator(name, config)
        folder = resolve_generator_path(name)  # an assembled checkpoint keeps its VAEs in its folder
        video_codec = video_codec or (folder / meta["video_codec"] if "video_codec" in meta else None)
        audio_codec = audio_codec or (folder / meta["audio_codec"] if "audio_codec" in meta else None)
        return cls.from_modules(model, prompt, {**meta, "name": name}, video_codec, audio_codec)

    @classmethod
    def from_modules(cls, model: StreamCharModel, prompt: PromptEncoder, meta: dict | None = None,
                     video_codec: str | Path | None = None, audio_codec: str | Path | None = None) -> Pipeline:
        cfg = model.cfg
        return cls(model.eval(), prompt.eval(), load_video_codec(cfg, video_codec), load_audio_codec(cfg, audio_codec), meta or {})

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None, prompt_device: str | torch.device | None = None) -> Pipeline:
        """Every part on `device` (the prompt encoder on `prompt_device` where given: a memory
        mode offloads it), and the generator in `dtype` (a bfloat16 generator computes in
        bfloat16). A codec takes `dtype` on a GPU where it `holds_half_precision`; else it stays
        float32 (a CPU without bfloat16 instructions took 25 minutes over the paper audio VAE's
        bfloat16 convolutions) and takes its inputs as they come (`codecs.base.on_codec`)."""
        self.model.to(device=device)
        self.prompt_encoder.to(device=prompt_device or device, dtype=dtype)
        if dtype is not None:
            self.model.in_precision(dtype)
        on_gpu = torch.device(device).type == "cuda"
        for codec in (self.video_codec, self.audio_codec):
            codec.to(device=device, dtype=dtype if codec.holds_half_precision and on_gpu else None)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def steps(self) -> int:
        return default_steps(self.meta)

    def session(self, request: StreamRequest, settings: SessionSettings, listening: bool = False) -> StreamSession:
        return StreamSession(self.model, self.prompt_encoder, self.video_codec, self.audio_codec, request, settings, listening=listening)

    def mp4_writer(self, path: Path) -> FragmentedMp4Writer:
        c = self.cfg
        on_gpu = self.device.type == "cuda"  # then the cores are the encoder's
        return FragmentedMp4Writer(Path(path), c.stream.fps, c.audio.sample_rate, c.video.width, c.video.height, threads=0 if on_gpu else 1)

    def stream_to_mp4(self, request: StreamRequest, settings: SessionSettings, out: Path, t_request: float | None = None,
                      on_chunk: Callable[[ChunkRecord], None] | None = None, extra_writers: tuple[ChunkWriter, ...] = ()) -> StreamReport:
        t_request = time.perf_counter() if t_request is None else t_request
        session = self.session(request, settings)
        return run_stream(session, [self.mp4_writer(out), *extra_writers], t_request, on_chunk=on_chunk)
