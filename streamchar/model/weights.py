"""Loading pretrained weights from local directories: a diffusers-format Wan2.2 transformer into
the DiT's video path, a transformers-format Qwen2 / Qwen2.5 into the orchestrator's backbone.
Nothing is downloaded; a directory whose dimensions do not match the preset is refused with
the mismatching fields named."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from streamchar.config.schema import DiTConfig
from streamchar.errors import StreamcharError
from streamchar.model.dit import FREQ_DIM, JointDiT


def _read_config(directory: Path, what: str) -> dict:
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise StreamcharError(f"no {what} at {directory}: expected config.json and safetensors weights (save_pretrained layout)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise StreamcharError(f"{path} is not valid JSON: {e}") from None


def read_safetensors_dir(directory: Path, stem: str) -> dict[str, torch.Tensor]:
    """One `<stem>.safetensors` file or the shards named by `<stem>.safetensors.index.json`."""
    directory = Path(directory)
    single, index = directory / f"{stem}.safetensors", directory / f"{stem}.safetensors.index.json"
    try:
        if single.is_file():
            return load_file(single)
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(load_file(directory / shard))
            return state
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as e:
        raise StreamcharError(f"weights in {directory} are damaged or incomplete: {e}") from None
    raise StreamcharError(f"no {stem}.safetensors (or its index) in {directory}")


def wan_config_problems(wan: dict, cfg: DiTConfig, video_channels: int) -> list[str]:
    want = {
        "num_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads, "attention_head_dim": cfg.head_dim,
        "ffn_dim": cfg.ffn_dim, "text_dim": cfg.text_dim, "in_channels": video_channels, "out_channels": video_channels,
        "patch_size": list(cfg.patch_size), "freq_dim": FREQ_DIM,
    }  # fmt: skip
    problems = [f"{k} {wan.get(k)} (preset needs {v})" for k, v in want.items()
                if (list(wan[k]) if k == "patch_size" and k in wan else wan.get(k)) != v]
    if wan.get("image_dim") or wan.get("added_kv_proj_dim"):
        problems.append("an image-conditioned (I2V) transformer; StreamChar uses the TI2V layout without an image encoder")
    return problems


def load_wan_into(dit: JointDiT, directory: Path) -> dict:
    """Wan2.2 transformer weights into the video path; each block's audio expert starts as a
    copy of its video FFN (paper §5.1). Returns what was loaded."""
    wan = _read_config(directory, "Wan transformer")
    if wan.get("_class_name") not in (None, "WanTransformer3DModel"):
        raise StreamcharError(f"{directory} holds a {wan.get('_class_name')}, not a WanTransformer3DModel")
    problems = wan_config_problems(wan, dit.cfg, dit.video_channels)
    if problems:
        raise StreamcharError(f"Wan transformer in {directory} does not fit the preset: " + "; ".join(problems))
    state = read_safetensors_dir(directory, "diffusion_pytorch_model")
    return load_wan_state_dict(dit, state, cross_attn_norm=wan.get("cross_attn_norm", True))


def load_wan_state_dict(dit: JointDiT, state: dict[str, torch.Tensor], cross_attn_norm: bool = True) -> dict:
    own = dit.state_dict()
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if k in own and own[k].shape != v.shape]
    if unexpected or wrong:
        raise StreamcharError(f"Wan weights do not fit the DiT (unexpected {unexpected[:3]}, wrong shapes {wrong[:3]})")
    video_keys = [k for k in own if not k.startswith("audio_") and ".ffn_audio." not in k]
    missing = [k for k in video_keys if k not in state and not (k.endswith(("norm2.weight", "norm2.bias")) and not cross_attn_norm)]
    if missing:
        raise StreamcharError(f"Wan weights lack {len(missing)} tensors of the video path, e.g. {missing[:3]}")
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v)
        for k in own:
            if ".ffn_audio." in k:
                own[k].copy_(own[k.replace(".ffn_audio.", ".ffn.")])
    return {"tensors": len(state), "audio_experts_from_video_ffn": sum(".ffn_audio." in k for k in own)}
