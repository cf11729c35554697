"""The whole generator: orchestrator (with its pointer) and joint DiT, built from one config,
on any device including `meta` (for counting parameters of the paper preset without memory)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from streamchar.config import Config
from streamchar.errors import StreamcharError
from streamchar.model.dit import AudioInput, ConditionCache, ConditionInput, JointDiT, VideoInput
from streamchar.model.orchestrator import Orchestrator, OrchestratorInput, OrchestratorOutput, OrchestratorPrefix
from streamchar.model.tokenizer import Tokenizer
from streamchar.utils.precision import computing_in


class StreamCharModel(nn.Module):
    def __init__(self, cfg: Config, tokenizer: Tokenizer | None = None):
        """`tokenizer`: the transcript tokenizer the orchestrator was trained with (None: the
        preset's own, where it needs no directory)."""
        super().__init__()
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.dit = JointDiT(cfg.dit, cfg.video.latent_channels, cfg.audio.latent_channels)
        self.orchestrator = Orchestrator(cfg.orchestrator, cfg.audio.latent_channels, cfg.dit.hidden_dim)

    def in_precision(self, dtype: torch.dtype) -> StreamCharModel:
        """The model's weights in `dtype`, but for the duration head: it computes in float32
        (`DurationHead.forward`), as its starts add up seconds over hundreds of words."""
        self.to(dtype=dtype)
        if self.orchestrator.durations is not None:
            self.orchestrator.durations.float()
        return self

    def check_orchestrator_window(self, x: OrchestratorInput) -> None:
        n = x.reference_audio.shape[2] + x.text_ids.shape[1] + x.history_audio.shape[2] + x.noisy_audio.shape[2]
        if n > self.cfg.orchestrator.context_window:
            raise StreamcharError(f"the orchestrator's input is {n} positions (reference {x.reference_audio.shape[2]}, transcript "
                                  f"{x.text_ids.shape[1]} tokens, history {x.history_audio.shape[2]}, chunk {x.noisy_audio.shape[2]}); "
                                  f"its window is {self.cfg.orchestrator.context_window}: cut the transcript with the pointer")  # fmt: skip

    def velocity(self, video: VideoInput | None, orchestrator_input: OrchestratorInput, prompt: torch.Tensor,
                 cache: ConditionCache | None = None, conditions: ConditionInput | None = None,
                 condition_keep: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor, OrchestratorOutput]:
        """One denoising evaluation: the orchestrator turns the noisy audio (and the context) into
        c_a, the DiT predicts both velocities. (Through `__call__`, so FSDP's root hooks run.)"""
        return self(video, orchestrator_input, prompt, cache, conditions, condition_keep=condition_keep)

    def velocity_and_mouth(self, video: VideoInput, orchestrator_input: OrchestratorInput, prompt: torch.Tensor,
                           conditions: ConditionInput | None = None,
                           condition_keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, OrchestratorOutput, torch.Tensor | None]:
        """`velocity` and the mouth head's (B, F, 3) shapes (None without the head): pretraining's aid."""
        return self(video, orchestrator_input, prompt, None, conditions, mouth=True, condition_keep=condition_keep)

    # The streaming engine's calls, one per part so that it can time them. Root methods, not
    # `self.dit` or `self.orchestrator` directly: under FSDP2 (`sharding.shard_model` registers
    # them) the root's own parameters are gathered for them as they are for `forward`.
    ENGINE_METHODS = ("condition_cache", "encode_prefix", "orchestrate", "dit_velocity", "word_times")

    def condition_cache(self, conditions: ConditionInput, prompt: torch.Tensor) -> ConditionCache | None:
        return self.dit.condition_cache(conditions, prompt)

    def encode_prefix(self, x: OrchestratorInput) -> OrchestratorPrefix:
        self.check_orchestrator_window(x)
        return self.orchestrator.encode_prefix(x)

    def orchestrate(self, x: OrchestratorInput, prefix: OrchestratorPrefix | None = None) -> OrchestratorOutput:
        self.check_orchestrator_window(x)
        return self.orchestrator(x, prefix=prefix)

    def word_times(self, ids: list[int], word_numbers: list[int], words: int, reference_audio: torch.Tensor) -> list[tuple[float, float]]:
        """The learned plan's (start, end) of each word (`Orchestrator.word_times`), through the
        root so that a sharded model gathers its weights first."""
        with computing_in(self, reference_audio.device):
            return self.orchestrator.word_times(ids, word_numbers, words, reference_audio)

    def dit_velocity(self, video: VideoInput, timestep: torch.Tensor, prompt: torch.Tensor, audio: AudioInput,
                     cache: ConditionCache | None) -> tuple[torch.Tensor, torch.Tensor]:
        dv, da = self.dit(video, timestep, prompt, audio, cache=cache)
        return dv, da

    def forward(self, video: VideoInput | None, orchestrator_input: OrchestratorInput, prompt: torch.Tensor,
                cache: ConditionCache | None = None, conditions: ConditionInput | None = None, mouth: bool = False,
                condition_keep: torch.Tensor | None = None) -> tuple:
        """`condition_keep` (B,): 0 where the DiT gets no orchestrator condition (training's
        condition dropout, for text guidance)."""
        self.check_orchestrator_window(orchestrator_input)
        orch = self.orchestrator(orchestrator_input)
        condition = orch.condition if condition_keep is None else orch.condition * condition_keep.to(orch.condition)[:, None, None]
        audio = AudioInput(orchestrator_input.noisy_audio, condition)
        out = self.dit(video, orchestrator_input.timestep, prompt, audio, conditions=conditions, cache=cache, mouth=mouth)
        return (out[0], out[1], orch, out[2]) if mouth else (out[0], out[1], orch)


def build_model(cfg: Config, device: str | torch.device = "cpu", tokenizer: Tokenizer | None = None) -> StreamCharModel:
    with torch.device(device):
        return StreamCharModel(cfg, tokenizer)


def parameter_counts(model: StreamCharModel) -> OrderedDict[str, int]:
    """Per part; the Wan2.2 part is exactly what a WanTransformer3DModel state dict fills."""
    counts: OrderedDict[str, int] = OrderedDict()

    def add(name: str, params) -> None:  # noqa: ANN001
        counts[name] = counts.get(name, 0) + sum(p.numel() for p in params)

    for name, p in model.dit.named_parameters():
        if name.startswith("audio_to_video."):
            add("dit: frame-aligned audio to video (tiny aid)", [p])
        elif name.startswith("mouth_head."):
            add("dit: mouth head (tiny training aid)", [p])
        elif name.startswith("audio_"):
            add("dit: audio encoder/decoder (paper)", [p])
        elif ".ffn_audio." in name:
            add("dit: audio experts (paper)", [p])
        else:
            add("dit: Wan2.2 part", [p])
    for name, p in model.orchestrator.named_parameters():
        if name.startswith("backbone."):
            add("orchestrator: Qwen2 backbone", [p])
        elif name.startswith("pointer."):
            add("orchestrator: progress-aware pointer (paper)", [p])
        else:
            add("orchestrator: audio in/out and timestep (paper)", [p])
    counts["total"] = sum(v for k, v in counts.items())
    return counts
