"""The paper preset's audio VAE (`streamchar codec train --kind audio --preset paper`): diffusers'
`AutoencoderOobleck` in Stable Audio Open's layout, at the paper's 49,152 Hz.

The layout (`OOBLECK_LAYOUT`, Stable Audio Open's VAE as diffusers configures it):
`downsampling_ratios` [2, 4, 4, 8, 8], whose product is the hop, 2048 samples; `channel_multiples`
[1, 2, 4, 8, 16]; `decoder_channels` 128 (`--width`); 64 latent channels
(`decoder_input_channels`); `encoder_hidden_size` 128, which is no free width: the encoder's last
convolution emits `encoder_hidden_size` channels, the posterior's mean and scale, so it is twice
the latent's 64. 156,112,514 parameters. At 49,152 Hz the hop of 2048 gives 24 latents per
second, the video's 24 fps: a chunk's 33 frames (1.375 s, 67,584 samples) are 33 latents, the
paper preset's `stream.audio_latent_rate` and `chunk_audio_latents`. Two audio channels, as
Stable Audio Open's: `OobleckAudioCodec` copies mono speech to both and averages them back.

`--width` (the decoder's channels) and `--multiples` (both halves' channel multiples) make a
smaller VAE of the same hop and latent, for tests on a CPU.

`--init DIR` starts from a diffusers `AutoencoderOobleck` of the same hop and latent width, e.g.
Stable Audio Open's (44,100 Hz). Its weights load as they are; what changes is the rate of the
audio it is given, resampled to 49,152 Hz, and `sampling_rate` in its config. A latent still
codes 2048 samples, but they now last 41.7 ms instead of 46.4 ms (24 latents per second instead
of 21.53), and the band reaches 24,576 Hz instead of 22,050 Hz. Per sample, every sound is
44,100 / 49,152 = 0.897 times the frequency the VAE was trained on: it hears 49,152 Hz audio as
44.1 kHz audio slowed to 0.897 of its speed, 1.88 semitones lower. Hence the fine-tuning at the
new rate.

The loop, checkpoints (`<run>/checkpoints/`, safetensors, written hidden and renamed), resume (the
same command again), the log and TensorBoard are the tiny codecs' (`training/loop.py`). At the
end the VAE is written with `save_pretrained` (safetensors), checked to load as the paper preset
loads it (`OobleckAudioCodec.load`), and moved into `--out` file by file, with a model card
(README.md) and the training record."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from streamchar.codecs.paper import OobleckAudioCodec
from streamchar.config import Config
from streamchar.errors import StreamcharError
from streamchar.training.codec_data import AudioSegments, speech_audio
from streamchar.training.codec_objectives import OOBLECK_KL_WEIGHT, OOBLECK_STFT_SIZES, OobleckObjective
from streamchar.training.codec_training import run_codec_stage
from streamchar.training.loop import Objective, Part, Runtime, TrainLoop
from streamchar.training.records import export_training_record

SEED = 0
OOBLECK_LAYOUT = {"downsampling_ratios": [2, 4, 4, 8, 8], "channel_multiples": [1, 2, 4, 8, 16], "decoder_channels": 128, "audio_channels": 2}
LR = 1.5e-4  # Stable Audio Open's VAE: AdamW, betas (0.8, 0.99), weight decay 1e-3
BETAS, WEIGHT_DECAY = (0.8, 0.99), 1e-3


@dataclass
class OobleckSettings:
    steps: int
    batch: int
    lr: float = LR
    save_every: int = 200
    log_every: int = 20
    max_clips: int = 400
    threads: int | None = None
    init: str | None = None  # a diffusers AutoencoderOobleck directory (Stable Audio Open's VAE)
    width: int | None = None  # decoder_channels (None: 128, or --init's)
    multiples: tuple[int, ...] | None = None  # channel_multiples (None: [1, 2, 4, 8, 16], or --init's)
    segment: int | None = None  # latents per training segment (None: a chunk's, 33)
    device: str | None = None  # None: CUDA where present


def check_oobleck_settings(kind: str, s: OobleckSettings, cfg: Config) -> None:
    """Settings that cannot work, refused before anything is read or written."""
    if kind != "audio":
        raise StreamcharError(f"`codec train --preset {cfg.preset}` trains the audio VAE (--kind audio); the video VAE is Wan2.2's, "
                              "public: give it to `checkpoint assemble --video-vae`")  # fmt: skip
    if s.steps <= 0 or s.batch <= 0 or s.lr <= 0:
        raise StreamcharError("--steps, --batch and --lr must be positive")
    if s.width is not None and s.width < 1:
        raise StreamcharError(f"--width is the decoder's channels (Stable Audio Open: 128), at least 1; got {s.width}")
    stages = len(OOBLECK_LAYOUT["downsampling_ratios"])
    if s.multiples is not None and (len(s.multiples) != stages or min(s.multiples) < 1):
        raise StreamcharError(f"--multiples takes {stages} whole numbers of at least 1, one per stage (Stable Audio Open: 1,2,4,8,16); "
                              f"got {','.join(map(str, s.multiples))}")  # fmt: skip
    if s.segment is not None and s.segment < 1:
        raise StreamcharError(f"--segment is latents per training segment, at least 1; got {s.segment}")
    hop = math.prod(OOBLECK_LAYOUT["downsampling_ratios"])
    a = cfg.audio
    if a.hop_length != hop or a.sample_rate != hop * cfg.stream.audio_latent_rate:
        rate = cfg.stream.audio_latent_rate
        raise StreamcharError(f"the Oobleck layout codes {hop} samples per latent, {hop * rate} Hz at {rate} latents per second; "
                              f"the config asks {a.sample_rate} Hz, hop {a.hop_length}")  # fmt: skip


def _load_init(path: Path, cfg: Config, s: OobleckSettings):  # noqa: ANN202
    """--init's VAE, rebuilt at the preset's rate with its weights as they are; one error naming
    each way its layout does not fit."""
    from diffusers import AutoencoderOobleck

    if not (path / "config.json").is_file():
        raise StreamcharError(f"--init {path}: no diffusers AutoencoderOobleck there (expected config.json and weights from save_pretrained)")
    try:
        init = AutoencoderOobleck.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as e:
        raise StreamcharError(f"--init {path}: cannot load AutoencoderOobleck: {str(e).splitlines()[0]}") from None
    c, z, problems = init.config, cfg.audio.latent_channels, []
    if math.prod(c.downsampling_ratios) != cfg.audio.hop_length:
        problems.append(f"hop {math.prod(c.downsampling_ratios)} (the preset needs {cfg.audio.hop_length})")
    if c.decoder_input_channels != z:
        problems.append(f"{c.decoder_input_channels} latent channels (the preset needs {z})")
    if s.width is not None and s.width != c.decoder_channels:
        problems.append(f"decoder_channels {c.decoder_channels}, which --width {s.width} cannot change")
    if s.multiples is not None and list(s.multiples) != list(c.channel_multiples):
        problems.append(f"channel_multiples {list(c.channel_multiples)}, which --multiples cannot change")
    if problems:
        raise StreamcharError(f"--init {path} does not fit: " + "; ".join(problems))
    vae = AutoencoderOobleck.from_config({**c, "sampling_rate": cfg.audio.sample_rate})
    vae.load_state_dict(init.state_dict())
    return vae, int(c.sampling_rate)


def build_vae(cfg: Config, s: OobleckSettings):  # noqa: ANN201
    """The VAE to train and the rate it was trained at before (None: new, from `SEED`)."""
    from diffusers import AutoencoderOobleck

    torch.manual_seed(SEED)
    if s.init is not None:
        return _load_init(Path(s.init), cfg, s)
    z = cfg.audio.latent_channels
    layout = {**OOBLECK_LAYOUT, "decoder_channels": s.width or OOBLECK_LAYOUT["decoder_channels"],
              "channel_multiples": list(s.multiples or OOBLECK_LAYOUT["channel_multiples"])}  # fmt: skip
    return AutoencoderOobleck(**layout, encoder_hidden_size=2 * z, decoder_input_channels=z, sampling_rate=cfg.audio.sample_rate), None


class OobleckStage(Objective):
    """The audio VAE's training as the loop runs it: `OobleckObjective`'s loss, AdamW as Stable
    Audio Open's (betas 0.8, 0.99; weight decay 1e-3), clipped to norm 1; segments drawn from one
    generator, kept in checkpoints."""

    tag = "oobleck"

    def __init__(self, data: Path, cfg: Config, s: OobleckSettings):
        check_oobleck_settings("audio", s, cfg)
        self.data, self.cfg, self.s, self.rng = Path(data), cfg, s, np.random.default_rng(SEED)
        self.vae, self.init_rate = build_vae(cfg, s)  # before the data: an --init that does not fit is refused first
        audio, self.data_info = speech_audio(self.data, cfg.audio.sample_rate, s.max_clips)
        self.segment = s.segment or cfg.stream.chunk_audio_latents
        self.objective = OobleckObjective(self.vae, AudioSegments(audio, self.rng), s.batch, self.segment)

    def parts(self) -> dict[str, Part]:
        return {"model": Part(self.vae, self.s.lr, weight_decay=WEIGHT_DECAY, betas=BETAS, clip=1.0)}

    def losses(self, step: int, micro: int) -> dict[str, torch.Tensor | float]:
        loss, parts = self.objective.loss()
        return {"loss": loss, **parts}

    def meta(self) -> dict:
        return {"stage": "oobleck", "settings": asdict(self.s)}

    def export(self, loop: TrainLoop, out: Path, command: str = "") -> None:
        """save_pretrained into a hidden folder beside `out`, checked to load as the paper preset
        loads it, then moved into `out` file by file (each replace atomic)."""
        out.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
        try:
            self.vae.to("cpu").eval().save_pretrained(str(work), safe_serialization=True)
            OobleckAudioCodec.load(work, self.cfg)
            export_training_record(loop.run, work, "paper audio VAE (AutoencoderOobleck)")
            (work / "README.md").write_text(model_card(self, loop, command))
            for f in sorted(work.iterdir()):
                f.chmod(0o644)  # save_pretrained leaves its weights readable by their owner alone
                os.replace(f, out / f.name)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def model_card(stage: OobleckStage, loop: TrainLoop, command: str) -> str:
    """README.md beside the weights: what it codes, its layout, start, data, training and command."""
    vae, cfg, s, d = stage.vae, stage.cfg, stage.s, stage.data_info
    c, hop, rate = vae.config, math.prod(vae.config.downsampling_ratios), cfg.audio.sample_rate
    log = [json.loads(line) for line in (loop.run / "train_log.jsonl").read_text().splitlines() if line.strip()]
    last = {k: round(v, 4) for k, v in log[-1].items() if k in ("step", "loss", "stft", "kl")} if log else {}
    start = (f"initialised from `{s.init}`, a {stage.init_rate:,} Hz VAE: its weights as they were, its `sampling_rate` set to {rate:,} "
             f"and its audio resampled to {rate:,} Hz (docs/paper-scale.md, \"Making the 49,152 Hz audio VAE\")"
             if s.init else f"from scratch (seed {SEED})")  # fmt: skip
    params = sum(p.numel() for p in vae.parameters())
    rates = ", ".join(f"{r:,}" for r in d["source_rates"])
    chunk = cfg.stream.chunk_audio_latents
    top = max(d["source_rates"]) // 2  # the highest frequency any of the audio holds
    band = f"\n  It holds nothing above {top:,} Hz: the VAE never saw the band from there to {rate // 2:,} Hz." if top < rate // 2 else ""
    return f"""# Oobleck audio VAE, {rate:,} Hz

diffusers `AutoencoderOobleck` for the paper preset (`streamchar checkpoint assemble --audio-vae THIS_FOLDER`): {rate:,} Hz
speech into {rate // hop} latents per second of {c.decoder_input_channels} channels (hop {hop}); a chunk ({cfg.stream.chunk_frames} frames,
{cfg.stream.chunk_seconds} s, {chunk * hop:,} samples) is {chunk} latents. Mono speech is copied to its {c.audio_channels} channels and
averaged back.

- Layout: downsampling_ratios {list(c.downsampling_ratios)}, channel_multiples {list(c.channel_multiples)}, encoder_hidden_size
  {c.encoder_hidden_size}, decoder_channels {c.decoder_channels}; {params:,} parameters.
- Start: {start}.
- Data: {d["source"]} from `{d["data"]}`: {d["files"]} files, {d["seconds"]} s of audio at {rates} Hz, resampled to {rate:,} Hz.{band}
- Training: {s.steps} steps of {s.batch} segments of {stage.segment} latents ({stage.segment * hop / rate:.3f} s); AdamW, lr {s.lr}
  (warm-up, then cosine), betas {BETAS}, weight decay {WEIGHT_DECAY}; loss: multi-resolution STFT over windows
  {list(OOBLECK_STFT_SIZES)} + {OOBLECK_KL_WEIGHT} x KL (Stable Audio Open's weights; no adversarial loss).
- Last logged: {json.dumps(last)}. The training command measures nothing else.

## How it was made

    {command or "(not recorded: trained from Python)"}

## Records

`train_log.jsonl`, `commands.txt` and `training_curves.png` beside this file.
"""


def train_oobleck(data: Path, run: Path, out: Path, cfg: Config, settings: OobleckSettings,
                  on_step: Callable[[int, int, dict], None] | None = None, command: str = "") -> dict:
    """Train (or resume training) the paper preset's audio VAE; returns a summary."""
    s = settings
    rt = Runtime.create(precision="fp32", threads=s.threads, device=s.device)  # Snake's exp and the KL's log in float32, on CUDA too
    stage = OobleckStage(data, cfg, s)
    return {**run_codec_stage(stage, s.steps, s.log_every, s.save_every, run, out, rt, on_step, command), "data": stage.data_info}
