"""Decode time of small diffusers codecs at the tiny geometry: why the tiny codecs are the project's own.

    python benchmarks/codec_alternatives.py

One 33-frame chunk of 128x128 video (9 latents of 48 channels, 8x8) through a small
`AutoencoderKLWan` (Wan2.2 layout: patch 2, residual, stride 4x16x16), and 1.375 s of
24 kHz audio (33 latents) through a small `AutoencoderOobleck` (strides 2x4x5x5x5 = 1000),
on 2 CPU threads; the budget for both together is 0.15 s.
"""

import json
import time

import torch
from diffusers import AutoencoderKLWan, AutoencoderOobleck


def timed(fn, repeat=3):  # noqa: ANN001, ANN201
    fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


if __name__ == "__main__":
    torch.set_num_threads(2)
    results = {}
    with torch.no_grad():
        for base in (16, 32):
            vae = AutoencoderKLWan(base_dim=base, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=1, is_residual=True, in_channels=12,
                                   out_channels=12, patch_size=2, scale_factor_spatial=16, temperal_downsample=[False, True, True],
                                   latents_mean=[0.0] * 48, latents_std=[1.0] * 48).eval()
            z = torch.randn(1, 48, 9, 8, 8)
            millions = sum(p.numel() for p in vae.parameters()) / 1e6
            results[f"AutoencoderKLWan base_dim={base} ({millions:.1f}M)"] = timed(lambda vae=vae, z=z: vae.decode(z))
        ob = AutoencoderOobleck(encoder_hidden_size=64, downsampling_ratios=[2, 4, 5, 5, 5], channel_multiples=[1, 2, 4, 8, 8],
                                decoder_channels=32, decoder_input_channels=32, audio_channels=1, sampling_rate=24000).eval()
        za = torch.randn(1, 32, 33)
        results[f"AutoencoderOobleck decoder_channels=32 ({sum(p.numel() for p in ob.parameters()) / 1e6:.1f}M)"] = timed(lambda: ob.decode(za))
    for k, v in results.items():
        print(f"{k:55s} {v:.3f} s per chunk")
    print(json.dumps(results))
