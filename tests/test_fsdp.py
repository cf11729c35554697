"""FSDP2 on two CPU processes (gloo): sharded forward and backward equal the unsharded ones,
for the training pass and for Stage II's rollout through the streaming engine's chunk loop."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


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
        session.next_chunk(1)
    chunk = session.next_chunk(2, exit_step=2)
    return chunk.video.square().mean() + chunk.audio.square().mean()


def _worker(rank: int, world: int, port: int, out: str, loss_name: str = "training") -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    from streamchar.config import load_config
    from streamchar.model.sharding import shard_model
    from streamchar.model.streamchar_model import build_model

    cfg = load_config("tiny")
    torch.manual_seed(0)
    model = shard_model(build_model(cfg))
    loss = LOSSES[loss_name](model, cfg)
    loss.backward()
    grads = {n: p.grad.full_tensor() for n, p in model.named_parameters() if p.grad is not None}
    if rank == 0:
        torch.save({"loss": loss.detach(), "grads": grads}, out)
    dist.barrier()
    dist.destroy_process_group()


LOSSES = {"training": _loss, "rollout": _rollout_loss}


@pytest.mark.parametrize("loss_name", list(LOSSES))
def test_sharded_forward_backward_match_unsharded(tmp_path, loss_name):
    from streamchar.config import load_config
    from streamchar.model.streamchar_model import build_model

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "sharded.pt"
    mp.spawn(_worker, args=(2, port, str(out), loss_name), nprocs=2, join=True)
    sharded = torch.load(out, weights_only=True)

    cfg = load_config("tiny")
    torch.manual_seed(0)
    model = build_model(cfg)
    loss = LOSSES[loss_name](model, cfg)
    loss.backward()
    torch.testing.assert_close(sharded["loss"], loss.detach(), atol=1e-5, rtol=1e-5)
    params = dict(model.named_parameters())
    assert len(sharded["grads"]) == sum(p.grad is not None for p in params.values()) > 50
    for name, g in sharded["grads"].items():
        torch.testing.assert_close(g, params[name].grad, atol=1e-5, rtol=1e-4, msg=name)
