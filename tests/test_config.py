import pytest
import yaml
from pydantic import ValidationError

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


PAPER_TRAINING = {  # file: (stage's steps, global batch, lr) as §5.1 gives them
    "paper-stage1.yaml": (80000, 640, 6e-5), "paper-stage2.yaml": (100000, 128, 1e-5),
    "paper-dmd.yaml": (600, 64, 2e-6), "paper-rollout.yaml": (400, 64, 2e-6),
}


@pytest.mark.parametrize("name", sorted(PAPER_TRAINING))
def test_the_paper_training_configs_load_with_the_papers_values(name):
    from pathlib import Path

    from streamchar.training.settings import load_train_config

    cfg, s = load_train_config(Path(__file__).resolve().parents[1] / "configs" / name)
    assert cfg.preset == "paper" and (s.steps, s.global_batch, s.lr) == PAPER_TRAINING[name]
    if name in ("paper-dmd.yaml", "paper-rollout.yaml"):
        assert (s.distill.fake_lr, s.distill.student_steps) == (4e-7, 4)
    assert s.accumulation(8) * s.batch * 8 == s.global_batch  # 8 GPUs reach the paper's batch by accumulation


def test_a_global_batch_sets_the_accumulation_or_says_what_would_split_it():
    from streamchar.training.settings import TrainSettings

    s = TrainSettings(cache="c", steps=1, batch=8, global_batch=640)
    assert (s.accumulation(1), s.accumulation(8), TrainSettings(cache="c", steps=1, grad_accum=3).accumulation(4)) == (80, 10, 3)
    with pytest.raises(StreamcharError, match="cannot be split over 3 processes"):
        s.accumulation(3)
    with pytest.raises(StreamcharError, match="not a multiple of train.batch 7 x 4 process\\(es\\) = 28; a batch of 4"):
        TrainSettings(cache="c", steps=1, batch=7, global_batch=64).accumulation(4)
    with pytest.raises(ValidationError, match="global_batch or grad_accum, not both"):
        TrainSettings(cache="c", steps=1, global_batch=64, grad_accum=2)


def test_config_show_prints_a_training_files_model_and_train_sections(tmp_path):
    from typer.testing import CliRunner

    from streamchar.cli.main import app

    r = CliRunner().invoke(app, ["config", "show", "--config", "configs/paper-rollout.yaml"])
    assert r.exit_code == 0, r.output
    shown = yaml.safe_load(r.output)
    assert shown["preset"] == "paper" and shown["orchestrator"]["prompt_tokens"] == 64
    assert shown["train"]["steps"] == 400 and shown["train"]["distill"]["truncate_at_pointer"] is True
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: configs/nowhere.yaml\ntrain: {steps: 3}\n")
    r = CliRunner().invoke(app, ["config", "show", "--config", str(bad)])
    assert isinstance(r.exception, StreamcharError) and "cannot read the base" in str(r.exception)  # main() prints it as one line
