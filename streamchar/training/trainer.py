"""The pretraining loop (`streamchar train orchestrator|joint`; paper §5.1; docs/architecture.md, "Training stages").

- stage `orchestrator`: speech only. The DiT's audio path without video tokens learns, with the
  orchestrator and its pointer, to produce a chunk's audio latents.
- stage `joint`: orchestrator and DiT together on audio-video windows with reference, sink and
  motion conditions.

One process, or several under `torchrun` (FSDP2 per block, gradients averaged across processes);
bf16 autocast on CUDA; gradient accumulation; warm-up then cosine learning rate; an EMA of the
weights (the teacher is the EMA). Every random draw of step s comes from generators seeded by
(seed, s, micro-batch, rank), so resuming from a checkpoint repeats exactly what an
uninterrupted run does. Checkpoints (model, EMA, optimizer, step) are written atomically every
`save_every` steps into `<run>/checkpoints/step-XXXXXXX/`; the newest `keep_checkpoints` are kept.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from streamchar.config import Config
from streamchar.data.harvard import split_sentences
from streamchar.data.latents import LatentCache
from streamchar.errors import StreamcharError
from streamchar.model.checkpoint import load_generator, new_generator, save_generator
from streamchar.model.streamchar_model import StreamCharModel, build_model
from streamchar.model.tokenizer import QwenTokenizer, check_vocabulary
from streamchar.streaming.engine import SessionSettings
from streamchar.streaming.inputs import character_request
from streamchar.streaming.pipeline import Pipeline
from streamchar.training.batch import collate, pretraining_loss
from streamchar.training.settings import TrainSettings
from streamchar.training.windows import WindowSource
from streamchar.utils.files import atomic_save_file, atomic_write_text

STAGES = ("orchestrator", "joint")


def lr_at(step: int, s: TrainSettings) -> float:
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    p = min(1.0, (step - s.warmup) / max(1, s.steps - s.warmup))
    return s.lr * (s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


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


class Trainer:
    stages = STAGES

    def __init__(self, stage: str, cfg: Config, s: TrainSettings, run: Path, command: str = ""):
        if stage not in self.stages:
            raise StreamcharError(f"unknown stage {stage!r}; accepted: {', '.join(self.stages)}")
        self.stage, self.cfg, self.s, self.run = stage, cfg, s, Path(run)
        self.rank, self.world = _rank_world()
        self.device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.autocast = s.precision == "bf16" or (s.precision == "auto" and self.device.type == "cuda")
        if s.threads:
            torch.set_num_threads(s.threads)
        cache = LatentCache(Path(s.cache))
        self.init_meta: dict = {}  # the --init checkpoint's metadata (its stage, a student's sampling steps)
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
        self.source = WindowSource(cache, cfg, self.tokenizer, "train", vary_history=s.vary_history,
                                   mouth_cells=s.mouth_region_weight > 0 and stage == "joint")
        self.kinds = {
            "first": [k for k, (_, c) in enumerate(self.source.index) if c == 0],
            "later": [k for k, (_, c) in enumerate(self.source.index) if c > 0],
        }
        self.memory = check_memory(self.model, s, self.device, self.world)
        self.model.to(self.device).train()
        self.prompt.to(self.device)
        self.ema = {n: p.detach().clone().float() for n, p in self.model.named_parameters()} if s.ema_decay else None
        if self.world > 1:
            from streamchar.model.sharding import shard_model

            shard_model(self.model, param_dtype=torch.bfloat16 if self.autocast and self.device.type == "cuda" else None)
            if self.ema is not None:
                self.ema = {n: p.detach().clone().float() for n, p in self.model.named_parameters()}
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=s.lr, weight_decay=s.weight_decay, betas=(0.9, 0.99))
        self.step = 0
        self.command = command

    # data ---------------------------------------------------------------------------------
    def _windows(self, step: int, micro: int) -> list:
        rng = np.random.default_rng([self.s.seed, step, micro, self.rank])
        first, later = self.kinds["first"], self.kinds["later"]
        pool = first if (not later or (first and rng.random() < len(first) / (len(first) + len(later)))) else later
        return [self.source.window(int(pool[int(i)])) for i in rng.integers(len(pool), size=self.s.batch)]

    def losses(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        seed = int(np.random.SeedSequence([self.s.seed, step, micro, self.rank]).generate_state(1)[0])
        g = torch.Generator().manual_seed(seed)
        batch = collate(self._windows(step, micro), self.s.prompt_dropout, self.s.reference_dropout, g)
        batch = _to(batch, self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            return pretraining_loss(self.model, self.prompt, batch, g, speech_only=self.stage == "orchestrator",
                                    pointer_weight=self.s.pointer_weight, phoneme_weight=self.s.phoneme_weight,
                                    mouth_weight=self.s.mouth_weight, mouth_region_weight=self.s.mouth_region_weight)  # fmt: skip

    # one step -----------------------------------------------------------------------------
    def train_step(self, step: int) -> dict[str, float]:
        """Forward and backward over the micro-batches, then the optimizer; the loss parts."""
        parts: dict[str, float] = {}
        for micro in range(self.s.grad_accum):
            out = self.losses(step, micro)
            (out["loss"] / self.s.grad_accum).backward()
            for k, v in out.items():
                parts[k] = parts.get(k, 0.0) + float(v.detach()) / self.s.grad_accum
        parts["grad_norm"] = self.optimizer_step()
        return parts

    def optimizer_step(self) -> float:
        """Clip, step, clear, and move the EMA; the gradient norm before clipping."""
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.s.grad_clip))
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.ema is not None:  # the weights it averages (a stage may keep some only: those it trains)
            with torch.no_grad():
                for n, p in self.model.named_parameters():
                    if n in self.ema:
                        self.ema[n].lerp_(p.detach().float(), 1 - self.s.ema_decay)
        return grad_norm

    def extra_parts(self) -> dict[str, tuple[StreamCharModel, torch.optim.Optimizer]]:
        """Other trained models saved and resumed with the generator (distillation's fake score)."""
        return {}

    def export_meta(self) -> dict:
        return {}

    @property
    def validation_steps(self) -> int:
        return 8

    # the loop -----------------------------------------------------------------------------
    def train(self, on_step: Callable[[int, int, dict], None] | None = None, stop_after: int | None = None) -> dict:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(self.run / "tensorboard")) if self.rank == 0 else None
        self.run.mkdir(parents=True, exist_ok=True)
        if self.rank == 0 and self.command:
            with open(self.run / "commands.txt", "a") as f:
                f.write(self.command + "\n")
        t0, first = time.perf_counter(), self.step
        last: dict = {}
        while self.step < self.s.steps:
            step = self.step
            lr = lr_at(step, self.s)
            for group in self.opt.param_groups:
                group["lr"] = lr
            parts = self.train_step(step)
            self.step += 1
            rate = (self.step - first) / (time.perf_counter() - t0)
            last = {"step": self.step, **parts, "lr": lr, "steps_per_s": rate}
            if self.rank == 0 and (self.step % self.s.log_every == 0 or self.step == self.s.steps):
                with open(self.run / "train_log.jsonl", "a") as f:
                    f.write(json.dumps(last) + "\n")
                for k, v in last.items():
                    if k != "step" and writer is not None:
                        writer.add_scalar(f"{self.stage}/{k}", v, self.step)
            if on_step:
                on_step(self.step, self.s.steps, last)
            if self.step % self.s.save_every == 0 or self.step == self.s.steps:
                self.save()
            if self.s.validate_every and self.step % self.s.validate_every == 0:
                self.validate()
            if stop_after is not None and self.step >= stop_after:
                break
        if writer is not None:
            writer.close()
        return last

    # checkpoints ----------------------------------------------------------------------------
    def _model_state(self, model: StreamCharModel | None = None) -> dict:
        """The full (unsharded) weights on the CPU; every rank takes part."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model or self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def _full_state(self, model: StreamCharModel | None = None, opt: torch.optim.Optimizer | None = None) -> tuple[dict, dict]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        model, opt = model or self.model, opt or self.opt
        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return self._model_state(model), get_optimizer_state_dict(model, opt, options=opts)

    def save(self) -> Path:
        states = {"model": self._full_state()} | {name: self._full_state(m, o) for name, (m, o) in self.extra_parts().items()}
        ema = {n: (v.full_tensor() if hasattr(v, "full_tensor") else v).cpu() for n, v in self.ema.items()} if self.ema else {}
        final = self.run / "checkpoints" / f"step-{self.step:07d}"
        if self.rank == 0:
            tmp = final.with_name(f".{final.name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            models = {"model": self.model} | {name: m for name, (m, _) in self.extra_parts().items()}
            optimizers = {}
            for name, (model_state, opt_state) in states.items():
                save_generator(tmp / name, _plain(models[name], model_state), self.prompt, {"stage": self.stage, "step": self.step})
                tensors, optimizers[name] = _flatten_optimizer(opt_state)
                atomic_save_file(tensors, tmp / ("optimizer.safetensors" if name == "model" else f"{name}-optimizer.safetensors"))
            if ema:
                atomic_save_file(ema, tmp / "ema.safetensors")
            atomic_write_text(tmp / "trainer.json", json.dumps({"step": self.step, "stage": self.stage, "optimizer": optimizers.pop("model"),
                                                                 "optimizers": optimizers, "settings": self.s.model_dump()}, indent=1))  # fmt: skip
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for old in sorted((self.run / "checkpoints").glob("step-*"))[: -self.s.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        if self.world > 1:
            dist.barrier()
        return final

    def resume(self) -> int:
        """Continue from the newest checkpoint; a damaged one is named, with the previous good one."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

        found = sorted((self.run / "checkpoints").glob("step-*"))
        if not found:
            return 0
        newest = found[-1]
        try:
            from safetensors.torch import load_file

            model, _, _ = load_generator(newest / "model")
            meta = json.loads((newest / "trainer.json").read_text())
            opt_tensors = load_file(newest / "optimizer.safetensors")
            ema = load_file(newest / "ema.safetensors") if self.ema is not None else None
            extra = {name: (load_generator(newest / name)[0], load_file(newest / f"{name}-optimizer.safetensors")) for name in self.extra_parts()}
        except Exception as e:  # noqa: BLE001 - whatever is damaged, the answer is the same
            previous = f"; the previous one is {found[-2]} (move {newest.name} away to resume from it)" if len(found) > 1 else ""
            raise StreamcharError(f"checkpoint {newest} is damaged ({str(e).splitlines()[0][:200]}){previous}") from None
        opts = StateDictOptions(full_state_dict=True)
        set_model_state_dict(self.model, model.state_dict(), options=opts)
        # parameters that never had a gradient (the video path in the speech-only stage) have no optimizer state
        set_optimizer_state_dict(self.model, self.opt, _unflatten_optimizer(opt_tensors, meta["optimizer"]),
                                 options=StateDictOptions(full_state_dict=True, strict=False))  # fmt: skip
        for name, (module, optimizer) in self.extra_parts().items():
            saved, tensors = extra[name]
            set_model_state_dict(module, saved.state_dict(), options=opts)
            set_optimizer_state_dict(module, optimizer, _unflatten_optimizer(tensors, meta["optimizers"][name]),
                                     options=StateDictOptions(full_state_dict=True, strict=False))  # fmt: skip
        if ema is not None and self.ema is not None:
            for n in self.ema:
                src = ema[n].to(self.ema[n].device)
                if hasattr(self.ema[n], "full_tensor"):
                    from torch.distributed.tensor import distribute_tensor

                    src = distribute_tensor(src, self.ema[n].device_mesh, self.ema[n].placements)
                self.ema[n].copy_(src)
        self.step = int(meta["step"])
        return self.step

    def export(self, out: Path, use_ema: bool = True) -> None:
        """The trained generator (the EMA weights when kept) as a checkpoint directory."""
        model_state = self._model_state()
        if use_ema and self.ema is not None:
            model_state = {**model_state, **{n: (v.full_tensor() if hasattr(v, "full_tensor") else v).cpu() for n, v in self.ema.items()}}
        if self.rank == 0:
            meta = {"stage": self.stage, "step": self.step, "ema": use_ema and self.ema is not None, **self.export_meta()}
            save_generator(out, _plain(self.model, model_state, copy=True), self.prompt, meta)

    def validate(self) -> Path:
        """A short stream through the streaming engine with the current weights."""
        out = self.run / "validation" / f"step-{self.step:07d}.mp4"
        state = self._model_state()
        if self.rank == 0:
            out.parent.mkdir(parents=True, exist_ok=True)
            model, prompt = _plain(self.model, state, copy=True), copy.deepcopy(self.prompt).cpu()
            request = character_request("unseen-0", " ".join(split_sentences("val")[:2]), self.cfg)
            Pipeline.from_modules(model, prompt).stream_to_mp4(request, SessionSettings(steps=self.validation_steps, max_chunks=6), out)
        if self.world > 1:
            dist.barrier()
        return out


def _plain(model: StreamCharModel, state: dict, copy: bool = False) -> StreamCharModel:
    """An unsharded model holding `state`: the model itself when it is neither sharded nor asked
    to be copied (`state` is then its own), else a fresh copy."""
    if not copy and not any(hasattr(p, "full_tensor") for p in model.parameters()):
        return model
    fresh = build_model(model.cfg)
    fresh.load_state_dict(state)
    return fresh


def _to(batch, device: torch.device):  # noqa: ANN001, ANN202
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


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for fqn, st in state["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{fqn}::{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{fqn}::{k}"] = v
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[str, dict] = {}
    for key, v in tensors.items():
        fqn, k = key.split("::")
        state.setdefault(fqn, {})[k] = v
    for key, v in meta["scalars"].items():
        fqn, k = key.split("::")
        state.setdefault(fqn, {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}
