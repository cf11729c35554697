"""FSDP2 on two CPU processes (gloo): sharded forward and backward equal the unsharded ones,
for the training pass and for Stage II's rollout through the streaming engine's chunk loop."""

import pytest
import torch
import two_ranks

pytestmark = pytest.mark.slow  # training loops and several processes: the slow tier


def _inputs(cfg):
    from streamchar.model.dit import VideoInput
    from streamchar.model.orchestrator import OrchestratorInput

    g = torch.Generator().manual_seed(5)
    c = cfg.audio.latent_channels
    x = OrchestratorInput(torch.randn(1, c, 8, generator=g), torch.randint(3, 60, (1, 12), generator=g), torch.ones(1, 12),
                          torch.arange(12.0)[None] / 3, torch.tensor([4.0]), torch.randn(1, c, 16, generator=g),
                          torch.randn(1, c, 33, generator=g), torch.tensor([700.0]))  # fmt: skip
    video = VideoInput(torch.randn(1, cfg.video.latent_channels, 9, 8, 8, generator=g))
    return video, x, torch.randn(1, 4, cfg.dit.text_dim, generator=g)


def _loss(model, cfg):
    video, x, prompt = _inputs(cfg)
    dv, da, orch = model.velocity(video, x, prompt)
    return dv.square().mean() + da.square().mean() + orch.progress.sum()


def _rollout_loss(model, cfg):
    """Two chunks streamed without a graph, then one with a graph through its exit step, as Stage
    II rolls out: the engine calls the model's parts (condition cache, orchestrator, DiT), not
    its forward."""
    from streamchar.streaming.engine import SessionSettings, StreamSession

    g = torch.Generator().manual_seed(6)
    z, h, w = cfg.video.latent_channels, cfg.video.height // 16, cfg.video.width // 16
    session = StreamSession.from_latents(model, SessionSettings(steps=2, seed=3), "glue the sheet to the dark blue background",
                                         torch.randn(1, 4, cfg.dit.text_dim, generator=g), torch.randn(1, z, 1, h, w, generator=g),
                                         torch.randn(1, cfg.audio.latent_channels, 16, generator=g))  # fmt: skip
    with torch.no_grad():
        session.next_chunk(0)
    scored = [session.next_chunk(k, exit_step=2) for k in (1, 2)]  # two graphs through the root before one backward
    return sum(c.video.square().mean() + c.audio.square().mean() for c in scored)


def _worker(rank: int, world: int, port: int, loss_name: str, bf16: bool, out: str) -> None:
    two_ranks.join(rank, world, port)
    from streamchar.config import load_config
    from streamchar.model.sharding import shard_model
    from streamchar.model.streamchar_model import build_model

    cfg = load_config("tiny")
    torch.manual_seed(0)
    model = shard_model(build_model(cfg), param_dtype=torch.bfloat16 if bf16 else None)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # as the trainer runs it on a GPU
        loss = LOSSES[loss_name](model, cfg)
    loss.backward()
    grads = {n: p.grad.full_tensor() for n, p in model.named_parameters() if p.grad is not None}
    if rank == 0:
        torch.save({"loss": loss.detach(), "grads": grads}, out)
    two_ranks.leave()


LOSSES = {"training": _loss, "rollout": _rollout_loss}


def _sharded(tmp_path, monkeypatch, loss_name: str, bf16: bool = False) -> dict:
    out = tmp_path / "sharded.pt"
    two_ranks.spawn_two(monkeypatch, _worker, loss_name, bf16, out=str(out))
    return torch.load(out, weights_only=True)


def _unsharded(loss_name: str):
    from streamchar.config import load_config
    from streamchar.model.streamchar_model import build_model

    cfg = load_config("tiny")
    torch.manual_seed(0)
    model = build_model(cfg)
    loss = LOSSES[loss_name](model, cfg)
    loss.backward()
    return loss.detach(), dict(model.named_parameters())


@pytest.mark.parametrize("loss_name", list(LOSSES))
def test_sharded_forward_backward_match_unsharded(tmp_path, loss_name, monkeypatch):
    sharded = _sharded(tmp_path, monkeypatch, loss_name)
    loss, params = _unsharded(loss_name)
    torch.testing.assert_close(sharded["loss"], loss, atol=1e-5, rtol=1e-5)
    assert len(sharded["grads"]) == sum(p.grad is not None for p in params.values()) > 50
    for name, g in sharded["grads"].items():
        torch.testing.assert_close(g, params[name].grad, atol=1e-5, rtol=1e-4, msg=name)


def test_bf16_sharding_runs_under_autocast(tmp_path, monkeypatch):
    """Weights gathered in bf16, inputs left in fp32 for autocast (the timestep keeps its
    precision), the pointer in fp32: the loss stays near the fp32 one and every gradient arrives."""
    sharded = _sharded(tmp_path, monkeypatch, "training", bf16=True)
    loss, params = _unsharded("training")
    torch.testing.assert_close(sharded["loss"], loss, atol=0, rtol=2e-2)
    assert len(sharded["grads"]) == sum(p.grad is not None for p in params.values())
    assert all(torch.isfinite(g).all() for g in sharded["grads"].values())
