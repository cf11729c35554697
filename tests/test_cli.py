import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from streamchar.cli.main import app


def run(*args):
    return subprocess.run([sys.executable, "-m", "streamchar", *args], capture_output=True, text=True, timeout=120)


def test_help_on_every_command():
    for cmd in ([], ["config", "show"], ["data", "synth"], ["data", "inspect"], ["data", "long"], ["bench", "synth"], ["bench", "dit"],
                ["bench", "pace"], ["bench", "stream"], ["eval", "short"], ["eval", "long"], ["train", "joint"], ["generate"], ["info"], ["demo"],
                ["bench", "paper"], ["checkpoint", "assemble"], ["data", "prepare"], ["bench", "voices"], ["bench", "align"]):
        r = CliRunner().invoke(app, [*cmd, "--help"])  # in this process: one import, not one per command
        assert r.exit_code == 0 and "Usage" in r.output, cmd


def test_every_group_lists_its_commands():
    import typer
    from typer._click import Context

    groups = {
        "": ["generate", "serve", "info", "demo", "config", "data", "bench", "codec", "eval", "train", "checkpoint"],
        "config": ["reference", "show"],
        "data": ["prepare", "corpus", "long", "synth", "inspect", "encode"],
        "bench": ["paper", "stream", "voices", "align", "pointer", "synth", "codec", "pace", "dit", "text", "serve"],
        "codec": ["train"],
        "eval": ["train-sync", "train-identity", "short", "long", "render"],
        "train": ["orchestrator", "joint", "dmd", "rollout", "durations"],
        "checkpoint": ["assemble"],
    }
    root = typer.main.get_command(app)
    for name, commands in groups.items():
        group = root.get_command(Context(root), name) if name else root
        assert list(group.list_commands(Context(group))) == commands, name


def test_ranges_are_refused_before_any_work(tmp_path):
    cases = [
        (["data", "synth", "--out", str(tmp_path / "x"), "--clips", "0"], "--clips"),
        (["data", "prepare", "--in", str(tmp_path), "--out", str(tmp_path / "y"), "--workers", "0"], "--workers"),
        (["bench", "text", "--cache", str(tmp_path), "--windows", "1"], "--windows"),
        (["bench", "serve", "--trials", "0"], "--trials"),
        (["bench", "paper", "--chunks", "1"], "--chunks"),
        (["generate", "--text", "hi", "--character", "unseen-0", "--steps", "0"], "--steps"),
        (["generate", "--text", "hi", "--character", "unseen-0", "--guidance", "-1"], "--guidance"),
        (["eval", "render", "--out", str(tmp_path / "z"), "--threads", "0"], "--threads"),
    ]
    for args, option in cases:
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2 and f"Invalid value for '{option}'" in r.output, (args, r.output)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists() and not (tmp_path / "z").exists()


def test_config_show_prints_the_resolved_yaml():
    r = run("config", "show", "--preset", "paper")
    assert r.returncode == 0
    data = yaml.safe_load(r.stdout)
    assert data["dit"]["num_layers"] == 30 and data["derived"]["chunk_frames"] == 33


@pytest.mark.slow
def test_errors_are_one_line(tmp_path):
    cases = [
        (["config", "show", "--preset", "huge"], "unknown preset 'huge'; accepted: paper, tiny"),
        (["data", "synth", "--out", str(tmp_path / "x"), "--clips", "1", "--seconds", "0"], "--seconds must be in (0, "),
        (["data", "inspect", str(tmp_path)], "is not a SynthTalk set"),
        (["bench", "pace", "--cache", str(tmp_path)], "is not a latent cache"),
    ]
    bad = tmp_path / "bad.yaml"
    bad.write_text("stream:\n  chunk_latent_frames: 8\n")
    cases.append((["config", "show", "--config", str(bad)], "stream.chunk_latent_frames"))
    for args, message in cases:
        r = run(*args)
        assert r.returncode == 2, (args, r.stderr)
        lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and message in lines[0], r.stderr
        assert "Traceback" not in r.stderr


@pytest.mark.slow  # it makes a set
def test_synth_and_inspect(tmp_path):
    out = tmp_path / "set"
    r = run("data", "synth", "--out", str(out), "--clips", "2", "--seed", "1", "--workers", "1")
    assert r.returncode == 0, r.stderr
    r = run("data", "inspect", str(out), "--json", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    assert (out / "contact_sheet.png").stat().st_size > 1000
    assert '"clips": 2' in (tmp_path / "s.json").read_text()


def test_a_command_that_needs_an_extra_names_it(monkeypatch, capsys):
    """A core install lacks the serve, train and eval extras; the command says which to install."""
    from streamchar.cli import main as cli

    def serve_without_uvicorn():
        raise ModuleNotFoundError("No module named 'uvicorn'", name="uvicorn")

    monkeypatch.setattr(cli, "app", serve_without_uvicorn)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2 and "pip install 'streamchar[serve]'" in capsys.readouterr().err
    monkeypatch.setattr(cli, "app", lambda: __import__("a_module_no_extra_brings"))
    with pytest.raises(ModuleNotFoundError):  # anything else is a bug, reported as one
        cli.main()
