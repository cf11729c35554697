"""One training loop for every stage: pretraining, distillation, durations, the codecs and the
evaluation networks are objectives it runs (docs/training/README.md, "One loop").

The loop owns what every stage shares: the device and processes (`Runtime`), FSDP2 over
processes, bf16 autocast on CUDA, gradient accumulation, AdamW per trained part, the learning
rate (transformers' warm-up and cosine to a floor), an EMA (diffusers' `EMAModel`), the log
(`RunLog`), checkpoints (one layout, `training/checkpoints.py`), resume and the calls to export
and validate. An objective says what is trained (`parts`: each module with its optimiser's
settings, frozen parts frozen before the loop builds the optimisers) and what a step computes.

Every random draw of a generator stage's step comes from generators seeded by its step, so a
resumed run repeats what an uninterrupted one does; the loop also keeps torch's CPU generator
in each checkpoint for the objectives that draw from it.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from streamchar.errors import StreamcharError
from streamchar.training.checkpoints import flatten_optimizer, newest_checkpoint, read_checkpoint, unflatten_optimizer, write_checkpoint
from streamchar.training.run_log import RunLog


@dataclass(frozen=True)
class Runtime:
    """Where a run computes: the device of this process, its rank among `world`, and autocast."""

    device: torch.device
    rank: int = 0
    world: int = 1
    autocast: bool = False

    @classmethod
    def create(cls, precision: str = "auto", threads: int | None = None, device: str | None = None) -> Runtime:
        """CUDA (this process's `LOCAL_RANK`) when present unless `device` says otherwise."""
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
        use_cuda = torch.cuda.is_available() and device != "cpu"
        where = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if use_cuda else "cpu")
        if where.type == "cuda":
            torch.cuda.set_device(where)
        if threads:
            torch.set_num_threads(threads)
        return cls(where, rank, world, precision == "bf16" or (precision == "auto" and where.type == "cuda"))

    def autocast_context(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast)


@dataclass
class Part:
    """A trained module and its optimiser: AdamW over the module's parameters that require a
    gradient, clipped to `clip` (None: not clipped), on the loop's schedule where `scheduled`,
    averaged by an EMA where `ema_decay` > 0; `shard` splits it over processes (FSDP2)."""

    module: nn.Module
    lr: float
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    clip: float | None = None
    scheduled: bool = True
    ema_decay: float = 0.0
    shard: Callable[[nn.Module], object] | None = None


@dataclass(frozen=True)
class LoopSettings:
    steps: int
    warmup: int = 0
    min_lr_ratio: float = 0.0
    grad_accum: int = 1
    log_every: int = 10
    save_every: int = 200
    keep_checkpoints: int = 3
    validate_every: int = 0


class Objective(ABC):
    """A training stage as the loop runs it."""

    tag = "train"  # the TensorBoard group
    rng: np.random.Generator | None = None  # a stage drawing its data from one generator (the codecs, the evaluation networks)

    @abstractmethod
    def parts(self) -> dict[str, Part]:
        """The trained parts, `model` first; called once, after anything frozen is frozen."""

    def losses(self, step: int, micro: int) -> dict[str, torch.Tensor | float]:
        """The loss parts of one micro-batch, `loss` their weighted sum (the others may be plain numbers)."""
        raise NotImplementedError(f"{type(self).__name__} defines train_step instead")

    def train_step(self, step: int, loop: TrainLoop) -> dict[str, float]:
        """One optimiser step: by default the micro-batches' losses, then the model's update."""
        parts = loop.accumulate(step, self.losses)
        norm = loop.update("model")
        return parts if norm is None else {**parts, "grad_norm": norm}

    def state(self) -> dict:
        """What else a checkpoint must hold to resume exactly (JSON): the data generator's state."""
        return {"rng": self.rng.bit_generator.state} if self.rng is not None else {}

    def load_state(self, state: dict) -> None:
        """Take back what `state` returned."""
        if self.rng is not None and "rng" in state:
            self.rng.bit_generator.state = state["rng"]

    def meta(self) -> dict:
        """Recorded in each checkpoint: the stage and its settings."""
        return {}

    def validate(self, loop: TrainLoop) -> object:
        """A look at the model mid-run (a generator stage renders a stream)."""
        return None

    def export(self, loop: TrainLoop, out: Path) -> None:
        """What the run leaves in `out`."""
        raise NotImplementedError(f"{type(self).__name__} exports nothing")


class TrainLoop:
    def __init__(self, objective: Objective, s: LoopSettings, run: Path, rt: Runtime, command: str = ""):
        self.objective, self.s, self.run, self.rt, self.command = objective, s, Path(run), rt, command
        self.parts = objective.parts()
        self._named: dict[str, list[tuple[str, nn.Parameter]]] = {}
        for name, part in self.parts.items():
            part.module.to(rt.device).train()
            if rt.world > 1:
                if part.shard is None:
                    raise StreamcharError(f"the {objective.tag} stage trains in one process; run it without torchrun")
                part.shard(part.module)
            self._named[name] = [(n, p) for n, p in part.module.named_parameters() if p.requires_grad]
        self.opts = {name: torch.optim.AdamW([p for _, p in self._named[name]], lr=part.lr, weight_decay=part.weight_decay, betas=part.betas)
                     for name, part in self.parts.items()}  # fmt: skip
        for opt in self.opts.values():  # the schedule's base (saved with the optimiser, so set before any resume)
            for group in opt.param_groups:
                group["initial_lr"] = group["lr"]
        self.emas = {name: _ema(self._params(name), part.ema_decay) for name, part in self.parts.items() if part.ema_decay}
        self.step = 0

    def _params(self, name: str) -> list[nn.Parameter]:
        return [p for _, p in self._named[name]]

    # one step --------------------------------------------------------------------------------
    def accumulate(self, step: int, losses: Callable[[int, int], dict[str, torch.Tensor | float]]) -> dict[str, float]:
        """Forward and backward over the step's micro-batches; their mean loss parts."""
        parts: dict[str, float] = {}
        n = self.s.grad_accum
        for micro in range(n):
            out = losses(step, micro)
            (out["loss"] / n).backward()
            for k, v in out.items():
                parts[k] = parts.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v) / n
        return parts

    def update(self, name: str) -> float | None:
        """Clip, step and clear one part's optimiser and move its EMA; the gradient norm before
        clipping where the part clips."""
        part, params = self.parts[name], self._params(name)
        norm = float(nn.utils.clip_grad_norm_(params, part.clip)) if part.clip else None
        self.opts[name].step()
        self.opts[name].zero_grad(set_to_none=True)
        if name in self.emas:
            self.emas[name].step(params)
        return norm

    def _schedules(self) -> list:
        """The library's warm-up and cosine, read one step ahead: its step 0 has no learning rate,
        and here the first step trains at lr / warmup."""
        from transformers.optimization import get_cosine_with_min_lr_schedule_with_warmup

        out = []
        for name, part in self.parts.items():
            if part.scheduled:
                out.append(get_cosine_with_min_lr_schedule_with_warmup(self.opts[name], self.s.warmup, self.s.steps,
                                                                       min_lr_rate=self.s.min_lr_ratio, last_epoch=self.step))  # fmt: skip
        return out

    # the loop -------------------------------------------------------------------------------------
    def train(self, on_step: Callable[[int, int, dict], None] | None = None, stop_after: int | None = None) -> dict:
        """Steps until `steps` (or `stop_after`); `on_step(step, steps, row)` after each. The last row."""
        log = RunLog(self.run, self.objective.tag, self.command, enabled=self.rt.rank == 0)
        schedules = self._schedules()
        t0, first, last = time.perf_counter(), self.step, {}
        while self.step < self.s.steps:
            lr = self.opts["model"].param_groups[0]["lr"]
            parts = self.objective.train_step(self.step, self)
            for schedule in schedules:
                schedule.step()
            self.step += 1
            last = {"step": self.step, **parts, "lr": lr, "steps_per_s": (self.step - first) / (time.perf_counter() - t0)}
            if self.step % self.s.log_every == 0 or self.step == self.s.steps:
                log.write(last)
            if on_step:
                on_step(self.step, self.s.steps, last)
            if self.step % self.s.save_every == 0 or self.step == self.s.steps:
                self.save()
            if self.s.validate_every and self.step % self.s.validate_every == 0:
                self.validate()
            if stop_after is not None and self.step >= stop_after:
                break
        log.close()
        for part in self.parts.values():
            part.module.eval()
        return last

    def validate(self) -> object:
        return self.objective.validate(self)

    def export(self, out: Path, **options: object) -> None:
        self.objective.export(self, Path(out), **options)  # type: ignore[call-arg]

    # weights --------------------------------------------------------------------------------------
    def weights(self, name: str = "model", ema: bool = False) -> dict[str, torch.Tensor]:
        """A part's full (unsharded) weights on the CPU, its EMA's where asked and kept; every
        process takes part."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        module = self.parts[name].module
        state = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if ema and name in self.emas:
            state = {**state, **self._ema_weights(name)}
        return state

    def _ema_weights(self, name: str) -> dict[str, torch.Tensor]:
        return {n: _full(v) for (n, _), v in zip(self._named[name], self.emas[name].shadow_params, strict=True)}

    def save(self) -> Path:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        files, opt_states, full = {}, {}, StateDictOptions(full_state_dict=True, cpu_offload=True)
        for name, part in self.parts.items():  # every process gathers; the first writes
            files[name] = self.weights(name)
            opt_states[name] = get_optimizer_state_dict(part.module, self.opts[name], options=full)
            if name in self.emas:
                files[f"{name}-ema"] = self._ema_weights(name)
        optimizers = {}
        if self.rt.rank == 0:
            for name, state in opt_states.items():
                files[f"{name}-optimizer"], optimizers[name] = flatten_optimizer(state)
        meta = {"optimizers": optimizers, "ema_steps": {name: ema.optimization_step for name, ema in self.emas.items()},
                "objective": self.objective.state(), **self.objective.meta()}  # fmt: skip
        folder = write_checkpoint(self.run, self.step, files, meta, self.s.keep_checkpoints) if self.rt.rank == 0 else None
        if self.rt.world > 1:
            dist.barrier()
        return folder or self.run

    def resume(self) -> int:
        """Continue from the newest checkpoint in the run folder; the step it resumed at (0: none)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

        newest, previous = newest_checkpoint(self.run)
        if newest is None:
            return 0
        stems = [stem for name in self.parts for stem in (name, f"{name}-optimizer", *([f"{name}-ema"] if name in self.emas else []))]
        files, meta = read_checkpoint(newest, stems, previous)
        for name, part in self.parts.items():
            set_model_state_dict(part.module, files[name], options=StateDictOptions(full_state_dict=True))
            # parameters that never had a gradient (the video path of the speech-only stage) have no optimiser state
            set_optimizer_state_dict(part.module, self.opts[name], unflatten_optimizer(files[f"{name}-optimizer"], meta["optimizers"][name]),
                                     options=StateDictOptions(full_state_dict=True, strict=False))  # fmt: skip
            if name in self.emas:
                _load_ema(self.emas[name], [files[f"{name}-ema"][n] for n, _ in self._named[name]], meta["ema_steps"][name])
        self.objective.load_state(meta.get("objective", {}))
        self.step = int(meta["step"])
        return self.step


def _ema(params: list[nn.Parameter], decay: float):  # noqa: ANN202 - diffusers' class, imported late
    from diffusers.training_utils import EMAModel

    return EMAModel(params, decay=decay)


def _load_ema(ema, saved: list[torch.Tensor], steps: int) -> None:  # noqa: ANN001
    for shadow, src in zip(ema.shadow_params, saved, strict=True):
        if hasattr(shadow, "device_mesh"):  # sharded: this process's piece of the full tensor
            from torch.distributed.tensor import distribute_tensor

            src = distribute_tensor(src.to(shadow.device), shadow.device_mesh, shadow.placements)
        shadow.copy_(src)
    ema.optimization_step = steps


def _full(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().cpu()
