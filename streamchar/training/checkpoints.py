"""Resumable checkpoints, one layout for every stage.

`<run>/checkpoints/step-XXXXXXX/` holds, for each trained part (`model`, distillation's `fake`),
`<part>.safetensors` (its weights), `<part>-optimizer.safetensors` (AdamW's moments) and, where
the part keeps one, `<part>-ema.safetensors`; `trainer.json` holds the step, the optimisers'
groups and scalars, the EMA steps, the stage's own state and its settings; `rng.safetensors` the
CPU generator. The folder is written hidden and renamed into place, so that a crash never
leaves half a checkpoint; the newest `keep` are kept.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from streamchar.errors import StreamcharError
from streamchar.utils.files import atomic_save_file, atomic_write_text


def step_folder(run: Path, step: int) -> Path:
    return Path(run) / "checkpoints" / f"step-{step:07d}"


def newest_checkpoint(run: Path) -> tuple[Path | None, Path | None]:
    """The newest checkpoint of a run and the one before it (None where there is none)."""
    found = sorted((Path(run) / "checkpoints").glob("step-*"))
    return (found[-1] if found else None), (found[-2] if len(found) > 1 else None)


def _unshared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tied weights (one tensor under two names) copied apart: safetensors stores each once."""
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        out[k] = v.clone() if v.data_ptr() in seen else v
        seen.add(v.data_ptr())
    return out


def write_checkpoint(run: Path, step: int, files: dict[str, dict[str, torch.Tensor]], meta: dict, keep: int) -> Path:
    """`files`: file stem -> tensors (`model`, `model-optimizer`, `model-ema`, ...)."""
    final = step_folder(run, step)
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for stem, tensors in files.items():
        atomic_save_file(_unshared(tensors), tmp / f"{stem}.safetensors")
    atomic_save_file({"cpu": torch.get_rng_state()}, tmp / "rng.safetensors")
    atomic_write_text(tmp / "trainer.json", json.dumps({"step": step, **meta}, indent=1, default=str))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted((Path(run) / "checkpoints").glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_checkpoint(folder: Path, stems: list[str], previous: Path | None = None) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """The files `stems` names and the metadata; a damaged checkpoint is named, with the previous
    good one to fall back on."""
    from safetensors.torch import load_file

    try:
        meta = json.loads((folder / "trainer.json").read_text())
        files = {stem: load_file(folder / f"{stem}.safetensors") for stem in stems}
        torch.set_rng_state(load_file(folder / "rng.safetensors")["cpu"])
    except Exception as e:  # noqa: BLE001 - whatever is damaged, the answer is the same
        fallback = f"; the previous one is {previous} (move {folder.name} away to resume from it)" if previous else ""
        raise StreamcharError(f"checkpoint {folder} is damaged ({str(e).splitlines()[0][:200]}){fallback}") from None
    return files, meta


def flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer state dict as tensors (for safetensors) and JSON (groups and scalars)."""
    tensors, scalars = {}, {}
    for fqn, st in state["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{fqn}::{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{fqn}::{k}"] = v
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[str, dict] = {}
    for key, v in [*tensors.items(), *meta["scalars"].items()]:
        fqn, k = key.split("::")
        state.setdefault(fqn, {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}
