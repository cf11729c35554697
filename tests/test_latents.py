import pytest
import torch

from streamchar.codecs.tiny import TinyAudioCodec, TinyAudioConfig, TinyVideoCodec, TinyVideoConfig
from streamchar.data.dataset import ClipDataset, codec_frames
from streamchar.data.latents import LatentCache, encode_dataset

pytestmark = pytest.mark.slow  # encodes a generated set: the slow tier


def small_codecs():
    torch.manual_seed(0)
    video = TinyVideoCodec(TinyVideoConfig(128, 128, 48, encoder_channels=(8, 8, 8, 8), decoder_channels=(8, 8, 8, 8))).eval()
    audio = TinyAudioCodec(TinyAudioConfig(latent_channels=64, channels=(8, 8))).eval()
    return video, audio


def test_cache_holds_aligned_latents_and_timings(small_set, tmp_path):
    root, cfg = small_set
    video, audio = small_codecs()
    out = tmp_path / "latents"
    summary = encode_dataset(root, out, cfg, video, audio, {"video": "test", "audio": "test"}, clips_per_shard=4)
    assert summary == {"clips": 6, "shards": 2, "out": str(out)}
    cache = LatentCache(out)
    ds = ClipDataset(root, cfg)
    for i in range(len(cache)):
        rec, t = cache.records[i], cache.tensors(i)
        item = ds[i]
        frames = item["video"].shape[0]
        assert rec["clip_id"] == item["clip_id"] and rec["words"] == item["words"] and rec["frames"] == frames
        assert t["video"].shape == (48, -(-frames // 33) * 9, 8, 8)
        assert t["audio"].shape == (64, frames)  # 24 latents per second = one per video frame
        assert t["reference"].shape == (48, 1, 8, 8)
        assert t["reference_voice"].shape[0] == 64
        # the stored latents are the codec's own
        x = codec_frames(item)
        with torch.no_grad():
            want = video.encode(x)[0]
        assert torch.allclose(t["video"], want, atol=2e-2 * want.abs().max().item())


def test_cache_resumes_without_rewriting(small_set, tmp_path):
    root, cfg = small_set
    video, audio = small_codecs()
    out = tmp_path / "latents"
    encode_dataset(root, out, cfg, video, audio, {"video": "a", "audio": "b"}, clips_per_shard=4)
    first = out / "shard-00000.safetensors"
    stamp = first.stat().st_mtime_ns
    (out / "shard-00001.safetensors").unlink()
    encode_dataset(root, out, cfg, video, audio, {"video": "a", "audio": "b"}, clips_per_shard=4)
    assert first.stat().st_mtime_ns == stamp and (out / "shard-00001.safetensors").exists()
