"""The tiny codecs that ship with the package: they load by name, fit the tiny preset, stay
small, and reconstruct held-out SynthTalk clips (the full benchmark is `streamchar bench codec`)."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from streamchar.codecs.store import SHIPPED, WEIGHTS, codec_path, load_audio_codec, load_video_codec
from streamchar.data.dataset import ClipDataset, codec_frames
from streamchar.evaluation.bench_codec import motion, psnr, round_trip


@pytest.fixture(scope="module")
def codecs(tiny_cfg):
    return load_video_codec(tiny_cfg), load_audio_codec(tiny_cfg)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_codecs_are_small(name):
    size = (codec_path(name) / WEIGHTS).stat().st_size
    assert size <= 10 * 1024 * 1024, size


def test_latent_statistics_are_stored(codecs):
    video, audio = codecs
    for codec in (video, audio):
        assert codec.latents_std.min() > 0 and not torch.all(codec.latents_std == 1)


def test_round_trip_of_a_held_out_clip(small_set, codecs):
    root, cfg = small_set
    video, audio = codecs
    item = ClipDataset(root, cfg, split="test-unseen")[0]
    frames, rec_audio = round_trip(item, video, audio)
    assert psnr(item["video"].permute(0, 2, 3, 1).numpy(), frames) > 22  # far above an untrained codec
    # motion runs through latent boundaries: decoders that did not blend toward the frame before jumped at every latent
    assert motion(frames)["latent_step_ratio"] < 4
    # the reconstructed speech has the original's loudness contour
    spf = cfg.samples_per_frame
    env = lambda a: np.sqrt((a.reshape(-1, spf) ** 2).mean(axis=1))  # noqa: E731
    assert np.corrcoef(env(item["audio"].numpy()), env(rec_audio))[0, 1] > 0.9


@torch.no_grad()
def test_streaming_decode_equals_whole_decode(codecs):
    video, audio = codecs
    torch.manual_seed(0)
    za = torch.randn(1, 64, 99)
    whole = audio.decode(za)
    stream = audio.stream_decoder()
    chunks = torch.cat([stream.decode(za[:, :, k : k + 33]) for k in range(0, 99, 33)], dim=1)
    assert torch.allclose(whole, chunks, atol=1e-5)  # so chunk boundaries add no click
    zv = torch.randn(1, 48, 18, 8, 8)
    ref = video.prepare_reference(torch.rand(1, 3, 128, 128) * 2 - 1)
    stream = video.stream_decoder(ref)
    parts = [stream.decode(zv[:, :, :9]), stream.decode(zv[:, :, 9:])]
    assert torch.allclose(video.decode(zv, reference=ref), torch.cat(parts, dim=2), atol=1e-6)


@torch.no_grad()
def test_bf16_stream_decoding_stays_within_a_few_levels(small_set, tiny_cfg, codecs):
    """The server decodes in bfloat16 where the machine has it: a held-out clip's latents, chunk by
    chunk (each reading the frame before, carried in float32), come out as float32 frames within a
    few 8-bit levels of float32 decoding, and the error does not grow from chunk to chunk."""
    root, _ = small_set
    video, _ = codecs
    item = ClipDataset(root, tiny_cfg, split="test-unseen")[0]
    frames = codec_frames(item)
    latents = video.encode(frames)
    ref = video.prepare_reference(frames[:, :, 0])
    exact, bf16 = video.stream_decoder(ref), video.stream_decoder(ref, bf16=True)
    for k in range(0, latents.shape[2] - 8, 9):
        a, b = exact.decode(latents[:, :, k : k + 9]), bf16.decode(latents[:, :, k : k + 9])
        assert b.dtype == torch.float32 and b.shape == a.shape
        levels = (a - b).abs() * 127.5
        assert levels.mean() < 0.5 and levels.max() < 8, (k, levels.mean().item(), levels.max().item())


@pytest.mark.slow
def test_encode_command(small_set, tmp_path):
    root, _ = small_set
    out = tmp_path / "latents"
    r = subprocess.run([sys.executable, "-m", "streamchar", "data", "encode", "--data", str(root), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (out / "latents.json").is_file() and list(out.glob("shard-*.safetensors"))


@torch.no_grad()
def test_anchored_codec_stays_near_the_latents_the_models_learned(small_set, tiny_cfg, codecs):
    """tiny-video-anchored's encoder was trained further, held near tiny-video's latents (which the
    shipped teacher and student learned): its latents of a held-out clip move little from them,
    and it decodes the clip about as well."""
    root, _ = small_set
    video, audio = codecs
    anchored = load_video_codec(tiny_cfg, "tiny-video-anchored")
    assert torch.equal(anchored.latents_std, video.latents_std) and torch.equal(anchored.latents_mean, video.latents_mean)
    item = ClipDataset(root, tiny_cfg, split="test-unseen")[0]
    frames = codec_frames(item)
    move = (anchored.encode(frames) - video.encode(frames)).pow(2).mean().sqrt().item()
    assert move < 0.3, move  # in the latents' std
    target = item["video"].permute(0, 2, 3, 1).numpy()
    before, after = (psnr(target, round_trip(item, codec, audio)[0]) for codec in (video, anchored))
    assert after > before - 0.5, (after, before)


@torch.no_grad()
def test_the_three_engine_audio_decoder_reads_tiny_audios_latents(tiny_cfg, codecs):
    """tiny-audio-3engines (the default) trained its decoder alone: its latents are tiny-audio's,
    its decoder its own, and it decodes a Flite voice (whose round trip tiny-audio blurred)
    closer to the original speech."""
    from streamchar.data.speech import Voice, synthesize

    _, tuned = codecs
    assert tuned is not None and load_audio_codec(tiny_cfg).state_dict().keys() == tuned.state_dict().keys()
    audio = load_audio_codec(tiny_cfg, "tiny-audio")  # from the checkout's checkpoints/
    speech = synthesize("The birch canoe slid on the smooth planks.", Voice("rms", 0, 175, 0, "flite"), 24000).audio
    wav = torch.from_numpy(speech[: len(speech) // 1000 * 1000])[None]
    z = audio.encode(wav)
    assert torch.equal(tuned.encode(wav), z)
    assert not torch.equal(tuned.decode(z), audio.decode(z))
    spectra = [torch.stft(x[0], 400, 100, window=torch.hann_window(400), return_complex=True).abs() for x in (wav, audio.decode(z), tuned.decode(z))]
    log_errors = [float((torch.log1p(s) - torch.log1p(spectra[0])).abs().mean()) for s in spectra[1:]]
    assert log_errors[1] < log_errors[0], log_errors
