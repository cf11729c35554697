"""Speech alone for Stage 1 (`data encode --speech`, `train orchestrator --data`): a LibriTTS-style
folder and a JSONL manifest become a speech-only latent cache with aligned words and each
speaker's other utterance as the reference voice; bad files are listed with their reason; the
orchestrator stage trains on it and the stages that need video refuse it."""

import json

import av
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from streamchar.cli.main import app
from streamchar.codecs.store import load_audio_codec
from streamchar.config import load_config
from streamchar.data.audio import write_wav
from streamchar.data.latents import LatentCache
from streamchar.data.speech import Voice, synthesize
from streamchar.data.speech_corpus import encode_speech
from streamchar.errors import StreamcharError
from streamchar.model.checkpoint import load_generator, new_generator
from streamchar.training.settings import load_train_config
from streamchar.training.stages import generator_loop

SENTENCES = {
    "spk1/a": ("The birch canoe slid on the smooth planks.", Voice("slt", 0, 175, 0, "flite")),
    "spk1/b": ("Glue the sheet to the dark blue background.", Voice("slt", 0, 175, 0, "flite")),
    "spk2/c": ("It's easy to tell the depth of a well.", Voice("en-us+f5", 50, 160)),
}


def _flac(path, audio, rate):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("flac", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray((np.clip(audio, -1, 1) * 32767).astype(np.int16)[None], format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech")
    for name, (text, voice) in SENTENCES.items():
        speech = synthesize(text, voice, 22050)  # another rate than the preset's: resampled on reading
        (root / name).parent.mkdir(exist_ok=True)
        (_flac if name == "spk1/b" else write_wav)(root / f"{name}{'.flac' if name == 'spk1/b' else '.wav'}", speech.audio, 22050)
        (root / f"{name}.txt").write_text(text)
    bad = root / "spk2"
    write_wav(bad / "untold.wav", synthesize("No transcript beside me.", Voice("en-us+f5"), 24000).audio, 24000)
    write_wav(bad / "short.wav", synthesize("Hi.", Voice("en-us+f5"), 24000).audio[:6000], 24000)
    (bad / "short.txt").write_text("Hi.")
    write_wav(bad / "silent.wav", np.zeros(48000, np.float32), 24000)
    (bad / "silent.txt").write_text("Nothing is said here at all.")
    (bad / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (bad / "broken.txt").write_text("A broken file.")
    return root


@pytest.fixture(scope="module")
def speech_cache(corpus, tmp_path_factory):
    cfg = load_config("tiny")
    out = tmp_path_factory.mktemp("cache") / "speech"
    summary = encode_speech(corpus, out, cfg, load_audio_codec(cfg).eval(), "tiny-audio", clips_per_shard=2)
    return cfg, out, summary


def test_a_speech_folder_becomes_a_speech_only_cache_with_aligned_words(speech_cache):
    cfg, out, summary = speech_cache
    cache = LatentCache(out)
    assert summary["utterances"] == 7 and summary["clips"] == 3 and summary["skipped"] == 4
    assert cache.settings["speech_only"] and [r["clip_id"] for r in cache.records] == ["spk1/a", "spk1/b", "spk2/c"]
    for i, rec in enumerate(cache.records):
        text, _ = SENTENCES[rec["clip_id"]]
        assert rec["transcript"] == text and [w["word"] for w in rec["words"]] == text.rstrip(".").split()
        assert all(0 <= w["start"] < w["end"] <= rec["frames"] / cfg.stream.fps + 0.05 for w in rec["words"])
        t = cache.tensors(i)
        assert "video" not in t and t["audio"].shape[0] == cfg.audio.latent_channels
        assert abs(t["audio"].shape[1] - rec["frames"]) <= 1  # 24 latents a second, as frames
    a, b = cache.tensors(0), cache.tensors(1)
    assert torch.allclose(a["reference_voice"], b["audio"]) and torch.allclose(b["reference_voice"], a["audio"])  # spk1's two: each other's
    assert "reference_voice" in cache.tensors(2)  # spk2's next utterance (too short to train on) still gives its voice
    reasons = {row["utterance"]: row["reason"] for row in json.loads((out / "skipped.json").read_text())}
    assert "no transcript" in reasons["spk2/untold"] and "shorter than one chunk" in reasons["spk2/short"]
    assert "silent" in reasons["spk2/silent"] and "cannot read" in reasons["spk2/broken"]


def test_a_rerun_keeps_the_shards_and_a_manifest_lists_utterances(speech_cache, corpus, tmp_path):
    cfg, out, summary = speech_cache
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}
    again = encode_speech(corpus, out, cfg, load_audio_codec(cfg).eval(), "tiny-audio", clips_per_shard=2)
    assert again["clips"] == 3 and {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")} == before
    manifest = tmp_path / "list.jsonl"
    manifest.write_text("\n".join(json.dumps({"audio": str(corpus / f"{name}.wav"), "text": text, "speaker": "one"})
                                  for name, (text, _) in SENTENCES.items() if name != "spk1/b"))  # fmt: skip
    listed = encode_speech(manifest, tmp_path / "listed", cfg, load_audio_codec(cfg).eval(), "tiny-audio")
    records = LatentCache(tmp_path / "listed").records
    assert listed["clips"] == 2 and {r["character_id"] for r in records} == {"one"}
    with pytest.raises(StreamcharError, match="line 1: each line must be a JSON object"):
        (tmp_path / "bad.jsonl").write_text("not json\n")
        encode_speech(tmp_path / "bad.jsonl", tmp_path / "bad", cfg, load_audio_codec(cfg).eval(), "tiny-audio")


@pytest.mark.slow
def test_the_orchestrator_stage_trains_on_speech_and_the_video_stages_refuse_it(speech_cache, tmp_path):
    cfg, out, _ = speech_cache
    config = tmp_path / "stage1.yaml"
    config.write_text(yaml.safe_dump({"preset": "tiny", "train": {"cache": "elsewhere", "steps": 2, "batch": 2, "lr": 1e-3, "warmup": 1,
                                                                  "save_every": 2, "log_every": 1, "ema_decay": 0}}))  # fmt: skip
    runner = CliRunner()
    r = runner.invoke(app, ["train", "orchestrator", "--config", str(config), "--run", str(tmp_path / "run"), "--data", str(out),
                            "--out", str(tmp_path / "stage1")])  # fmt: skip
    assert r.exit_code == 0, r.output
    trained, _, meta = load_generator(tmp_path / "stage1")
    start, _ = new_generator(cfg, 0)
    assert meta["stage"] == "orchestrator" and any(not torch.equal(a, b) for a, b in zip(trained.orchestrator.parameters(),
                                                                                      start.orchestrator.parameters()))  # fmt: skip
    r = runner.invoke(app, ["train", "orchestrator", "--config", str(config), "--run", str(tmp_path / "r2"), "--data", str(tmp_path)])
    assert isinstance(r.exception, StreamcharError) and "is not a latent cache" in str(r.exception)
    _, s = load_train_config(config, {"cache": str(out)})
    logged = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(row["audio"]) and np.isfinite(row["pointer"]) and "video" not in row for row in logged)
    with pytest.raises(StreamcharError, match="speech-only cache .* the joint stage needs video"):
        generator_loop("joint", cfg, s, tmp_path / "joint")
