"""The paper preset's audio VAE (`streamchar codec train --kind audio --preset paper`): diffusers'
AutoencoderOobleck at 49,152 Hz, hop 2048, 64 channels. Reduced widths on a CPU: the layout's
numbers, the choices refused, Stable Audio Open's layout taken as --init at the new rate, WAV and
FLAC read and resampled, and (slow) a few steps on SynthTalk's speech that lower the loss, resume,
and leave a folder the paper preset loads and codes a chunk with."""

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from streamchar.config import load_config
from streamchar.errors import StreamcharError

REDUCED = {"width": 4, "multiples": (1, 1, 1, 1, 1)}  # the decoder 4 channels wide; the encoder 128 (fixed by the 64-channel latent)


@pytest.fixture(scope="module")
def paper():
    return load_config("paper")


def test_the_layout_codes_the_paper_stream(paper):
    from streamchar.training.codec_oobleck import OOBLECK_LAYOUT

    hop = math.prod(OOBLECK_LAYOUT["downsampling_ratios"])
    assert hop == paper.audio.hop_length == 2048 and paper.audio.sample_rate == 49152
    assert paper.audio.sample_rate / hop == paper.stream.audio_latent_rate == paper.stream.fps == 24  # one latent per video frame
    assert paper.stream.chunk_frames == paper.stream.chunk_audio_latents == 33
    assert paper.stream.chunk_audio_latents * hop == 67584 == paper.stream.chunk_seconds * paper.audio.sample_rate


@pytest.mark.parametrize(("kind", "flags", "error"), [
    ("video", {}, "trains the audio VAE \\(--kind audio\\); the video VAE is Wan2.2's"),
    ("audio", {"width": 0}, "--width is the decoder's channels \\(Stable Audio Open: 128\\), at least 1; got 0"),
    ("audio", {"multiples": (1, 2, 4, 8)}, "--multiples takes 5 whole numbers of at least 1"),
    ("audio", {"multiples": (1, 2, 0, 8, 16)}, "--multiples takes 5 whole numbers of at least 1"),
    ("audio", {"segment": 0}, "--segment is latents per training segment, at least 1"),
    ("audio", {"steps": 0}, "--steps, --batch and --lr must be positive"),
])  # fmt: skip
def test_choices_that_cannot_work_are_refused_first(tmp_path, paper, kind, flags, error):
    from streamchar.training.codec_oobleck import OobleckSettings, check_oobleck_settings, train_oobleck

    s = OobleckSettings(**{"steps": 1, "batch": 1, **flags})
    with pytest.raises(StreamcharError, match=error):
        check_oobleck_settings(kind, s, paper)
    if kind == "audio":
        with pytest.raises(StreamcharError, match=error):  # before the data is read: there is none here
            train_oobleck(tmp_path / "no-data", tmp_path / "run", tmp_path / "out", paper, s)
    assert not (tmp_path / "run").exists() and not (tmp_path / "out").exists()


def test_a_config_at_another_rate_is_refused(paper):
    from streamchar.training.codec_oobleck import OobleckSettings, check_oobleck_settings

    other = load_config("paper", {"audio": {"sample_rate": 48000, "hop_length": 2000}})  # 24 latents per second too, but not the layout's hop
    with pytest.raises(StreamcharError, match="codes 2048 samples per latent, 49152 Hz at 24 latents per second; the config asks 48000 Hz, hop 2000"):
        check_oobleck_settings("audio", OobleckSettings(steps=1, batch=1), other)


@pytest.mark.parametrize(("args", "error"), [
    (["--kind", "video", "--preset", "paper"], "the video VAE is Wan2.2's"),
    (["--kind", "audio", "--preset", "paper", "--decoder-only"], "--decoder-only: for the tiny codecs"),
    (["--kind", "audio", "--preset", "paper", "--multiples", "1,2,x"], "--multiples takes whole numbers separated by commas"),
    (["--kind", "audio", "--width", "8"], "--width, --multiples and --segment are for the paper preset's audio VAE"),
])  # fmt: skip
def test_the_command_refuses_with_one_error(tmp_path, args, error):
    from streamchar.cli.main import app

    r = CliRunner().invoke(app, ["codec", "train", *args, "--data", str(tmp_path / "none"), "--run", str(tmp_path / "run"),
                                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert isinstance(r.exception, StreamcharError) and error in str(r.exception), r.output
    assert not (tmp_path / "run").exists()


def _oobleck(width=4, latent=64, ratios=(2, 4, 4, 8, 8), rate=44100, seed=1):
    from diffusers import AutoencoderOobleck

    torch.manual_seed(seed)
    return AutoencoderOobleck(encoder_hidden_size=2 * latent, downsampling_ratios=list(ratios), channel_multiples=[1, 1, 1, 1, 1],
                              decoder_channels=width, decoder_input_channels=latent, audio_channels=2, sampling_rate=rate)  # fmt: skip


def test_stable_audio_opens_layout_loads_as_it_is_at_the_new_rate(tmp_path, paper):
    from streamchar.training.codec_oobleck import OobleckSettings, build_vae

    sao = _oobleck()  # Stable Audio Open's layout at 44,100 Hz, reduced
    sao.save_pretrained(tmp_path / "sao")
    vae, before = build_vae(paper, OobleckSettings(steps=1, batch=1, init=str(tmp_path / "sao")))
    assert before == 44100 and vae.config.sampling_rate == 49152 and vae.config.decoder_channels == 4
    theirs = sao.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in vae.state_dict().items()) and len(theirs) == len(vae.state_dict())


def test_an_init_of_another_layout_is_refused_naming_each_misfit(tmp_path, paper):
    from streamchar.training.codec_oobleck import OobleckSettings, train_oobleck

    _oobleck(latent=32, ratios=(2, 4, 4, 4, 8)).save_pretrained(tmp_path / "other")
    s = OobleckSettings(steps=1, batch=1, init=str(tmp_path / "other"), width=8)
    with pytest.raises(StreamcharError, match="does not fit: hop 1024 \\(the preset needs 2048\\); 32 latent channels \\(the preset needs 64\\); "
                                              "decoder_channels 4, which --width 8 cannot change"):  # fmt: skip
        train_oobleck(tmp_path / "no-data", tmp_path / "run", tmp_path / "out", paper, s)
    with pytest.raises(StreamcharError, match="no diffusers AutoencoderOobleck there"):
        train_oobleck(tmp_path / "no-data", tmp_path / "run", tmp_path / "out", paper, OobleckSettings(steps=1, batch=1, init=str(tmp_path)))


def test_a_folder_of_wav_and_flac_is_read_and_resampled(tmp_path):
    import av

    from streamchar.data.audio import write_wav
    from streamchar.training.codec_data import speech_audio

    t = np.arange(22050) / 22050
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    (tmp_path / "in" / "nested").mkdir(parents=True)
    write_wav(tmp_path / "in" / "a.wav", tone, 22050)  # one second at 22,050 Hz
    with av.open(str(tmp_path / "in" / "nested" / "b.flac"), "w") as out:  # two seconds at 48,000 Hz, 16-bit FLAC
        stream = out.add_stream("flac", rate=48000, layout="mono")
        stream.format = "s16"
        pcm = (0.25 * np.sin(2 * np.pi * 440 * np.arange(96000) / 48000) * 32767).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.rate = 48000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    (tmp_path / "in" / "notes.txt").write_text("not audio")
    audio, info = speech_audio(tmp_path / "in", 49152, 10)
    assert [len(a) for a in audio] == [49152, 2 * 49152]
    assert info["files"] == 2 and info["source_rates"] == [22050, 48000] and info["seconds"] == 3.0
    assert abs(np.abs(audio[0]).max() - 0.5) < 0.02 and abs(np.abs(audio[1]).max() - 0.25) < 0.02  # FLAC's integers scaled to [-1, 1]
    (tmp_path / "empty").mkdir()
    with pytest.raises(StreamcharError, match="holds no .wav, .flac, .mp3 files"):
        speech_audio(tmp_path / "empty", 49152, 10)


def _roundtrip_loss(vae, x):
    from streamchar.training.codec_losses import stft_loss
    from streamchar.training.codec_objectives import OOBLECK_STFT_SIZES

    with torch.no_grad():
        inputs = x[:, None].expand(-1, vae.config.audio_channels, -1)
        y = vae.decode(vae.encode(inputs).latent_dist.mode()).sample
        return stft_loss(y.flatten(0, 1), inputs.flatten(0, 1), OOBLECK_STFT_SIZES).item()


@pytest.mark.slow
def test_a_few_steps_on_synthtalk_lower_the_loss_resume_and_leave_what_the_paper_preset_loads(small_set, tmp_path, paper):
    from streamchar.codecs.paper import OobleckAudioCodec
    from streamchar.codecs.store import load_audio_codec
    from streamchar.training.codec_data import speech_audio
    from streamchar.training.codec_oobleck import OobleckSettings, build_vae, train_oobleck

    root, _ = small_set  # SynthTalk at 24 kHz: resampled to 49,152 Hz
    base = dict(batch=2, lr=1e-3, segment=2, save_every=2, log_every=1, max_clips=4, threads=1, **REDUCED)
    audio, _ = speech_audio(root, 49152, 4)
    fixed = torch.from_numpy(np.stack([a[len(a) // 2 - 4096 : len(a) // 2 + 4096] for a in audio]))  # 4 latents of speech from each clip
    before = _roundtrip_loss(build_vae(paper, OobleckSettings(steps=4, **base))[0].eval(), fixed)  # the same seed the run starts from
    first = train_oobleck(root, tmp_path / "run", tmp_path / "vae", paper, OobleckSettings(steps=2, **base), command="first")
    assert first["resumed_from"] == 0 and first["data"]["source_rates"] == [24000]
    summary = train_oobleck(root, tmp_path / "run", tmp_path / "vae", paper, OobleckSettings(steps=4, **base), command="again")
    assert summary["resumed_from"] == 2  # the same run folder: continued from its checkpoint, not started over
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2, 3, 4] and all(row["kl"] > 0 for row in log)
    out = tmp_path / "vae"
    assert {p.name for p in out.iterdir()} >= {"config.json", "diffusion_pytorch_model.safetensors", "README.md", "train_log.jsonl"}
    assert not list(out.glob("*.bin")) and not list(tmp_path.glob(".vae.*"))  # safetensors only; no work folder left
    codec = OobleckAudioCodec.load(out, paper)  # as `checkpoint assemble --audio-vae` checks it
    assert isinstance(load_audio_codec(paper, out), OobleckAudioCodec)  # and as a stream loads it
    after = _roundtrip_loss(codec.vae, fixed)
    assert after < 0.9 * before, (before, after)
    torch.manual_seed(0)
    chunk = 0.1 * torch.randn(1, paper.stream.chunk_audio_latents * paper.audio.hop_length)
    z = codec.encode(chunk, 49152)
    assert z.shape == (1, 64, 33) and codec.decode(z).shape == (1, 67584)
    card = (out / "README.md").read_text()
    assert "SynthTalk training clips" in card and "4 steps" in card and "    again" in card and "nothing above 12,000 Hz" in card
