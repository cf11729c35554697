"""The evaluation suite's maths on hand-computed cases."""

import numpy as np
import pytest
import torch

from streamchar.errors import StreamcharError
from streamchar.evaluation.coverage import transcript_coverage
from streamchar.evaluation.frechet import GaussianStats, frechet_distance
from streamchar.evaluation.quality import quality_drift
from streamchar.evaluation.scorers import dynamic_degree
from streamchar.evaluation.syncnet import SyncNetV2, load_syncnet_v2, sync_scores, window_starts


def test_frechet_distance_of_diagonal_gaussians():
    # d^2 = |mu1 - mu2|^2 + sum_k (s1_k - s2_k)^2 for diagonal covariances
    a = GaussianStats(np.array([0.0, 1.0]), np.diag([4.0, 1.0]), 10)
    b = GaussianStats(np.array([3.0, 1.0]), np.diag([1.0, 9.0]), 10)
    assert frechet_distance(a, b) == pytest.approx(9 + (2 - 1) ** 2 + (1 - 3) ** 2)
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-9)


def test_frechet_from_samples_and_bad_input():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (4000, 3))
    y = rng.normal(2, 1, (4000, 3))
    assert frechet_distance(GaussianStats.of(x), GaussianStats.of(y)) == pytest.approx(12, rel=0.05)
    with pytest.raises(StreamcharError, match="at least two"):
        GaussianStats.of(x[:1])
    with pytest.raises(StreamcharError, match="feature sizes differ"):
        frechet_distance(GaussianStats.of(x), GaussianStats.of(x[:, :2]))


def test_sync_protocol_finds_offset_and_sign():
    torch.manual_seed(0)
    n, shift = 60, 3
    stream = torch.randn(n + 20, 8)
    # video frame i shows stream[i]; audio window j carries stream[j + 3]: the audio is 3 frames
    # ahead of the picture (it leads), which SyncNet reports as offset +3
    lead = sync_scores(stream[:n], stream[shift : n + shift], vshift=5)
    assert lead.offset == shift
    lag = sync_scores(stream[shift : n + shift], stream[:n], vshift=5)
    assert lag.offset == -shift
    # at the best offset only the first 3 windows, compared with zero padding, are apart
    assert lead.sync_d == pytest.approx(float(stream[:shift].norm(dim=1).sum()) / n, abs=1e-4)
    unrelated = sync_scores(stream[:n], torch.randn(n, 8, generator=torch.Generator().manual_seed(1)), vshift=5)
    assert lead.sync_c > 10 * unrelated.sync_c and unrelated.sync_d > 10 * lead.sync_d  # confidence in sync only where the two match
    assert len(lead.distances) == 11


def test_sync_windows_at_24_fps():
    starts = window_starts(num_frames=30, num_mfcc=110, fps=24)
    assert starts[:4] == [0, 4, 8, 12] and starts[6] == 25  # 100 * 6 / 24 = 25
    assert all(s + 20 <= 110 for s in starts) and len(starts) <= 26


def test_quality_drift_windows():
    fps = 2.0
    q = np.full(int(65 * fps), 0.5)
    q[int(25 * fps) : int(30 * fps)] = 0.6  # last 5 s of the first 30 s segment
    q[int(55 * fps) : int(60 * fps)] = 0.45  # last 5 s of the second
    drift, points = quality_drift(q, fps)
    assert [p["time"] for p in points] == [30.0, 60.0]
    assert points[0]["drift"] == pytest.approx(0.1) and points[1]["drift"] == pytest.approx(0.05)
    assert drift == pytest.approx(0.1)
    assert quality_drift(q[: int(20 * fps)], fps)[0] is None  # shorter than one period


def test_coverage_counts_omissions_and_repeats():
    c = transcript_coverage("the birch canoe slid on the smooth planks", "the birch canoe the birch canoe slid on planks")
    assert c.transcript_words == 8
    assert c.spoken_in_order == 6 and c.omitted == 2
    assert c.repeated == 3
    assert c.coverage == pytest.approx(6 / 8)
    none = transcript_coverage("glue the sheet", "")
    assert none.spoken_in_order == 0 and none.omitted == 3


def test_dynamic_degree_thresholds():
    rng = np.random.default_rng(0)
    base = (rng.random((128, 128, 3)) * 60).astype(np.uint8)
    static = np.repeat(base[None], 48, axis=0)
    r = dynamic_degree(static, fps=24)
    assert not r["dynamic"] and r["pairs"] == 15 and r["threshold_px"] == pytest.approx(3.0)
    moving = np.zeros((48, 128, 128, 3), np.uint8)
    for t in range(48):
        x = 10 + 2 * t  # 6 px per sampled pair (every 3rd frame at 24 fps)
        moving[t, 40:80, x : x + 30] = 220
    assert dynamic_degree(moving, fps=24)["dynamic"]


def test_syncnet_v2_loads_the_original_state_dict_format(tmp_path):
    torch.manual_seed(0)
    src = SyncNetV2()
    path = tmp_path / "syncnet_v2.model"
    torch.save(src.state_dict(), path)  # how syncnet_python's weights are stored
    model = load_syncnet_v2(path)
    src.eval()
    audio, video = torch.randn(2, 1, 13, 20), torch.rand(1, 3, 5, 224, 224) * 255
    with torch.no_grad():
        a, v = model.forward_aud(audio), model.forward_lip(video)
        assert a.shape == (2, 1024) and v.shape == (1, 1024)
        assert torch.allclose(a, src.forward_aud(audio)) and torch.allclose(v, src.forward_lip(video))  # the saved weights, not fresh ones
    torch.save({"netcnnaud.0.weight": torch.zeros(3)}, tmp_path / "bad.model")
    with pytest.raises(StreamcharError, match="SyncNet"):
        load_syncnet_v2(tmp_path / "bad.model")


def test_seam_ratio_sees_a_step_at_chunk_boundaries():
    from streamchar.evaluation.bench_codec import motion

    def seam_ratio(frames):
        return motion(frames)["seam_ratio"]

    t = np.arange(99, dtype=np.float32)
    smooth = np.broadcast_to(t[:, None, None, None], (99, 4, 4, 3))
    assert seam_ratio(smooth) == pytest.approx(1.0)
    stepped = smooth + 5 * (t // 33)[:, None, None, None]  # a jump of 5 where each chunk starts
    assert seam_ratio(stepped) == pytest.approx(6.0)
    assert np.isnan(seam_ratio(smooth[:20]))  # shorter than one chunk: no boundary to measure


def test_latent_step_ratio_sees_motion_that_moves_once_per_latent():
    from streamchar.evaluation.bench_codec import LATENT_STARTS, motion

    t = np.arange(99, dtype=np.float32)
    smooth = np.broadcast_to(t[:, None, None, None], (99, 4, 4, 3))
    assert motion(smooth)["latent_step_ratio"] == pytest.approx(1.0)
    # each frame shows the picture of its latent's first frame: still inside a latent, a jump into the next
    starts = np.array([33 * (i // 33) + max(s for s in LATENT_STARTS if s <= i % 33) for i in range(99)], dtype=np.float32)
    held = np.broadcast_to(starts[:, None, None, None], (99, 4, 4, 3))
    held_motion = motion(held)
    assert held_motion["latent_step_ratio"] > 100
    assert held_motion["seam_ratio"] > 1  # the chunk boundary is one of the steps
    profile = held_motion["profile"]
    assert profile.shape == (33,) and (profile[list(LATENT_STARTS)] > 0).all()
    assert np.delete(profile, list(LATENT_STARTS)).max() == 0


def test_the_browser_offset_reads_clocks_to_the_millisecond():
    """`sound_behind_picture` on a made-up page: the sound rendered on a 48 kHz context clock from
    a 24 kHz stream, the frames shown 30 ms before their sound plays: +30 ms, within 1 ms."""
    from scipy.signal import resample_poly

    from streamchar.serving.bench_browser import sound_behind_picture

    rng = np.random.default_rng(0)
    rate, ctx = 24_000, 48_000
    truth = (rng.standard_normal(5 * rate) * np.repeat(rng.random(50) > 0.5, rate // 10)).astype(np.float32)
    said = resample_poly(truth, 2, 1).astype(np.float32)
    zero = 12_345  # the context frame that played media time 0
    start = zero + ctx  # recording began a second in, in blocks of 12,288 frames
    pcm = [[f, said[f - zero : f - zero + 12_288].tolist()] for f in range(start, zero + len(said) - 12_288, 12_288)]
    page_minus_ctx_ms = 1_000.0
    media = np.arange(24, 100) / 24
    shown = [[m, (zero / ctx + m - 0.030) * 1000 + page_minus_ctx_ms, c, c * 1000 + page_minus_ctx_ms] for m, c in zip(media, media + 7)]
    got = sound_behind_picture(pcm, ctx, shown, truth, rate)
    assert abs(got["av_offset_ms"] - 30.0) < 1.0 and got["av_match"] > 0.99
