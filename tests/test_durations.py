"""The learned word plan: the orchestrator's duration head, its loss and training stage, and the
plan-pointer reading that places latents by the plan and follows the pointer's reading."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from streamchar.config import load_config
from streamchar.errors import StreamcharError
from streamchar.model.checkpoint import new_generator
from streamchar.model.durations import duration_loss, starts_from
from streamchar.streaming.reading import OVERRUN_CHUNKS, RETIME_DEADBAND_SECONDS, RETIME_GAIN, PlanPointerReader, make_reader

CHUNK = 33 / 24


def test_the_tiny_preset_reads_by_a_learned_plan_that_follows_the_pointer():
    oc = load_config("tiny").orchestrator
    assert oc.reading == "plan-pointer" and oc.plan.word_pace.durations == "learned" and oc.durations is not None
    assert load_config("paper").orchestrator.reading == "pointer"
    with pytest.raises(StreamcharError, match="duration head"):
        load_config("tiny", {"orchestrator": {"durations": None}})
    with pytest.raises(StreamcharError, match="needs it"):
        load_config("tiny", {"orchestrator": {"plan": None}})


def test_the_head_plans_every_word_in_order_and_leaves_the_rest_of_the_model_as_it_was():
    cfg = load_config("tiny")
    with_head, _ = new_generator(cfg, seed=3)
    without, _ = new_generator(load_config("tiny", {"orchestrator": {"durations": None, "plan": {"word_pace": {"durations": "letters"}}}}), seed=3)
    others = {k: v for k, v in with_head.state_dict().items() if ".durations." not in k}
    assert others.keys() == without.state_dict().keys() and all(torch.equal(v, without.state_dict()[k]) for k, v in others.items())
    tok = with_head.tokenizer or __import__("streamchar.model.tokenizer", fromlist=["x"]).build_tokenizer(cfg)
    tokens = tok.encode("The birch canoe slid on the smooth planks. Glue the sheet, then stop.")
    times = with_head.orchestrator.word_times(tokens.ids, tokens.word_numbers, tokens.words, torch.randn(1, 64, 50))
    assert len(times) == tokens.words == 13
    flat = np.array(times).ravel()
    assert flat[0] >= 0 and np.all(np.diff(flat) >= 0) and all(b - a >= 0.02 for a, b in times)
    with pytest.raises(StreamcharError, match="no word-duration head"):
        without.orchestrator.word_times(tokens.ids, tokens.word_numbers, tokens.words, torch.randn(1, 64, 50))


def test_the_duration_loss_is_zero_at_the_truth_and_counts_a_rate_error_in_every_later_start():
    target = torch.tensor([[[0.3, 0.6], [0.7, 1.0], [1.5, 1.9]]])
    durations, pauses, lead = torch.tensor([[0.3, 0.3, 0.4]]), torch.tensor([[0.1, 0.5, 0.0]]), torch.tensor([0.3])
    real = torch.ones(1, 3, dtype=torch.bool)
    assert torch.allclose(starts_from(durations, pauses, lead), target[..., 0])
    assert float(duration_loss(durations, pauses, lead, real, target, torch.tensor([True]))["loss"]) == pytest.approx(0.0, abs=1e-6)
    slow = duration_loss(durations * 1.2, pauses, lead, real, target, torch.tensor([True]))
    assert float(slow["start"]) == pytest.approx((0.06 + 0.12) / 3, abs=1e-6)  # the second word 0.06 s late, the third 0.12 s
    mid = duration_loss(durations, pauses, lead + 1.0, real, target, torch.tensor([False]))
    assert float(mid["loss"]) == pytest.approx(0.0, abs=1e-6)  # a piece from mid-text has no lead to learn


def _reader(times, text=None):
    cfg = load_config("tiny")
    from streamchar.model.tokenizer import build_tokenizer

    words = len(times)
    letters = "abcdefghijklmnopqrstuvwxyz"
    text = text or " ".join(f"w{letters[i // 26]}{letters[i % 26]}" for i in range(words)) + "."  # words of letters: "w1" is two words
    reader = make_reader(cfg, build_tokenizer(cfg), lambda t: list(times)[: len(t.split())])
    reader.append(text)
    return reader


def test_the_plan_pointer_reader_counts_cuts_and_ends_by_the_pointer():
    times = [(0.2 + 0.4 * i, 0.5 + 0.4 * i) for i in range(40)]  # a word every 0.4 s
    reader = _reader(times)
    assert isinstance(reader, PlanPointerReader) and reader.reads_pointer
    with pytest.raises(StreamcharError, match="duration head"):
        make_reader(load_config("tiny"), reader.tokenizer)  # the learned plan has no timer without the model
    spoken = [reader.finish_chunk(0, p) for p in (3.0, 6.5, 10.0)]  # the pointer's readings (as planned: 3, 6.8, 10.3 words)
    assert spoken == [3.0, 6.5, 10.0] and reader.word_times() == times  # within the deadband: the plan is kept
    for _ in range(5):
        reader.finish_chunk(0, reader.spoken[-1] + 3.4)
    first = reader.window_start()
    assert first == 2 and reader.cut() == min(int(reader.spoken[first - 1]), 6)  # the reading, never past the plan's finished words


def test_a_reading_behind_the_plan_moves_the_words_ahead_later():
    times = [(0.2 + 0.4 * i, 0.5 + 0.4 * i) for i in range(40)]
    reader = _reader(times)
    reader.finish_chunk(0, 1.0)  # at 1.375 s the plan has finished 3 words; the speech only 1
    lag = reader.lag_seconds(1.0)
    assert lag == pytest.approx(CHUNK - 0.5) and lag > RETIME_DEADBAND_SECONDS
    moved = reader.word_times()
    ahead = [i for i, (a, _) in enumerate(times) if a >= CHUNK]
    assert moved[: ahead[0]] == times[: ahead[0]]  # words begun keep their times
    assert all(m[0] - t[0] == pytest.approx(RETIME_GAIN * lag) for m, t in zip(moved[ahead[0] :], times[ahead[0] :]))
    reader2 = _reader(times)
    reader2.finish_chunk(0, 8.0)  # ahead of the plan: the words ahead come sooner, never before now
    assert reader2.word_times()[ahead[0]][0] >= CHUNK and reader2.word_times()[ahead[0]][0] < times[ahead[0]][0]


def test_the_stream_ends_a_tail_after_the_reading_hears_the_last_word_and_runs_on_a_little_while_it_has_not():
    times = [(0.2 + 0.4 * i, 0.5 + 0.4 * i) for i in range(6)]  # ends at 2.5 s
    tail = load_config("tiny").orchestrator.plan.word_pace.tail_seconds
    reader = _reader(times)
    assert reader.end_seconds() == pytest.approx(2.5 + tail)
    reader.finish_chunk(0, 6.0)  # all heard by 1.375 s: ends a tail after this chunk
    assert reader.end_seconds() == pytest.approx(CHUNK + tail)
    late = _reader(times)
    late.finish_chunk(0, 2.0)
    late.finish_chunk(0, 4.0)  # 2.75 s: the words ahead were moved later; the plan ends after this chunk
    planned = late.word_times()[-1][1] + tail
    assert planned > 2.5 + tail and late.end_seconds() == pytest.approx(planned)
    late.finish_chunk(0, 4.0)  # 4.125 s: past the plan's end, and the reading has not heard the last word: one chunk more
    assert late.end_seconds() == pytest.approx(4 * CHUNK)
    for _ in range(OVERRUN_CHUNKS + 1):
        late.finish_chunk(0, 4.0)
    assert late.end_seconds() <= len(late.spoken) * CHUNK  # a reading that never gets there does not hold the stream


def test_a_stream_plans_its_words_by_the_duration_head_with_the_reference_voice(plan_session):
    cfg = load_config("tiny")
    s = plan_session(cfg)("The birch canoe slid on the smooth planks.")
    tokens = s.tokenizer.encode("The birch canoe slid on the smooth planks.")
    want = s.model.orchestrator.word_times(tokens.ids, tokens.word_numbers, tokens.words, s.conditions.reference_audio)
    np.testing.assert_allclose(np.asarray(s.word_times()), np.asarray(want), rtol=1e-6)  # (pytest 9.2's approx refuses nested tuples)
    chunk = s.next_chunk(0)
    assert chunk.words_spoken == pytest.approx(min(8.0, chunk.pointer_words))  # the reader counts by the pointer


BLOCK_ESPEAK = '''
import ctypes, ctypes.util
_find, _cdll = ctypes.util.find_library, ctypes.CDLL.__init__
ctypes.util.find_library = lambda name: None if "espeak" in name else _find(name)
def _init(self, name, *a, **k):
    if name and "espeak" in str(name):
        raise OSError(f"{name}: blocked by the test")
    _cdll(self, name, *a, **k)
ctypes.CDLL.__init__ = _init
'''


@pytest.mark.slow
def test_generate_streams_a_picture_and_voice_without_espeak(tmp_path):
    from PIL import Image

    from streamchar.data.audio import write_wav
    from streamchar.model.checkpoint import save_generator

    cfg = load_config("tiny")
    model, prompt = new_generator(cfg, seed=0)
    save_generator(tmp_path / "gen", model, prompt, {"stage": "joint", "step": 0})
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(tmp_path / "me.png")
    write_wav(tmp_path / "me.wav", (0.1 * rng.standard_normal(3 * 24000)).astype(np.float32), 24000)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCK_ESPEAK)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    speak = "from streamchar.data.speech import spoken_word_times, Voice; spoken_word_times('hi', Voice('en-us'))"
    probe = subprocess.run([sys.executable, "-c", speak], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "espeak-ng library not found" in probe.stderr  # the block works
    cmd = [sys.executable, "-m", "streamchar", "generate", "--checkpoint", str(tmp_path / "gen"),
           "--text", "Glue the sheet to the dark blue background.",
           "--reference-image", str(tmp_path / "me.png"), "--reference-voice", str(tmp_path / "me.wav"), "--prompt", "a person talks",
           "--steps", "1", "--out", str(tmp_path / "out.mp4"), "--report", str(tmp_path / "out.json")]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["summary"]["chunks"] >= 1 and Path(tmp_path / "out.mp4").stat().st_size > 0


@pytest.mark.slow
def test_serve_streams_an_uploaded_picture_and_voice_without_espeak(tmp_path):
    import io
    import time

    import httpx
    from PIL import Image
    from serve_viewer import Viewer

    from streamchar.data.audio import write_wav
    from streamchar.model.checkpoint import save_generator
    from streamchar.serving.bench import free_port

    model, prompt = new_generator(load_config("tiny"), seed=0)
    save_generator(tmp_path / "gen", model, prompt, {"stage": "joint", "step": 0})
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCK_ESPEAK)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "streamchar", "serve", "--checkpoint", str(tmp_path / "gen"), "--port", str(port),
                               "--max-sessions", "1"], env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if c.get("/api/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
            png, wav = io.BytesIO(), io.BytesIO()
            Image.new("RGB", (96, 96), (180, 150, 120)).save(png, "PNG")
            write_wav(tmp_path / "v.wav", (0.1 * np.random.default_rng(0).standard_normal(2 * 24000)).astype(np.float32), 24000)
            wav.write((tmp_path / "v.wav").read_bytes())
            r = c.post("/api/sessions/upload", files={"image": ("a.png", png.getvalue()), "voice": ("v.wav", wav.getvalue())},
                       data={"text": "Glue the sheet to the dark blue background.", "prompt": "a person talks"})  # fmt: skip
            assert r.status_code == 201, r.text
            viewer = Viewer(f"127.0.0.1:{port}", r.json())
            assert len(viewer.chunks(2)) == 2  # the stream plays: the duration head planned its words
            viewer.close()
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert "Traceback" not in err, err[-2000:]


@pytest.mark.slow
def test_the_duration_stage_trains_the_head_alone_toward_the_clips_timings(cache, tmp_path):
    from streamchar.data.latents import LatentCache
    from streamchar.evaluation.bench_pace import _planned_starts, _start_errors, learned_planner
    from streamchar.model.checkpoint import load_generator, save_generator
    from streamchar.training.durations import DurationObjective
    from streamchar.training.loop import Runtime
    from streamchar.training.settings import TrainSettings
    from streamchar.training.stages import generator_loop

    cfg = load_config("tiny")
    model, prompt = new_generator(cfg, seed=0)
    save_generator(tmp_path / "init", model, prompt, {"stage": "rollout", "step": 0, "sampling_steps": 4})
    settings = TrainSettings(cache=str(cache), steps=60, batch=4, lr=3e-3, warmup=5, ema_decay=0.0, save_every=30, log_every=10,
                             init=str(tmp_path / "init"), threads=2)  # fmt: skip
    trainer = generator_loop("durations", cfg, settings, tmp_path / "run")
    trainer.train()
    trainer.export(tmp_path / "out")
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["start"] < log[0]["start"] and log[-1]["duration"] < log[0]["duration"]
    trained, _, meta = load_generator(tmp_path / "out")
    assert meta["stage"] == "durations" and meta["sampling_steps"] == 4  # a student still streams with its own steps
    before, after = model.state_dict(), trained.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".durations." in k for k in changed)  # nothing the model generates with moved
    latents = LatentCache(cache)
    clips = list(enumerate(latents.records))
    errors = [_start_errors(_planned_starts(clips, learned_planner(p, latents)), stretch=False).mean() for p in (tmp_path / "init", tmp_path / "out")]
    assert errors[1] < 0.5 * errors[0]  # the plan moved toward the clips' own timings
    with pytest.raises(StreamcharError, match="no word-duration head"):
        DurationObjective("durations", load_config("tiny", {"orchestrator": {"durations": None, "plan": {"word_pace": {"durations": "letters"}}}}),
                          settings, Runtime.create())
