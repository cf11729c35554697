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


CHUNK_FRAMES = 33
LATENT_STARTS = (0, 1, 5, 9, 13, 17, 21, 25, 29)  # the frames of a chunk where a video latent's frames begin


def _changes(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean absolute frame-to-frame change (0-255) into each frame after the first, and that
    frame's position in its chunk."""
    d = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    return d, (np.arange(len(d)) + 1) % CHUNK_FRAMES


def _changes_at(frames: np.ndarray, starts: tuple[int, ...]) -> tuple[float, float]:
    """Mean change into the frames at these positions of each chunk, and into all other frames;
    NaN where no such frame follows another."""
    d, into = _changes(frames)
    at = np.isin(into, starts)
    return (float(d[at].mean()) if at.any() else float("nan")), float(d[~at].mean())


def change_profile(frames: np.ndarray) -> np.ndarray:
    """Mean change into each of a chunk's 33 positions (position 0: across the chunk boundary)."""
    d, into = _changes(frames)
    return np.array([d[into == p].mean() if (into == p).any() else np.nan for p in range(CHUNK_FRAMES)])


def frame_changes(frames: np.ndarray) -> tuple[float, float]:
    """Change across chunk boundaries (every 33 frames) and elsewhere; NaN at boundaries for a
    video shorter than two chunks."""
    return _changes_at(frames, (0,))


def seam_ratio(frames: np.ndarray) -> float:
    """Change across chunk boundaries over the change elsewhere; about 1 when chunk boundaries
    are invisible."""
    at, rest = frame_changes(frames)
    return at / max(rest, 1e-6)


def latent_steps(frames: np.ndarray) -> tuple[float, float]:
    """Change into the first frame of each video latent (a chunk's first frame and frames 1, 5,
    ..., 29) and between the frames of one latent. A decoder that gets each latent's frames right
    alone but not their motion shows a stream that moves in steps, six times a second."""
    return _changes_at(frames, LATENT_STARTS)


def latent_step_ratio(frames: np.ndarray) -> float:
    """About 1 when motion runs smoothly through latent boundaries."""
    at, inside = latent_steps(frames)
    return at / max(inside, 1e-6)


def bench_codecs(data: Path, cfg, video: VideoCodec, audio: AudioCodec, clips: int = 24, split: str = "test-unseen") -> dict:  # noqa: ANN001
    ds = ClipDataset(data, cfg, split=split)
    n = min(clips, len(ds))
    full, mouth, seams, seams_gt, steps, steps_gt, lat, lat_gt, starts, starts_gt, inside, inside_gt, prof, prof_gt = ([] for _ in range(14))
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
        for frs, ratios, into, within, profiles in ((rec_frames, lat, starts, inside, prof), (frames, lat_gt, starts_gt, inside_gt, prof_gt)):
            at, ins = latent_steps(frs)
            ratios.append(at / max(ins, 1e-6))
            into.append(at)
            within.append(ins)
            profiles.append(change_profile(frs))
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
        "latent_step_ratio_reconstructed": float(np.nanmean(lat)),
        "latent_step_ratio_ground_truth": float(np.nanmean(lat_gt)),
        "change_into_latents_reconstructed": float(np.mean(starts)),
        "change_into_latents_ground_truth": float(np.mean(starts_gt)),
        "change_inside_latents_reconstructed": float(np.mean(inside)),
        "change_inside_latents_ground_truth": float(np.mean(inside_gt)),
        "change_by_chunk_position_reconstructed": np.nanmean(prof, axis=0).round(4).tolist(),
        "change_by_chunk_position_ground_truth": np.nanmean(prof_gt, axis=0).round(4).tolist(),
        "wer_original": wer_gt,
        "wer_round_trip": wer_rt,
        "wer_difference_points": 100 * (wer_rt - wer_gt),
        **decode_speed(video, audio),
    }
