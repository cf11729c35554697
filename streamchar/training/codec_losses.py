"""The tiny codecs' training losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamchar.codecs.base import per_channel


def frames_loss(y: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Decoded frames against the true ones: L1 over the whole picture, the mouth four times
    over (the detail lip sync is read from), and a squared term; logged as L1 and PSNR."""
    err = (y - x).abs()
    loss = err.mean() + 4 * (err * mask).sum() / mask.sum().clamp(min=1) + F.mse_loss(y, x)
    return loss, {"l1": err.mean().item(), "psnr": (10 * torch.log10(4 / F.mse_loss(y.clamp(-1, 1), x))).item()}


def stft_loss(pred: torch.Tensor, target: torch.Tensor, sizes: tuple[int, ...] = (256, 512, 1024, 2048)) -> torch.Tensor:
    """Multi-resolution STFT loss: spectral convergence + log-magnitude L1. The magnitude floor
    (1e-2) keeps SynthTalk's digital silence from dominating the log term."""
    loss = pred.new_zeros(())
    for n in sizes:
        win = torch.hann_window(n, device=pred.device)
        P = torch.stft(pred, n, n // 4, window=win, return_complex=True).abs() + 1e-2
        T = torch.stft(target, n, n // 4, window=win, return_complex=True).abs() + 1e-2
        loss = loss + torch.linalg.norm(P - T) / torch.linalg.norm(T) + (P.log() - T.log()).abs().mean()
    return loss / len(sizes)


def temporal_loss(y: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, first: torch.Tensor, shown_before: torch.Tensor,
                  true_before: torch.Tensor, has_before: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Decoded frame-to-frame change against the true change, squared: between the frames of a
    group, and from the frame shown before it (`shown_before`, (n, 3, H, W), decoded as a stream
    decodes it) to the group's first shown frame. A loss on each frame alone leaves the error of
    one latent's frames free to differ from its neighbour's, so a stream steps at every latent;
    this asks neighbouring errors to agree. Squared, because an absolute error is least for no
    change wherever the change is uncertain (a still picture that jumps). Weighted like the
    reconstruction: the whole crop, and the mouth four times over."""
    n, _, h, w = y.shape
    y4, x4, m4 = (t.reshape(n, 4, 3, h, w) for t in (y, x, mask))
    rows = torch.arange(n)
    inside = ((y4[:, 1:] - y4[:, :-1]) - (x4[:, 1:] - x4[:, :-1])).square()  # (n, 3, 3, H, W)
    step = ((y4[rows, first] - shown_before) - (x4[rows, first] - true_before)).square()
    err = torch.cat([inside, step[:, None]], dim=1)  # (n, 4, 3, H, W)
    valid = torch.cat([torch.ones(n, 3), has_before.float()[:, None]], dim=1).view(n, 4, 1, 1, 1).expand_as(err)
    mouth = torch.cat([m4[:, 1:], m4[rows, first][:, None]], dim=1) * valid
    loss = (err * valid).sum() / valid.sum() + 4 * (err * mouth).sum() / mouth.sum().clamp(min=1)
    parts = {"change_inside": inside.mean().item(),
             "change_step": ((step.mean(dim=(1, 2, 3)) * has_before).sum() / has_before.sum().clamp(min=1)).item()}
    return loss, parts


def anchor_loss(raw: torch.Tensor, target: torch.Tensor, latents_std: torch.Tensor, weight: float, parts: dict) -> torch.Tensor:
    """`weight` times the mean squared move of the raw latents from `target` (the anchor
    encoder's), per channel in the latent std: what a model trained on the anchor's normalised
    latents sees move. The move's root mean square is logged as `drift`."""
    drift = ((raw - target) / per_channel(latents_std, raw)).square().mean()
    parts["drift"] = drift.sqrt().item()
    return weight * drift
