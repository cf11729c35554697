"""Codec benchmark on held-out SynthTalk clips: video PSNR (whole frame and mouth region),
audio intelligibility after the round trip, chunk seams, and decode speed per chunk."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from streamchar.codecs.base import CHUNK_FRAMES, LATENT_STARTS, AudioCodec, VideoCodec
from streamchar.data.dataset import ClipDataset, codec_frames
from streamchar.evaluation.asr import Recognizer, word_error_rate


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@torch.no_grad()
def round_trip(item: dict, video: VideoCodec, audio: AudioCodec) -> tuple[np.ndarray, np.ndarray]:
    frames = codec_frames(item)
    t = frames.shape[2]
    reference = video.prepare_reference(item["reference_image"][None].float() / 127.5 - 1)
    rec = video.decode(video.encode(frames), frames=t, reference=reference)[0].permute(1, 2, 3, 0)
    rec_frames = ((rec + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    wav = item["audio"][None]
    rec_audio = audio.decode(audio.encode(wav))[0].numpy()
    return rec_frames, rec_audio


@torch.no_grad()
def decode_speed(video: VideoCodec, audio: AudioCodec, chunks: int = 12) -> dict:
    """Seconds to decode one chunk (9 video latents + 33 audio latents), streaming (each decoder
    carrying what it carries from chunk to chunk); the reference image's features are prepared
    once beforehand, as a stream does."""
    h, w = video.height // 16, video.width // 16
    zv = torch.randn(1, video.latent_channels, 9, h, w)
    za = torch.randn(1, audio.latent_channels, 33)
    reference = video.prepare_reference(torch.rand(1, 3, video.height, video.width) * 2 - 1)
    stream, vstream = audio.stream_decoder(), video.stream_decoder(reference)
    vstream.decode(zv)
    stream.decode(za)
    times, vt, at = [], [], []
    for _ in range(chunks):
        t0 = time.perf_counter()
        vstream.decode(zv)
        t1 = time.perf_counter()
        stream.decode(za)
        t2 = time.perf_counter()
        vt.append(t1 - t0)
        at.append(t2 - t1)
        times.append(t2 - t0)
    return {
        "chunk_decode_seconds_median": statistics.median(times),
        "video_decode_seconds_median": statistics.median(vt),
        "audio_decode_seconds_median": statistics.median(at),
        "share_of_playback": statistics.median(times) / 1.375,
        "torch_threads": torch.get_num_threads(),
    }


def motion(frames: np.ndarray) -> dict:
    """How a video moves through its chunks and latents, from one pass over its frame-to-frame
    changes (mean absolute change, 0-255, into each frame after the first):
    - `chunk_boundary_change` into each chunk's first frame (NaN for a video shorter than two
      chunks) and `seam_ratio`, that over the change into all other frames: about 1 when chunk
      boundaries are invisible;
    - `change_into_latents` (a chunk's first frame and frames 1, 5, ..., 29), `change_inside_latents`
      (between the frames of one latent) and `latent_step_ratio`, the one over the other: a decoder
      that gets each latent's frames right alone but not their motion shows a stream that moves in
      steps, six times a second, and a ratio far above 1;
    - `profile`: the mean change into each of a chunk's 33 positions (position 0: across the chunk
      boundary)."""
    d = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    into = (np.arange(len(d)) + 1) % CHUNK_FRAMES

    def at_and_elsewhere(starts: tuple[int, ...]) -> tuple[float, float]:
        at = np.isin(into, starts)
        return (float(d[at].mean()) if at.any() else float("nan")), float(d[~at].mean())

    boundary, rest = at_and_elsewhere((0,))
    starts, inside = at_and_elsewhere(LATENT_STARTS)
    return {"chunk_boundary_change": boundary, "seam_ratio": boundary / max(rest, 1e-6), "change_into_latents": starts,
            "change_inside_latents": inside, "latent_step_ratio": starts / max(inside, 1e-6),
            "profile": np.array([d[into == p].mean() if (into == p).any() else np.nan for p in range(CHUNK_FRAMES)])}


# each motion figure over clips: how the bench reports it, and how it averages the clips
_MOTION_KEYS = {"chunk_seam_ratio": ("seam_ratio", np.nanmean), "chunk_boundary_change": ("chunk_boundary_change", np.nanmean),
                "latent_step_ratio": ("latent_step_ratio", np.nanmean), "change_into_latents": ("change_into_latents", np.mean),
                "change_inside_latents": ("change_inside_latents", np.mean)}


def _motion_report(rec: list[dict], truth: list[dict]) -> dict:
    out = {}
    for name, (key, mean) in _MOTION_KEYS.items():
        for side, ms in (("reconstructed", rec), ("ground_truth", truth)):
            out[f"{name}_{side}"] = float(mean([m[key] for m in ms]))
    for side, ms in (("reconstructed", rec), ("ground_truth", truth)):
        out[f"change_by_chunk_position_{side}"] = np.nanmean([m["profile"] for m in ms], axis=0).round(4).tolist()
    return out


def bench_codecs(data: Path, cfg, video: VideoCodec, audio: AudioCodec, clips: int = 24, split: str = "test-unseen") -> dict:  # noqa: ANN001
    ds = ClipDataset(data, cfg, split=split)
    n = min(clips, len(ds))
    full, mouth, moves, moves_gt = [], [], [], []
    transcripts, originals, recons = [], [], []
    for i in range(n):
        item = ds[i]
        frames = item["video"].permute(0, 2, 3, 1).numpy()
        rec_frames, rec_audio = round_trip(item, video, audio)
        full.append(psnr(frames, rec_frames))
        boxes = item["mouth_boxes"]
        if boxes:
            a = np.concatenate([frames[j, y0:y1, x0:x1].reshape(-1) for j, (x0, y0, x1, y1) in enumerate(boxes)])
            b = np.concatenate([rec_frames[j, y0:y1, x0:x1].reshape(-1) for j, (x0, y0, x1, y1) in enumerate(boxes)])
            mouth.append(psnr(a, b))
        moves.append(motion(rec_frames))
        moves_gt.append(motion(frames))
        transcripts.append(item["transcript"])
        originals.append(item["audio"].numpy())
        recons.append(rec_audio)
    rec = Recognizer(transcripts)
    sr = cfg.audio.sample_rate
    wer_gt = word_error_rate(transcripts, [rec.transcribe(a, sr) for a in originals]).wer
    wer_rt = word_error_rate(transcripts, [rec.transcribe(a, sr) for a in recons]).wer
    return {
        "split": split,
        "clips": n,
        "video_decoder_reads_reference": video.needs_reference,
        "video_psnr_db_mean": float(np.mean(full)),
        "video_psnr_db_min": float(np.min(full)),
        "mouth_psnr_db_mean": float(np.mean(mouth)) if mouth else None,
        "mouth_psnr_db_min": float(np.min(mouth)) if mouth else None,
        **_motion_report(moves, moves_gt),
        "wer_original": wer_gt,
        "wer_round_trip": wer_rt,
        "wer_difference_points": 100 * (wer_rt - wer_gt),
        **decode_speed(video, audio),
    }


def plot_change_profile(results: dict[str, dict], out: Path) -> Path:
    """Frame-to-frame change by position in the chunk, for codec benches (`streamchar bench
    codec`) named by their decoders, against the ground truth: a decoder whose video moves in
    steps shows teeth at every latent's first frame (0, 1, 5, ..., 29)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.4))
    first = next(iter(results.values()))
    ax.plot(first["change_by_chunk_position_ground_truth"], "k-", lw=2, label="ground truth")
    for name, r in results.items():
        ax.plot(r["change_by_chunk_position_reconstructed"], "o-", ms=3, lw=1, label=name)
    for p in LATENT_STARTS:
        ax.axvline(p, color="0.85", lw=0.8, zorder=0)
    ax.set_xlabel("frame's position in its chunk (grey: a latent's first frame)")
    ax.set_ylabel("mean |frame change| (0-255)")
    ax.grid(alpha=0.3, axis="y")
    ax.set_ylim(0, ax.get_ylim()[1])
    # below the axes, two labels a row: long decoder names inside the axes covered the curves or ran over the y label
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out
