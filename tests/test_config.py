import pytest

from streamchar.config import PRESETS, load_config
from streamchar.errors import StreamcharError


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_share_the_stream_geometry(name):
    cfg = load_config(name)
    assert cfg.stream.chunk_frames == 33
    assert cfg.stream.chunk_seconds == pytest.approx(1.375)
    assert cfg.audio.sample_rate // cfg.audio.hop_length == 24
    assert cfg.chunk_samples == 33 * cfg.audio.hop_length


def test_paper_preset_has_wan_and_qwen_dimensions():
    cfg = load_config("paper")
    assert (cfg.dit.num_layers, cfg.dit.num_heads, cfg.dit.head_dim, cfg.dit.ffn_dim) == (30, 24, 128, 14336)
    assert cfg.video.latent_channels == 48 and cfg.dit.text_dim == 4096
    o = cfg.orchestrator
    assert (o.num_layers, o.hidden_size, o.num_heads, o.num_kv_heads, o.ffn_dim) == (36, 2048, 16, 2, 11008)
    assert (cfg.audio.sample_rate, cfg.audio.hop_length) == (49152, 2048)


@pytest.mark.parametrize(
    "override, field",
    [
        ({"stream": {"chunk_latent_frames": 8}}, "stream.chunk_latent_frames"),
        ({"stream": {"chunk_audio_latents": 32}}, "stream.chunk_audio_latents"),
        ({"stream": {"audio_latent_rate": 25}}, "stream.audio_latent_rate"),
        ({"video": {"height": 120}}, "video.height"),
        ({"video": {"width": 136}}, "video.width"),
        ({"audio": {"hop_length": 999}}, "audio.hop_length"),
        ({"dit": {"num_layers": 0}}, "dit.num_layers"),
        ({"synthtalk": {"colour": 3}}, "synthtalk.colour"),
    ],
)
def test_broken_config_is_rejected_naming_the_field(override, field):
    with pytest.raises(StreamcharError, match=field.replace(".", r"\.")):
        load_config("tiny", override)


def test_yaml_overrides_a_preset(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("video:\n  height: 160\n  width: 160\nsynthtalk:\n  max_sentences: 2\n")
    cfg = load_config("tiny", path)
    assert (cfg.video.height, cfg.video.width, cfg.synthtalk.max_sentences) == (160, 160, 2)
    assert cfg.video.latent_channels == load_config("tiny").video.latent_channels


def test_yaml_may_name_its_preset(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("preset: paper\nvideo:\n  height: 256\n")
    cfg = load_config(None, path)
    assert cfg.preset == "paper" and cfg.video.height == 256 and cfg.dit.num_layers == 30


def test_yaml_preset_must_agree_with_an_explicit_one(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("preset: tiny\n")
    with pytest.raises(StreamcharError, match="names preset 'tiny' but --preset is 'paper'"):
        load_config("paper", path)
    path.write_text("preset: [1]\n")
    with pytest.raises(StreamcharError, match="unknown preset"):
        load_config(None, path)


def test_vae_stride_is_fixed():
    with pytest.raises(StreamcharError, match="stream.vae_spatial_stride: must be 16"):
        load_config("tiny", {"stream": {"vae_spatial_stride": 8}, "video": {"height": 120, "width": 120}})


def test_unknown_preset_and_bad_files():
    with pytest.raises(StreamcharError, match="unknown preset 'huge'; accepted: paper, tiny"):
        load_config("huge")
    with pytest.raises(StreamcharError, match="does not exist"):
        load_config("tiny", "/nonexistent/c.yaml")


def test_yaml_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(StreamcharError, match="mapping"):
        load_config("tiny", path)


def test_history_is_whole_chunks_of_at_most_15_s():
    assert load_config("paper").stream.history_chunks == 10  # 13.75 s
    assert load_config("tiny").stream.history_chunks == 6  # what SynthTalk's clips can show in training
    with pytest.raises(StreamcharError, match="history_seconds"):
        load_config("tiny", {"stream": {"history_seconds": 20.0}})


def test_a_config_file_changes_how_a_checkpoint_reads_and_nothing_its_weights_need(tmp_path):
    from streamchar.model.checkpoint import load_generator

    even = tmp_path / "even.yaml"
    even.write_text("orchestrator:\n  reading: plan\n  plan:\n    word_pace: null\n")
    model, _, _ = load_generator("tiny-student", even)
    assert model.cfg.orchestrator.reading == "plan" and model.cfg.orchestrator.plan.word_pace is None
    assert model.cfg.orchestrator.plan.text_rate == load_config("tiny").orchestrator.plan.text_rate  # the rest is the checkpoint's
    unplanned = tmp_path / "unplanned.yaml"
    unplanned.write_text("orchestrator:\n  plan:\n    word_pace: null\n")  # plan-pointer moves a word plan: it needs one
    with pytest.raises(StreamcharError, match="word_pace"):
        load_generator("tiny-student", unplanned)
    deeper = tmp_path / "deeper.yaml"
    deeper.write_text("dit:\n  num_layers: 2\n")
    with pytest.raises(StreamcharError, match="differs in dit.num_layers"):
        load_generator("tiny-student", deeper)
    other = tmp_path / "paper.yaml"
    other.write_text("preset: paper\n")
    with pytest.raises(StreamcharError, match="trained with 'tiny'"):
        load_generator("tiny-student", other)


def test_the_configuration_page_is_current():
    """docs/configuration.md is `streamchar config reference`'s output: every field with a description."""
    from pathlib import Path

    from streamchar.cli.config_doc import config_reference

    page = config_reference()
    assert (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text() == page, \
        "run `streamchar config reference > docs/configuration.md`"
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    undescribed = [line for line in rows if not line.split("|")[-2].strip()]
    assert rows and not undescribed, undescribed[:3]
