"""What every stage that trains the generator shares: the model from `--init` or from scratch
(with Wan2.2 and Qwen2.5 weights at paper scale), the windows of the latent cache, the memory
check before the first step, its part for the loop, export and the validation stream."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from streamchar.config import Config
from streamchar.data.harvard import split_sentences
from streamchar.data.latents import LatentCache
from streamchar.errors import StreamcharError
from streamchar.model.checkpoint import load_generator, new_generator, save_generator
from streamchar.model.streamchar_model import StreamCharModel, build_model
from streamchar.model.tokenizer import QwenTokenizer, check_vocabulary
from streamchar.training.loop import LoopSettings, Objective, Part, Runtime, TrainLoop
from streamchar.training.settings import TrainSettings
from streamchar.training.windows import WindowSource

SPEECH_STAGES = ("orchestrator", "durations")  # the stages a speech-only cache can train


def loop_settings(s: TrainSettings, world: int = 1) -> LoopSettings:
    return LoopSettings(steps=s.steps, warmup=s.warmup, min_lr_ratio=s.min_lr_ratio, grad_accum=s.accumulation(world), log_every=s.log_every,
                        save_every=s.save_every, keep_checkpoints=s.keep_checkpoints, validate_every=s.validate_every)  # fmt: skip


def check_memory(model: StreamCharModel, s: TrainSettings, device: torch.device, world: int) -> dict:
    """Weights, gradients, Adam moments and the EMA (fp32), sharded over `world`, plus a rough
    activation estimate; refused before training when it does not fit."""
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    state = (4 * params + 4 * trainable + 8 * trainable + (4 * trainable if s.ema_decay else 0)) / world
    cfg = model.cfg
    tokens = 3 * cfg.stream.chunk_latent_frames * (cfg.video.height // 32) * (cfg.video.width // 32) + cfg.stream.chunk_audio_latents
    acts = (s.batch * tokens * cfg.dit.hidden_dim * cfg.dit.num_layers * 40
            + s.batch * 1200 * cfg.orchestrator.hidden_size * cfg.orchestrator.num_layers * 40)
    need = state + acts
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
    else:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        free = info.get("MemAvailable", 0)
    if need > 0.9 * free:
        raise StreamcharError(f"this configuration needs about {need / 2**30:.1f} GiB per process ({params / 1e9:.2f}B parameters with "
                              f"optimizer and EMA state, sharded over {world}, plus activations for batch {s.batch}); "
                              f"{free / 2**30:.1f} GiB is free on {device}. Use more processes, a smaller batch or a smaller preset")  # fmt: skip
    return {"parameters": params, "estimated_gib": need / 2**30, "free_gib": free / 2**30}


class GeneratorObjective(Objective):
    stages: tuple[str, ...] = ()

    def __init__(self, stage: str, cfg: Config, s: TrainSettings, rt: Runtime):
        if stage not in self.stages:
            raise StreamcharError(f"unknown stage {stage!r}; accepted: {', '.join(self.stages)}")
        self.stage, self.cfg, self.s, self.rt, self.tag = stage, cfg, s, rt, stage
        self.init_meta: dict = {}  # the init checkpoint's metadata (its stage, a student's sampling steps)
        if s.init:
            self.model, self.prompt, self.init_meta = load_generator(s.init, config=cfg)
        else:  # the Qwen2.5 directory's tokenizer goes with its weights, and into the checkpoints
            self.model, self.prompt = new_generator(cfg, s.seed, tokenizer=check_vocabulary(QwenTokenizer(s.qwen), cfg) if s.qwen else None)
            if s.wan:
                from streamchar.model.weights import load_wan_into

                load_wan_into(self.model.dit, Path(s.wan))
            if s.qwen:
                self.model.orchestrator.load_backbone(s.qwen)
        self.tokenizer = self.model.tokenizer
        self.source = WindowSource(LatentCache(Path(s.cache)), cfg, self.tokenizer, "train", vary_history=s.vary_history,
                                   mouth_cells=s.mouth_region_weight > 0 and stage == "joint")  # fmt: skip
        if self.source.speech_only and stage not in SPEECH_STAGES:
            raise StreamcharError(f"{s.cache} is a speech-only cache (`data encode --speech`): the {stage} stage needs video; "
                                  f"train {' or '.join(SPEECH_STAGES)} on it, or give a cache of clips (`data encode --data`)")
        index = self.source.index
        self.kinds = {"first": [k for k, (_, c) in enumerate(index) if c == 0], "later": [k for k, (_, c) in enumerate(index) if c > 0]}
        self.freeze()
        self.memory = check_memory(self.model, s, rt.device, rt.world)
        self.prompt.to(rt.device)

    def freeze(self) -> None:
        """Freeze what the stage does not train, before the loop builds its optimiser."""

    def _shard(self, module: torch.nn.Module) -> None:
        from streamchar.model.sharding import shard_model

        shard_model(module, param_dtype=torch.bfloat16 if self.rt.autocast and self.rt.device.type == "cuda" else None)  # type: ignore[arg-type]

    def parts(self) -> dict[str, Part]:
        s = self.s
        return {"model": Part(self.model, s.lr, s.weight_decay, (0.9, 0.99), s.grad_clip, ema_decay=s.ema_decay, shard=self._shard)}

    def meta(self) -> dict:
        return {"stage": self.stage, "settings": self.s.model_dump()}

    def windows(self, step: int, micro: int) -> list:
        """A micro-batch of windows, all first chunks or all later ones, drawn by (seed, step, micro, rank)."""
        rng = np.random.default_rng([self.s.seed, step, micro, self.rt.rank])
        first, later = self.kinds["first"], self.kinds["later"]
        pool = first if (not later or (first and rng.random() < len(first) / (len(first) + len(later)))) else later
        return [self.source.window(int(pool[int(i)])) for i in rng.integers(len(pool), size=self.s.batch)]

    # what the run leaves ---------------------------------------------------------------------------
    def export_meta(self) -> dict:
        return {}

    def export(self, loop: TrainLoop, out: Path, use_ema: bool = True) -> None:
        """The trained generator (the EMA weights where kept) as a checkpoint directory."""
        state = loop.weights("model", ema=use_ema)
        if self.rt.rank == 0:
            meta = {"stage": self.stage, "step": loop.step, "ema": use_ema and "model" in loop.emas, **self.export_meta()}
            save_generator(out, _plain(self.model, state), self.prompt, meta)

    @property
    def validation_steps(self) -> int:
        return 8

    def validate(self, loop: TrainLoop) -> Path:
        """A short stream through the streaming engine with the current weights."""
        from streamchar.streaming.engine import SessionSettings
        from streamchar.streaming.inputs import character_request
        from streamchar.streaming.pipeline import Pipeline

        out = loop.run / "validation" / f"step-{loop.step:07d}.mp4"
        state = loop.weights("model")
        if self.rt.rank == 0:
            out.parent.mkdir(parents=True, exist_ok=True)
            model, prompt = _plain(self.model, state), copy.deepcopy(self.prompt).cpu()
            request = character_request("unseen-0", " ".join(split_sentences("val")[:2]), self.cfg)
            Pipeline.from_modules(model, prompt).stream_to_mp4(request, SessionSettings(steps=self.validation_steps, max_chunks=6), out)
        if self.rt.world > 1:
            torch.distributed.barrier()
        return out


def _plain(model: StreamCharModel, state: dict) -> StreamCharModel:
    """A fresh unsharded copy of `model` holding `state` (on the CPU)."""
    fresh = build_model(model.cfg, tokenizer=model.tokenizer)
    fresh.load_state_dict(state)
    return fresh


def to_device(batch, device: torch.device):  # noqa: ANN001, ANN201
    """A training batch's tensors on `device`."""
    if device.type == "cpu":
        return batch
    from dataclasses import fields, replace

    from streamchar.model.dit import ConditionInput

    moved = {}
    for f in fields(batch):
        v = getattr(batch, f.name)
        if torch.is_tensor(v):
            moved[f.name] = v.to(device)
        elif isinstance(v, ConditionInput):
            moved[f.name] = ConditionInput(*(t.to(device) if t is not None else None for t in (v.reference, v.sink, v.motion)))
    return replace(batch, **moved)
