"""Generator checkpoints: one safetensors file (orchestrator, DiT and the tiny prompt encoder)
and a JSON file with the full resolved config, written atomically (a umT5 prompt encoder and a
Qwen2.5 tokenizer in their own transformers directories); loaded by directory or by the name of
a shipped checkpoint (`streamchar/assets/models/<name>/`)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from streamchar.config import Config
from streamchar.config.load import override_config
from streamchar.config.presets import PRESETS
from streamchar.errors import StreamcharError
from streamchar.model.prompt import PromptEncoder, UMT5PromptEncoder, build_prompt_encoder
from streamchar.model.streamchar_model import StreamCharModel, build_model
from streamchar.model.tokenizer import QwenTokenizer, Tokenizer, build_tokenizer
from streamchar.utils.files import atomic_save_file, atomic_write_text
from streamchar.utils.shipped import shipped_dir

WEIGHTS, CONFIG = "model.safetensors", "config.json"


SHIPPED_GENERATORS = ("tiny-student", "tiny-teacher")  # the student ships in the wheel; the teacher in checkpoints/


def resolve_generator_path(name_or_dir: str | Path) -> Path:
    """A checkpoint folder as given, or else the shipped model of that name."""
    path = Path(name_or_dir)
    if not path.exists() and str(name_or_dir) in SHIPPED_GENERATORS:
        return shipped_dir("models", str(name_or_dir))
    return path


def _aliases(module: torch.nn.Module) -> dict[str, str]:
    """Tied weights (the same tensor under two names): each later name -> the first name."""
    first: dict[int, str] = {}
    out = {}
    for name, t in module.state_dict(keep_vars=True).items():
        ptr = t.data_ptr()
        if ptr in first:
            out[name] = first[ptr]
        else:
            first[ptr] = name
    return out


def _parts_in_weights(model: StreamCharModel, prompt: PromptEncoder) -> tuple[tuple[torch.nn.Module, str], ...]:
    """The modules whose weights the checkpoint's safetensors file holds, with their key prefixes
    (a umT5 prompt encoder keeps its own directory)."""
    return ((model, "model."), (prompt, "prompt.")) if prompt.in_checkpoint else ((model, "model."),)


def _keep(configured: str, folder: Path, loaded_from: Path | None, save, field: str) -> None:  # noqa: ANN001
    """A part with its own directory: written into the checkpoint's folder where `configured`
    (its config field) is relative, unless it was loaded from that very place; referenced, never
    written, where `configured` is absolute."""
    if loaded_from is None:
        raise StreamcharError(f"the part {field} names was built in memory, not loaded from a directory; it cannot be saved")
    if Path(configured).is_absolute():
        if not Path(configured).is_dir():
            raise StreamcharError(f"{field} names {configured}, which does not exist: the checkpoint would reference nothing")
        return
    target = folder / configured
    if target.resolve() != Path(loaded_from).resolve():
        save(target)


def save_generator(directory: Path, model: StreamCharModel, prompt: PromptEncoder, extra: dict | None = None) -> None:
    """The weights in one safetensors file and the config beside it. A umT5 prompt encoder and a
    Qwen2.5 tokenizer keep their own transformers directories: written into the checkpoint's
    folder where the config puts them there (unless loaded from that very place), referenced
    where their paths are absolute."""
    tensors = {}
    for module, prefix in _parts_in_weights(model, prompt):
        tied = _aliases(module)
        tensors.update({f"{prefix}{k}": v for k, v in module.state_dict().items() if k not in tied})
    cfg = model.cfg
    if isinstance(prompt, UMT5PromptEncoder):
        _keep(str(cfg.prompt.directory), Path(directory), prompt.directory, prompt.save, "prompt.directory")
    if isinstance(model.tokenizer, QwenTokenizer):
        _keep(str(cfg.orchestrator.tokenizer_directory), Path(directory), model.tokenizer.directory, model.tokenizer.save,
              "orchestrator.tokenizer_directory")
    atomic_save_file(tensors, Path(directory) / WEIGHTS)
    meta = {"format": "streamchar-generator", "preset": model.cfg.preset, "config": model.cfg.model_dump(mode="json"), **(extra or {})}
    atomic_write_text(Path(directory) / CONFIG, json.dumps(meta, indent=1))


def new_generator(cfg: Config, seed: int = 0, folder: Path | None = None,
                  tokenizer: Tokenizer | None = None) -> tuple[StreamCharModel, PromptEncoder]:
    """A model from `seed` with its transcript tokenizer (`tokenizer`, else the one `cfg` names),
    and the prompt encoder `cfg.prompt` names (`folder`: a checkpoint's, where a umT5 encoder and
    a Qwen2.5 tokenizer may live)."""
    tokenizer = tokenizer or build_tokenizer(cfg, folder)
    torch.manual_seed(seed)
    return build_model(cfg, tokenizer=tokenizer), build_prompt_encoder(cfg, seed, folder)


def _saved_config(meta: dict, where: Path) -> Config:
    """The config a checkpoint was trained with, as saved: not layered on today's preset, so that a
    field added since (whose default keeps the old behaviour) does not change an old model."""
    from pydantic import ValidationError

    from streamchar.config.load import format_validation_error, upgrade_saved_config

    if meta.get("preset") not in PRESETS or not isinstance(meta.get("config"), dict):
        raise StreamcharError(f"{where} names no known preset and config (presets: {', '.join(sorted(PRESETS))})")
    try:
        return Config.model_validate({**upgrade_saved_config(meta["config"]), "preset": meta["preset"]})
    except ValidationError as e:
        raise StreamcharError(f"{where} holds an invalid config: {format_validation_error(e)}") from None


# no weights depend on them
READING_FIELDS = ("orchestrator.reading", "orchestrator.plan", "orchestrator.lookahead_words", "stream.history_seconds")
# switched on, each adds weights (under this prefix) that leave the model's output as it was: zero-initialised, or a training head
GROWN_FIELDS = {"dit.audio_to_video": "model.dit.audio_to_video.", "dit.mouth_head": "model.dit.mouth_head."}
# changed, the weights under this prefix start afresh: a head nothing generated depends on (added, resized or
# removed), or the token embedding of another tokenizer of the same vocabulary size (the rest of the model goes on)
FRESH_FIELDS = {"orchestrator.durations": "model.orchestrator.durations.", "orchestrator.tokenizer": "model.orchestrator.backbone.embed_tokens."}


def config_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted names of the fields where two config dumps differ."""
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out += config_differences(x, y, f"{prefix}{k}.")
        elif x != y:
            out.append(f"{prefix}{k}")
    return out


def _field(cfg: Config, dotted: str) -> object:
    value: object = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def read_generator_config(name_or_dir: str | Path) -> tuple[Path, dict, Config]:
    """A checkpoint's folder, its saved metadata and the config it was trained with."""
    path = resolve_generator_path(name_or_dir)
    if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        raise StreamcharError(f"no generator checkpoint at {name_or_dir}: expected {CONFIG} and {WEIGHTS}")
    try:
        meta = json.loads((path / CONFIG).read_text())
    except json.JSONDecodeError as e:
        raise StreamcharError(f"{path / CONFIG} is not valid JSON: {e}") from None
    if meta.get("format") != "streamchar-generator":
        raise StreamcharError(f"{path / CONFIG} is not a streamchar generator checkpoint (format {meta.get('format')!r})")
    return path, meta, _saved_config(meta, path / CONFIG)


def _grown_prefixes(path: Path, saved: Config, config: Config) -> list[str]:
    """The weights `config`'s aids add to the saved model; an error where `config` differs from
    the saved config in anything the weights depend on."""
    changed = [f for f in config_differences(saved.model_dump(), config.model_dump()) if not f.startswith(READING_FIELDS)]  # a field or one inside it
    fresh = sorted({p for f in changed for field, p in FRESH_FIELDS.items() if f == field or f.startswith(field + ".")})
    changed = [f for f in changed if not f.startswith(tuple(FRESH_FIELDS))]
    grown = [GROWN_FIELDS[f] for f in changed if f in GROWN_FIELDS and _field(config, f) and not _field(saved, f)] + fresh
    changed = [f for f in changed if f not in GROWN_FIELDS or GROWN_FIELDS[f] not in grown]
    if changed:
        raise StreamcharError(f"{path} was trained with another model config (differs in {', '.join(changed)})")
    return grown


def load_generator(name_or_dir: str | Path, config: Config | str | Path | None = None) -> tuple[StreamCharModel, PromptEncoder, dict]:
    """With `config` (a Config, or a YAML file of fields layered on the saved config), the model
    is built with it instead of the saved one, where the two differ only in how the transcript is
    read (`READING_FIELDS`), which no weight depends on, or in aids switched on whose new weights
    leave the output as it was (`GROWN_FIELDS`): a stream may read its text another way, and a
    training run may go on from a checkpoint with a changed text bias or a new aid."""
    path, meta, cfg = read_generator_config(name_or_dir)
    grown: list[str] = []
    if config is not None:
        config = config if isinstance(config, Config) else override_config(cfg, config)
        grown = _grown_prefixes(path, cfg, config)
        cfg = config
    try:
        state = load_file(path / WEIGHTS)
    except (SafetensorError, OSError) as e:
        raise StreamcharError(f"{path / WEIGHTS} is damaged: {e}") from None
    model, prompt = new_generator(cfg, folder=path)
    for module, prefix in _parts_in_weights(model, prompt):
        part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix) and not k.startswith(tuple(grown))}
        try:
            missing, unexpected = module.load_state_dict(part, strict=False)
        except RuntimeError as e:
            raise StreamcharError(f"{path / WEIGHTS} does not fit its config: {str(e).splitlines()[-1].strip()}") from None
        missing = [k for k in missing if k not in _aliases(module) and not (prefix + k).startswith(tuple(grown))]
        if missing or unexpected:
            raise StreamcharError(f"{path / WEIGHTS} does not fit its config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval(), prompt.eval(), meta
