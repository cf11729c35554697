import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from streamchar.codecs.base import frames_to_chunks
from streamchar.codecs.store import load_audio_codec, load_codec, load_video_codec, save_codec
from streamchar.codecs.tiny import TinyAudioCodec, TinyAudioConfig, TinyVideoCodec, TinyVideoConfig
from streamchar.config import load_config
from streamchar.errors import StreamcharError


@pytest.fixture(scope="module")
def video():
    torch.manual_seed(0)
    config = TinyVideoConfig(height=32, width=48, latent_channels=8, encoder_channels=(8, 8, 8, 8), decoder_channels=(8, 8, 8, 8))
    return TinyVideoCodec(config).eval()


@pytest.fixture(scope="module")
def audio():
    torch.manual_seed(0)
    return TinyAudioCodec(TinyAudioConfig(latent_channels=8, channels=(8, 8))).eval()


def test_chunks_pad_the_last_one():
    x = torch.arange(40.0).view(1, 1, 40, 1, 1).expand(1, 3, 40, 1, 1)
    chunks, t = frames_to_chunks(x)
    assert t == 40 and chunks.shape == (2, 3, 33, 1, 1)
    assert chunks[1, 0, :, 0, 0].tolist() == list(range(33, 40)) + [39.0] * 26


@torch.no_grad()
def test_video_layout_33_frames_to_9_latents(video):
    x = torch.rand(2, 3, 40, 32, 48) * 2 - 1
    z = video.encode(x)
    assert z.shape == (2, 8, 18, 2, 3)
    y = video.decode(z, frames=40)
    assert y.shape == (2, 3, 40, 32, 48) and y.abs().max() <= 1


@torch.no_grad()
def test_video_chunks_decode_alone_as_together(video):
    z = torch.randn(1, 8, 18, 2, 3)
    whole = video.decode(z)
    parts = torch.cat([video.decode(z[:, :, :9]), video.decode(z[:, :, 9:])], dim=2)
    assert torch.allclose(whole, parts, atol=1e-6)


@torch.no_grad()
def test_video_first_latent_holds_only_the_first_frame(video):
    x = torch.rand(1, 3, 33, 32, 48) * 2 - 1
    y = x.clone()
    y[:, :, 1:] = -x[:, :, 1:]
    assert torch.equal(video.encode(x)[:, :, 0], video.encode(y)[:, :, 0])


def test_video_bad_input(video):
    with pytest.raises(StreamcharError, match="are 64x32 but this codec codes 48x32"):
        video.encode(torch.zeros(1, 3, 33, 32, 64))
    with pytest.raises(StreamcharError, match="shaped \\(batch, 3, time, height, width\\)"):
        video.encode(torch.zeros(3, 33, 32, 48))
    with pytest.raises(StreamcharError, match="chunks of 9; got 10"):
        video.decode(torch.zeros(1, 8, 10, 2, 3))


def _with_reference(video: TinyVideoCodec) -> TinyVideoCodec:
    torch.manual_seed(1)
    codec = TinyVideoCodec(replace(video.config, reference_channels=(8, 8, 8, 8))).eval()
    missing, unexpected = codec.load_state_dict(video.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("ref_") for k in missing)
    return codec


@torch.no_grad()
def test_reference_path_starts_as_the_decoder_without_it(video):
    codec = _with_reference(video)
    z, image = torch.randn(1, 8, 18, 2, 3), torch.rand(1, 3, 32, 48) * 2 - 1
    assert video.prepare_reference(image) is None
    assert torch.allclose(codec.decode(z, reference=codec.prepare_reference(image)), video.decode(z), atol=1e-6)


@torch.no_grad()
def test_decoding_with_the_reference(video):
    codec = _with_reference(video)
    for fuse in codec.ref_fuse:  # as if trained: the reference now changes the frames
        torch.nn.init.normal_(fuse.out.weight, std=0.3)
    z = torch.randn(2, 8, 18, 2, 3)
    images = torch.rand(2, 3, 32, 48) * 2 - 1
    ref = codec.prepare_reference(images)
    ref0, ref1 = codec.prepare_reference(images[:1]), codec.prepare_reference(images[1:])
    both = codec.decode(z, reference=ref)
    assert torch.allclose(both[:1], codec.decode(z[:1], reference=ref0), atol=1e-6)
    assert torch.allclose(both[1:], codec.decode(z[1:], reference=ref1), atol=1e-6)
    assert not torch.allclose(both[:1], codec.decode(z[:1], reference=ref1), atol=1e-3)
    parts = torch.cat([codec.decode(z[:1, :, :9], reference=ref0), codec.decode(z[:1, :, 9:], reference=ref0)], dim=2)
    assert torch.allclose(both[:1], parts, atol=1e-6)  # chunk by chunk, as a stream decodes
    with pytest.raises(StreamcharError, match="decodes with the reference image"):
        codec.decode(z)
    with pytest.raises(StreamcharError, match="reference image must be shaped \\(batch, 3, 32, 48\\)"):
        codec.prepare_reference(torch.zeros(1, 3, 48, 32))
    with pytest.raises(StreamcharError, match="features are for 2 images, but 3 videos"):
        codec.decode(torch.randn(3, 8, 9, 2, 3), reference=ref)


@torch.no_grad()
def test_decoding_with_the_previous_latent(video):
    torch.manual_seed(1)
    codec = TinyVideoCodec(replace(video.config, previous_latent=True)).eval()
    missing, _ = codec.load_state_dict(video.state_dict(), strict=False)
    assert missing and all(k.startswith("prev_in.") for k in missing)
    z = torch.randn(1, 8, 27, 2, 3)
    assert torch.allclose(codec.decode(z), video.decode(z), atol=1e-6)  # the new input starts at zero
    torch.nn.init.normal_(codec.prev_in[2].weight, std=0.3)  # as if trained
    whole = codec.decode(z)
    stream = codec.stream_decoder()
    parts = torch.cat([stream.decode(z[:, :, k : k + 9]) for k in (0, 9, 18)], dim=2)
    assert torch.allclose(whole, parts, atol=1e-6)  # chunk by chunk, as a stream decodes, equals the whole
    assert torch.allclose(whole[:, :, 33:66], codec.decode(z[:, :, 9:18], previous=z[:, :, 8]), atol=1e-6)
    assert not torch.allclose(whole[:, :, 33:66], codec.decode(z[:, :, 9:18]), atol=1e-3)  # it reads the chunk before


@torch.no_grad()
def test_blending_toward_the_frame_before(video):
    torch.manual_seed(2)
    with pytest.raises(ValueError, match="needs previous_latent"):
        TinyVideoCodec(replace(video.config, blend_previous_frame=True))
    codec = TinyVideoCodec(replace(video.config, previous_latent=True, blend_previous_frame=True)).eval()
    torch.nn.init.normal_(codec.prev_in[2].weight, std=0.3)
    torch.nn.init.normal_(codec.blend_gates[2].weight, std=0.5)  # as if trained
    z = torch.randn(2, 8, 27, 2, 3)
    whole = codec.decode(z)
    stream = codec.stream_decoder()
    parts = torch.cat([stream.decode(z[:, :, k : k + 9]) for k in (0, 9, 18)], dim=2)
    assert torch.allclose(whole, parts, atol=1e-6)  # the frame before is carried from chunk to chunk
    later = codec.decode(z[:, :, 9:18], previous=z[:, :, 8], previous_frame=whole[:, :, 32])
    assert torch.allclose(whole[:, :, 33:66], later, atol=1e-6)
    moved = codec.decode(z[:, :, 9:18], previous=z[:, :, 8], previous_frame=-whole[:, :, 32])
    assert not torch.allclose(moved[:, :, 0], later[:, :, 0], atol=1e-3)  # a chunk's first frame blends toward it
    assert torch.allclose(moved[:, :, 5:], later[:, :, 5:], atol=1e-6)  # from the third latent on, frames before are the chunk's own
    with pytest.raises(StreamcharError, match="previous_frame must be the frame decoded before these, shaped \\(2, 3, 32, 48\\)"):
        codec.decode(z[:, :, 9:18], previous=z[:, :, 8], previous_frame=whole[:1, :, 32])
    with pytest.raises(StreamcharError, match="previous must be the latent before these"):
        codec.decode(z[:, :, 9:18], previous=z[:, :, 8:10])
    # at a stream's start nothing comes before: the first frame is the first latent's own
    plain = TinyVideoCodec(replace(video.config, previous_latent=True)).eval()
    plain.load_state_dict({k: v for k, v in codec.state_dict().items() if not k.startswith("blend_")})
    assert torch.allclose(whole[:, :, 0], plain.decode(z)[:, :, 0], atol=1e-6)
    # a four-frame latent keeps its last frame; the first frames move toward the frame before as far as the gates say
    torch.nn.init.zeros_(codec.blend_gates[2].weight)
    torch.nn.init.zeros_(codec.blend_gates[2].bias)  # sigmoid: half way
    d = torch.rand(3, 12, 32, 48)
    towards = torch.full((3, 3, 32, 48), 5.0)
    features = torch.randn(3, 8, 16, 24)
    out = codec.blend(d, features, towards, torch.tensor([False, True, False])).reshape(3, 4, 3, 32, 48)
    d4 = d.reshape(3, 4, 3, 32, 48)
    assert torch.allclose(out[0, 3], d4[0, 3]) and torch.allclose(out[1, 3], (d4[1, 3] + 5) / 2)
    assert torch.allclose(out[:, :3], (d4[:, :3] + 5) / 2)


@torch.no_grad()
def test_blending_toward_the_next_latent(video):
    torch.manual_seed(5)
    config = replace(video.config, previous_latent=True, blend_previous_frame=True)
    with pytest.raises(ValueError, match="needs blend_previous_frame"):
        TinyVideoCodec(replace(config, blend_previous_frame=False, blend_next_frame=True))
    base = TinyVideoCodec(config).eval()
    torch.nn.init.normal_(base.prev_in[2].weight, std=0.3)
    torch.nn.init.normal_(base.blend_gates[2].weight, std=0.5)
    codec = TinyVideoCodec(replace(config, blend_next_frame=True)).eval()
    missing, _ = codec.load_state_dict(base.state_dict(), strict=False)
    assert missing and all(k.startswith("blend_back_gates.") for k in missing)
    z = torch.randn(2, 8, 27, 2, 3)
    plain, back = base.decode(z), codec.decode(z)
    # untrained, a latent's last frame (chunk frames 4, 8, ..., 28) is half way to the next latent's first
    last, following = [4, 8, 12, 16, 20, 24, 28], [5, 9, 13, 17, 21, 25, 29]
    assert torch.allclose(back[:, :, last], (plain[:, :, last] + plain[:, :, following]) / 2, atol=1e-5)
    others = [i for i in range(81) if i % 33 not in last]
    assert torch.allclose(back[:, :, others], plain[:, :, others], atol=1e-6)  # the chunk's first and last latents stay their own
    torch.nn.init.normal_(codec.blend_back_gates[2].weight, std=0.5)  # as if trained
    whole = codec.decode(z)
    stream = codec.stream_decoder()
    parts = torch.cat([stream.decode(z[:, :, k : k + 9]) for k in (0, 9, 18)], dim=2)
    assert torch.allclose(whole, parts, atol=1e-6)  # chunk by chunk, as a stream decodes, equals the whole
    codec.decoder_channels_last()
    assert torch.allclose(codec.decode(z), whole, atol=1e-5)


@torch.no_grad()
def test_blending_the_first_frames_again(video):
    torch.manual_seed(6)
    config = replace(video.config, previous_latent=True, blend_previous_frame=True, blend_next_frame=True)
    with pytest.raises(ValueError, match="reblend_first_frames needs blend_next_frame"):
        TinyVideoCodec(replace(config, blend_next_frame=False, reblend_first_frames=True))
    once = TinyVideoCodec(config).eval()
    torch.nn.init.normal_(once.prev_in[2].weight, std=0.3)
    torch.nn.init.normal_(once.blend_back_gates[2].weight, std=0.5)
    twice = TinyVideoCodec(replace(config, reblend_first_frames=True)).eval()
    twice.load_state_dict(once.state_dict())  # no new weights: the forward gates blend again
    z = torch.randn(2, 8, 18, 2, 3)
    plain = TinyVideoCodec(replace(config, blend_next_frame=False)).eval()
    plain.load_state_dict(once.state_dict(), strict=False)
    own, a, b = plain.decode(z), once.decode(z), twice.decode(z)
    # latents 2 to 8 of each chunk (chunk frames 5-7, 9-11, ..., 29-31) blend again toward the frame before,
    # which has since blended toward them; with the untrained gates' constant ramp (3/4, 1/2, 1/4) the
    # change is that ramp times the frame before's change
    again = [f for k in range(2, 9) for f in range(4 * k - 3, 4 * k)]
    for f in again:
        before = 4 * ((f - 1) // 4)
        for c in (0, 33):
            moved = a[:, :, c + before] - own[:, :, c + before]
            assert moved.abs().max() > 0.01
            assert torch.allclose(b[:, :, c + f] - a[:, :, c + f], (0.75, 0.5, 0.25)[(f - 1) % 4] * moved, atol=1e-5)
    others = [i for i in range(66) if i % 33 not in again]
    assert torch.equal(a[:, :, others], b[:, :, others])
    torch.nn.init.normal_(twice.blend_gates[2].weight, std=0.5)  # as if trained
    whole = twice.decode(z)
    stream = twice.stream_decoder()
    assert torch.allclose(whole, torch.cat([stream.decode(z[:, :, k : k + 9]) for k in (0, 9)], dim=2), atol=1e-6)


@torch.no_grad()
def test_audio_streams_exactly(audio):
    x = (torch.rand(1, 66000) * 2 - 1) * 0.3
    z = audio.encode(x, 24000)
    assert z.shape == (1, 8, 66)
    whole = audio.decode(z)
    stream = audio.stream_decoder()
    parts = torch.cat([stream.decode(z[:, :, :33]), stream.decode(z[:, :, 33:50]), stream.decode(z[:, :, 50:])], dim=1)
    assert whole.shape == parts.shape == (1, 66000)
    assert torch.allclose(whole, parts, atol=1e-5)


def test_audio_bad_input(audio):
    with pytest.raises(StreamcharError, match="audio is at 16000 Hz but this codec codes 24000 Hz"):
        audio.encode(torch.zeros(1, 2000), 16000)
    with pytest.raises(StreamcharError, match="not a multiple of the hop 1000"):
        audio.encode(torch.zeros(1, 1500))


@torch.no_grad()
def test_save_and_load(tmp_path, video, audio):
    video.latents_mean.fill_(0.5)
    save_codec(video, tmp_path / "v")
    again = load_codec(tmp_path / "v")
    stored = load_file(tmp_path / "v" / "model.safetensors")
    assert stored["dec.0.weight"].dtype == torch.float16 and stored["latents_mean"].dtype == torch.float32
    assert next(again.parameters()).dtype == torch.float32 and torch.equal(again.latents_mean, video.latents_mean)
    z = torch.randn(1, 8, 9, 2, 3)
    assert torch.allclose(video.decode(z), again.decode(z), atol=1e-2)
    video.latents_mean.fill_(0.0)
    cfg = load_config("tiny")
    with pytest.raises(StreamcharError, match="codes 48x32 frames into 8 channels, but preset 'tiny' needs 128x128 into 48"):
        load_video_codec(cfg, tmp_path / "v")
    save_codec(audio, tmp_path / "a")
    with pytest.raises(StreamcharError, match="holds an audio codec, not a video codec"):
        load_video_codec(cfg, tmp_path / "a")
    with pytest.raises(StreamcharError, match="8 channels, but preset 'tiny' needs 24000 Hz, hop 1000, 64 channels"):
        load_audio_codec(cfg, tmp_path / "a")


def test_damaged_codec(tmp_path, audio):
    save_codec(audio, tmp_path / "a")
    (tmp_path / "a" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(StreamcharError, match="is damaged"):
        load_codec(tmp_path / "a")
    with pytest.raises(StreamcharError, match="no codec at"):
        load_codec(tmp_path / "missing")


# ---------------------------------------------------------------- paper scale (diffusers)


def _small_wan(z_dim):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    return AutoencoderKLWan(
        base_dim=8, z_dim=z_dim, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True],
        is_residual=True, in_channels=12, out_channels=12, patch_size=2, scale_factor_spatial=16,
        latents_mean=[0.1] * z_dim, latents_std=[2.0] * z_dim,
    )


def _paper_cfg(**over):
    return load_config("paper", {"video": {"height": 32, "width": 32, **over.get("video", {})}, "audio": over.get("audio", {})})


@torch.no_grad()
def test_wan_vae_loads_from_a_local_directory(tmp_path):
    _small_wan(48).save_pretrained(tmp_path / "vae")
    codec = load_video_codec(_paper_cfg(), tmp_path / "vae")
    x = torch.rand(1, 3, 33, 32, 32) * 2 - 1
    z = codec.encode(x)
    assert z.shape == (1, 48, 9, 2, 2)
    assert codec.decode(z).shape == (1, 3, 33, 32, 32)
    # normalised with the checkpoint's statistics
    raw = codec.vae.encode(x).latent_dist.mode()
    assert torch.allclose(z, (raw - 0.1) / 2.0, atol=1e-5)


def test_wan_vae_of_another_geometry_is_refused(tmp_path):
    _small_wan(16).save_pretrained(tmp_path / "vae")
    with pytest.raises(StreamcharError, match="z_dim 16 \\(preset needs 48\\)"):
        load_video_codec(_paper_cfg(), tmp_path / "vae")


def _small_oobleck(rate, ratios, channels=8):
    from diffusers import AutoencoderOobleck

    torch.manual_seed(0)
    return AutoencoderOobleck(  # the encoder emits mean and scale: 2 x the latent channels
        encoder_hidden_size=2 * channels, downsampling_ratios=ratios, channel_multiples=[1] * len(ratios), decoder_channels=4,
        decoder_input_channels=channels, audio_channels=2, sampling_rate=rate,
    )


@torch.no_grad()
def test_oobleck_loads_and_codes_24_latents_per_second(tmp_path):
    _small_oobleck(49152, [2, 4, 4, 8, 8]).save_pretrained(tmp_path / "avae")
    codec = load_audio_codec(_paper_cfg(audio={"latent_channels": 8}), tmp_path / "avae")
    x = torch.rand(1, 2048 * 12) * 0.2
    z = codec.encode(x, 49152)
    assert z.shape == (1, 8, 12)
    assert codec.decode(z).shape == (1, 2048 * 12)
    parts = codec.stream_decoder()
    assert parts.decode(z[:, :, :6]).shape == parts.decode(z[:, :, 6:]).shape == (1, 2048 * 6)


def test_stable_audio_rate_is_named_in_the_error(tmp_path):
    _small_oobleck(44100, [2, 4, 4, 8, 8]).save_pretrained(tmp_path / "sao")
    with pytest.raises(StreamcharError, match="sampling_rate 44100 Hz \\(stream needs 49152 Hz\\)"):
        load_audio_codec(_paper_cfg(audio={"latent_channels": 8}), tmp_path / "sao")
    assert json.loads((tmp_path / "sao" / "config.json").read_text())["_class_name"] == "AutoencoderOobleck"


def test_paper_preset_needs_a_path():
    with pytest.raises(StreamcharError, match="needs a video VAE directory"):
        load_video_codec(load_config("paper"))
