"""Codec benchmark on held-out SynthTalk clips: video PSNR (whole frame and mouth region),
audio intelligibility after the round trip, chunk seams, and decode speed per chunk."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from streamchar.codecs.base import AudioCodec, VideoCodec
from streamchar.data.dataset import ClipDataset
from streamchar.evaluation.asr import Recognizer, word_error_rate


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@torch.no_grad()
def round_trip(item: dict, video: VideoCodec, audio: AudioCodec) -> tuple[np.ndarray, np.ndarray]:
    frames = item["video"].permute(1, 0, 2, 3)[None].float() / 127.5 - 1
    t = frames.shape[2]
    reference = video.prepare_reference(item["reference_image"][None].float() / 127.5 - 1)
    rec = video.decode(video.encode(frames), frames=t, reference=reference)[0].permute(1, 2, 3, 0)
    rec_frames = ((rec + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    wav = item["audio"][None]
    rec_audio = audio.decode(audio.encode(wav))[0].numpy()
    return rec_frames, rec_audio


@torch.no_grad()
def decode_speed(video: VideoCodec, audio: AudioCodec, chunks: int = 12) -> dict:
    """Seconds to decode one chunk (9 video latents + 33 audio latents), streaming; the
    reference image's features are prepared once beforehand, as a stream does."""
    h, w = video.height // 16, video.width // 16
    zv = torch.randn(1, video.latent_channels, 9, h, w)
    za = torch.randn(1, audio.latent_channels, 33)
    reference = video.prepare_reference(torch.rand(1, 3, video.height, video.width) * 2 - 1)
    stream = audio.stream_decoder()
    video.decode(zv, reference=reference)
    stream.decode(za)
    times, vt, at = [], [], []
    for _ in range(chunks):
        t0 = time.perf_counter()
        video.decode(zv, reference=reference)
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


def frame_changes(frames: np.ndarray) -> tuple[float, float]:
    """Mean absolute frame-to-frame change (0-255) across chunk boundaries (every 33 frames) and
    elsewhere; NaN at boundaries for a video shorter than two chunks."""
    d = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    at = np.arange(32, len(d), 33)
    rest = np.delete(d, at)
    return (float(d[at].mean()) if len(at) else float("nan")), float(rest.mean())


def seam_ratio(frames: np.ndarray) -> float:
    """Change across chunk boundaries over the change elsewhere; about 1 when chunk boundaries
    are invisible."""
    at, rest = frame_changes(frames)
    return at / max(rest, 1e-6)


def bench_codecs(data: Path, cfg, video: VideoCodec, audio: AudioCodec, clips: int = 24, split: str = "test-unseen") -> dict:  # noqa: ANN001
    ds = ClipDataset(data, cfg, split=split)
    n = min(clips, len(ds))
    full, mouth, seams, seams_gt, steps, steps_gt = [], [], [], [], [], []
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
        seams.append(seam_ratio(rec_frames))
        seams_gt.append(seam_ratio(frames))
        steps.append(frame_changes(rec_frames)[0])
        steps_gt.append(frame_changes(frames)[0])
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
        "chunk_seam_ratio_reconstructed": float(np.nanmean(seams)),
        "chunk_seam_ratio_ground_truth": float(np.nanmean(seams_gt)),
        "chunk_boundary_change_reconstructed": float(np.nanmean(steps)),
        "chunk_boundary_change_ground_truth": float(np.nanmean(steps_gt)),
        "wer_original": wer_gt,
        "wer_round_trip": wer_rt,
        "wer_difference_points": 100 * (wer_rt - wer_gt),
        **decode_speed(video, audio),
    }
