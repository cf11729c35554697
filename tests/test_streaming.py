"""The streaming engine with random weights: determinism, encoder use, history window and
transcript cut, sink, appended text, writers and interrupts, and `streamchar generate`."""

import io
import json
import time
import wave

import av
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from streamchar.cli.main import app
from streamchar.codecs.tiny import TinyAudioCodec, TinyAudioConfig, TinyVideoCodec, TinyVideoConfig
from streamchar.config import load_config
from streamchar.data.audio import write_wav
from streamchar.data.mp4 import read_mp4
from streamchar.errors import Interrupted, StreamcharError
from streamchar.model.checkpoint import new_generator, save_generator
from streamchar.streaming.engine import SessionSettings, StreamSession
from streamchar.streaming.inputs import StreamRequest
from streamchar.streaming.runner import run_stream
from streamchar.streaming.writers import CallbackWriter, FragmentedMp4Writer, Mp4FragmentStream, WavWriter

TEXT = "the birch canoe slid on the smooth planks"
POINTER_PACED = {"orchestrator": {"reading": "pointer", "plan": None}}  # the pointer paces these streams (the plan: test_text_reading)


@pytest.fixture(scope="module")
def parts():
    torch.set_num_threads(2)
    cfg = load_config("tiny", POINTER_PACED)
    model, prompt = new_generator(cfg, seed=0)
    torch.manual_seed(1)
    video = TinyVideoCodec(TinyVideoConfig(encoder_channels=(8, 8, 8, 8), decoder_channels=(8, 8, 8, 8))).eval()
    audio = TinyAudioCodec(TinyAudioConfig(channels=(16, 16))).eval()
    return cfg, model.eval(), prompt, video, audio


def _request(cfg, text=TEXT):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (cfg.video.height, cfg.video.width, 3), dtype=np.uint8)
    voice = (0.1 * rng.standard_normal(2 * cfg.audio.sample_rate)).astype(np.float32)
    return StreamRequest(text, image, voice, "a person talks")


def _session(parts, text=TEXT, **settings):
    cfg, model, prompt, video, audio = parts
    return StreamSession(model, prompt, video, audio, _request(cfg, text), SessionSettings(**settings))


def _scripted_pointer(monkeypatch, session, per_chunk: float):
    """The pointer says `per_chunk` more words were spoken by the end of every chunk (it answers
    relative to the cut transcript it is given, as the real one does)."""

    def fake(condition, text_hidden, word_numbers, text_mask, word_counts, clamp=True):
        cut = session.words_total - word_counts
        absolute = per_chunk * (len(session.progress) + 1)
        return torch.minimum(absolute - cut, word_counts)

    monkeypatch.setattr(session.model.orchestrator.pointer, "forward", fake)


def test_same_seed_same_stream(parts):
    a = [c.video for c in _session(parts, seed=3, max_chunks=2).chunks()]
    b = [c.video for c in _session(parts, seed=3, max_chunks=2).chunks()]
    c = [c.video for c in _session(parts, seed=4, max_chunks=2).chunks()]
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and not torch.equal(a[0], c[0])


def test_guidance_mixes_a_prompt_free_reference_free_branch(parts, monkeypatch):
    plain = [c.video for c in _session(parts, seed=3, max_chunks=2, steps=2).chunks()]
    off = [c.video for c in _session(parts, seed=3, max_chunks=2, steps=2, guidance=1.0).chunks()]
    assert all(torch.equal(x, y) for x, y in zip(plain, off))
    s = _session(parts, seed=3, max_chunks=2, steps=2, guidance=3.0)
    seen = []
    original = s.model.dit.condition_cache
    monkeypatch.setattr(s.model.dit, "condition_cache", lambda cond, text: seen.append((cond, text)) or original(cond, text))
    guided = [c.video for c in s.chunks()]
    assert len(seen) == 4 and torch.count_nonzero(seen[1][0].reference) == 0 and torch.count_nonzero(seen[0][0].reference) > 0
    assert torch.equal(seen[1][1], s.conditions.empty_prompt) and not torch.equal(seen[1][1], s.conditions.prompt)
    assert not torch.equal(guided[0], plain[0]) and all(torch.isfinite(v).all() for v in guided)
    with pytest.raises(StreamcharError, match="guidance"):
        _session(parts, guidance=-1)


def test_text_guidance_adds_a_branch_without_the_orchestrators_condition(parts, monkeypatch):
    """One more DiT pass per step, the same prompt and conditions but a zero orchestrator
    condition; the result is the conditional prediction pushed away from that branch."""
    plain = [c.audio for c in _session(parts, seed=3, max_chunks=1, steps=2).chunks()]
    s = _session(parts, seed=3, max_chunks=1, steps=2, text_guidance=2.0)
    seen = []
    original = s.model.dit_velocity

    def watched(v, t, prompt, audio, cache):
        seen.append((prompt, audio.condition))
        return original(v, t, prompt, audio, cache)

    monkeypatch.setattr(s.model, "dit_velocity", watched)
    guided = [c.audio for c in s.chunks()]
    assert len(seen) == 4  # 2 steps, each conditional and condition-free
    assert torch.count_nonzero(seen[0][1]) > 0 and torch.count_nonzero(seen[1][1]) == 0 and torch.equal(seen[0][0], seen[1][0])
    assert not torch.equal(guided[0], plain[0]) and torch.isfinite(guided[0]).all()
    with pytest.raises(StreamcharError, match="text guidance"):
        _session(parts, text_guidance=-0.5)


def test_encoders_run_once_and_sink_stays_the_first_chunk(parts, monkeypatch):
    s = _session(parts, max_chunks=4)
    calls = []
    monkeypatch.setattr(s.video_codec, "encode_chunks", lambda *a: calls.append("video"))
    monkeypatch.setattr(s.audio_codec, "encode", lambda *a, **k: calls.append("audio"))
    seen = []
    original = s.model.dit.condition_cache
    monkeypatch.setattr(s.model.dit, "condition_cache", lambda cond, text: seen.append(cond) or original(cond, text))
    chunks = list(s.chunks())
    assert calls == [] and s.encoder_calls == 2
    assert len(chunks) == 4 and seen[0].sink is None and seen[0].motion is None
    for k in range(1, 4):
        assert torch.equal(seen[k].sink, chunks[0].video)  # the sink is chunk 0 for the whole stream
        assert torch.equal(seen[k].motion, chunks[k - 1].video)  # motion: the previous chunk's latents, as they are
    monkeypatch.undo()
    no_sink = _session(parts, max_chunks=3, sink=False)
    monkeypatch.setattr(no_sink.model.dit, "condition_cache", lambda cond, text: seen.append(cond) or original(cond, text))
    seen.clear()
    list(no_sink.chunks())
    assert all(c.sink is None for c in seen) and seen[1].motion is not None


def test_history_window_and_transcript_cut_follow_the_pointer(parts, monkeypatch):
    text = " ".join(["one two three four five six seven eight nine ten"] * 4)  # 40 words
    s = _session(parts, text=text, steps=1, max_chunks=30)
    _scripted_pointer(monkeypatch, s, per_chunk=1.5)
    seen = []
    original = s.model.orchestrator.forward
    monkeypatch.setattr(s.model.orchestrator, "forward", lambda x, prefix=None: seen.append(x) or original(x, prefix=prefix))
    per_s = s.cfg.audio.sample_rate / s.cfg.audio.hop_length
    for k in range(14):
        s.next_chunk(k)
    assert s.progress[:3] == [1.5, 3.0, 4.5]
    for k, x in enumerate(seen):
        assert x.history_audio.shape[2] <= 15 * per_s
        first = k - min(k, s.cfg.stream.history_chunks)  # the first chunk still in the history window
        cut = int(np.floor(1.5 * first)) if first > 0 else 0  # words the pointer gave before the window
        assert x.word_counts.item() == 40 - cut
        assert x.word_numbers.max().item() == 40 - cut and x.word_numbers[0, 1:].min().item() >= 1
    assert seen[-1].history_audio.shape[2] == s.cfg.stream.history_chunks * 33 and seen[-1].word_counts.item() < 40


def test_stream_ends_after_the_last_word_and_appended_text_is_spoken(parts, monkeypatch):
    s = _session(parts, text="one two three four", steps=1)
    _scripted_pointer(monkeypatch, s, per_chunk=2.0)
    chunks = list(s.chunks())
    assert [c.closing for c in chunks] == [False, False, True]  # two chunks for four words, then one closing chunk
    s2 = _session(parts, text="one two three four", steps=1)
    _scripted_pointer(monkeypatch, s2, per_chunk=2.0)
    it = s2.chunks()
    first = next(it)
    s2.append_text("five six seven eight")
    rest = list(it)
    assert first.words_total == 4 and rest[-1].words_total == 8
    assert rest[-2].words_spoken == 8 and rest[-1].closing and len(rest) == 4


def test_writers_and_a_playable_mp4_after_an_interrupt(parts, tmp_path):
    cfg = parts[0]
    s = _session(parts, max_chunks=6, steps=1)
    mp4 = FragmentedMp4Writer(tmp_path / "s.mp4", cfg.stream.fps, cfg.audio.sample_rate, cfg.video.width, cfg.video.height)
    wav = WavWriter(tmp_path / "s.wav", cfg.audio.sample_rate)
    handed_out = []
    fragments = Mp4FragmentStream(cfg.stream.fps, cfg.audio.sample_rate, cfg.video.width, cfg.video.height, on_bytes=handed_out.append)
    got = []

    def callback(frames, audio):
        got.append(frames.shape)
        if len(got) == 3:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="stays playable"):
        run_stream(s, [mp4, wav, fragments, CallbackWriter(callback)])
    d = read_mp4(tmp_path / "s.mp4")
    assert len(d.frames) == 3 * 33 and d.fps == 24 and len(d.audio) > 0
    with wave.open(str(tmp_path / "s.wav")) as w:
        assert w.getnframes() == 3 * cfg.chunk_samples
    assert got[0] == (33, cfg.video.height, cfg.video.width, 3)
    with av.open(io.BytesIO(b"".join(handed_out))) as live:  # a fragment per frame: every frame's packet was handed out
        assert sum(1 for p in live.demux(video=0) if p.size) == 3 * 33


def test_report_accounts_every_chunk(parts):
    s = _session(parts, max_chunks=3, steps=2)
    slow_writer = CallbackWriter(lambda frames, audio: time.sleep(0.05))  # writing takes at least 50 ms a chunk
    report = run_stream(s, [slow_writer], time.perf_counter())
    summary = report.summary()
    assert summary["chunks"] == 3 and summary["first_chunk_latency_s"] > 0 and summary["seconds"] == pytest.approx(3 * 1.375)
    assert [c.index for c in report.chunks] == [0, 1, 2]
    assert all(c.write_s >= 0.05 and c.dit_s > 0 and c.decode_s > 0 for c in report.chunks)
    assert all(c.compute_s >= 0.05 and c.real_time_factor >= 0.05 / 1.375 for c in report.chunks)  # the writer's time is counted


def test_bad_text_fails_before_work(parts):
    with pytest.raises(StreamcharError, match="empty"):
        _session(parts, text="   ")
    with pytest.raises(StreamcharError, match="no words to speak"):
        _session(parts, text="\U0001f600 *** ~")
    assert _session(parts, text="A naïve café at 3pm.").transcript == "A naive cafe at three p m."  # read aloud by the normaliser


def test_a_decoder_that_reads_the_reference_gets_the_requests_image(parts):
    cfg, model, prompt, _, audio = parts
    torch.manual_seed(2)
    video = TinyVideoCodec(TinyVideoConfig(encoder_channels=(8, 8, 8, 8), decoder_channels=(8, 8, 8, 8), reference_channels=(8, 8, 8, 8))).eval()
    request = _request(cfg)
    session = StreamSession(model, prompt, video, audio, request, SessionSettings(steps=1))
    image = torch.from_numpy(request.reference_image).permute(2, 0, 1).float()[None] / 127.5 - 1
    assert all(torch.allclose(a, b) for a, b in zip(session.decode_reference, video.prepare_reference(image)))
    frames = []
    report = run_stream(session, [CallbackWriter(lambda f, a: frames.append(f))])  # the decoder refuses to run without it
    assert report.summary()["chunks"] == len(frames) >= 1 and frames[0].shape == (33, cfg.video.height, cfg.video.width, 3)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, parts):
    cfg, model, prompt, _, _ = parts
    d = tmp_path_factory.mktemp("ckpt") / "random"
    save_generator(d, model, prompt, {"note": "random weights for tests"})
    return d


def test_generate_cli_and_its_errors(checkpoint, tmp_path, monkeypatch):
    # the shipped codecs are large; the test uses small random ones
    small = TinyVideoCodec(TinyVideoConfig(encoder_channels=(8, 8, 8, 8), decoder_channels=(8, 8, 8, 8))).eval()
    monkeypatch.setattr("streamchar.streaming.pipeline.load_video_codec", lambda cfg, path: small)
    img = tmp_path / "ref.png"
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(img)
    voice = tmp_path / "voice.wav"
    write_wav(voice, (0.1 * np.random.default_rng(0).standard_normal(16000 * 2)).astype(np.float32), 16000)
    short = tmp_path / "short.wav"
    write_wav(short, np.zeros(4000, np.float32), 16000)
    runner = CliRunner()
    base = ["generate", "--checkpoint", str(checkpoint), "--steps", "1", "--threads", "2"]
    out = tmp_path / "o.mp4"
    ok = runner.invoke(app, base + ["--text", "glue the sheet", "--reference-image", str(img), "--reference-voice", str(voice),
                                    "--prompt", "a person", "--out", str(out), "--report", str(tmp_path / "r.json")])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "resized to 128x128" in ok.output and "resampled from 16000 Hz" in ok.output
    assert len(read_mp4(out).frames) % 33 == 0 and json.loads((tmp_path / "r.json").read_text())["summary"]["chunks"] >= 1
    cases = [
        (["--text", "  ", "--character", "unseen-0"], "empty"),
        (["--text", "\u2603 \u2603", "--character", "unseen-0"], "no words to speak"),
        (["--text", "hi", "--character", "unseen-99"], "unknown character"),
        (["--text", "hi", "--reference-image", str(img), "--reference-voice", str(short)], "at least 1 s"),
        (["--text", "hi", "--character", "unseen-0", "--out", "/proc/nope/o.mp4"], "cannot write"),
    ]
    cases.append((["--text", "hi", "--character", "unseen-0", "--checkpoint", str(tmp_path / "none")], "no generator checkpoint"))
    for args, message in cases:
        r = runner.invoke(app, base + args)
        assert isinstance(r.exception, StreamcharError) and message in str(r.exception), (args, r.output, r.exception)


def test_streams_decode_with_the_codecs_given(checkpoint, parts, tmp_path):
    """A generator trained on another codec's latents streams through that codec (`--video-codec`,
    `--audio-codec`); a directory of the wrong kind is named before any work."""
    from streamchar.codecs.store import load_codec, save_codec
    from streamchar.streaming.pipeline import Pipeline

    _, _, _, video, audio = parts
    save_codec(video, tmp_path / "v")
    save_codec(audio, tmp_path / "a")
    pipe = Pipeline.load(checkpoint, tmp_path / "v", tmp_path / "a")
    assert pipe.video_codec.config == video.config and pipe.audio_codec.config == audio.config
    for mine, saved in ((pipe.video_codec, tmp_path / "v"), (pipe.audio_codec, tmp_path / "a")):
        given = load_codec(saved).state_dict()  # float16 on disk: the saved weights, not the module's
        assert all(torch.equal(v, given[k]) for k, v in mine.state_dict().items())
    img = tmp_path / "ref.png"
    Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(img)
    voice = tmp_path / "voice.wav"
    write_wav(voice, (0.1 * np.random.default_rng(0).standard_normal(16000 * 2)).astype(np.float32), 16000)
    base = ["generate", "--checkpoint", str(checkpoint), "--steps", "1", "--text", "glue the sheet", "--reference-image", str(img),
            "--reference-voice", str(voice), "--out", str(tmp_path / "o.mp4")]
    ok = CliRunner().invoke(app, base + ["--video-codec", str(tmp_path / "v"), "--audio-codec", str(tmp_path / "a")])
    assert ok.exit_code == 0, ok.output
    assert len(read_mp4(tmp_path / "o.mp4").frames) % 33 == 0
    bad = CliRunner().invoke(app, base + ["--video-codec", str(tmp_path / "a")])
    assert isinstance(bad.exception, StreamcharError) and "holds an audio codec, not a video codec" in str(bad.exception)


def test_render_answers_every_item_and_resumes(parts, small_set, tmp_path):
    from streamchar.data.inspect import load_records
    from streamchar.evaluation.items import folder_items, load_item
    from streamchar.evaluation.render import render_items, synthtalk_render_items
    from streamchar.streaming.pipeline import Pipeline

    cfg, model, prompt, video, audio = parts
    root, _ = small_set
    pipe = Pipeline(model, prompt, video, audio, {"name": "random"})
    split = load_records(root)[0]["split"]
    items = synthtalk_render_items(root, split, pipe, limit=2)
    out = tmp_path / "rendered"
    first = render_items(pipe, items, out, SessionSettings(steps=1, max_chunks=2))
    assert first["rendered"] == len(items) and first["already_there"] == 0
    loaded = [load_item(i, cfg.stream.fps) for i in folder_items(out)]
    truth = {r["clip_id"]: r for r in load_records(root)}
    for item in loaded:
        assert item.item.transcript == truth[item.item.name]["transcript"] and item.item.reference_image.is_file()
        assert len(item.frames) % 33 == 0 and len(item.audio) > 0
    again = render_items(pipe, items, out, SessionSettings(steps=1, max_chunks=2))
    assert again["rendered"] == 0 and again["already_there"] == len(items)
    with pytest.raises(StreamcharError, match="no clips in split"):
        synthtalk_render_items(root, "nope", pipe)


def test_training_exit_step_keeps_one_step_of_graph_and_a_detached_stream(parts):
    cfg, model, prompt, video, audio = parts
    full = _session(parts, seed=5, steps=3)
    ref = [full.next_chunk(k) for k in range(2)]
    s = _session(parts, seed=5, steps=3)
    same = [s.next_chunk(k, exit_step=3) for k in range(2)]
    assert all(torch.allclose(a.video, b.video, atol=1e-6) and torch.allclose(a.audio, b.audio, atol=1e-6) for a, b in zip(ref, same))
    assert same[1].video.requires_grad and not s.motion.requires_grad and not s.history[-1].requires_grad
    assert s.last_context.conditions.motion is not None and s.last_context.history.shape[2] == 33
    model.zero_grad()
    same[1].video.square().mean().backward()
    assert model.dit.patch_embedding.weight.grad is not None and model.orchestrator.backbone.layers[0].mlp.up_proj.weight.grad is not None
    model.zero_grad()
    early = _session(parts, seed=5, steps=3).next_chunk(0, exit_step=1)
    assert not torch.allclose(early.video, ref[0].video)
    with pytest.raises(StreamcharError, match="exit step"):
        _session(parts, steps=3).next_chunk(0, exit_step=4)
    lat = StreamSession.from_latents(model, SessionSettings(steps=3, seed=5), TEXT, s.conditions.prompt, s.reference, s.conditions.reference_audio)
    assert torch.allclose(lat.next_chunk(0).video, ref[0].video, atol=1e-6)


def test_demo_streams_a_checkpoint_with_its_own_step_count(parts, tmp_path, monkeypatch):
    cfg, model, prompt, video, audio = parts
    small = TinyVideoCodec(TinyVideoConfig(encoder_channels=(8, 8, 8, 8), decoder_channels=(8, 8, 8, 8))).eval()
    monkeypatch.setattr("streamchar.streaming.pipeline.load_video_codec", lambda cfg, path: small)
    ckpt = tmp_path / "student"
    save_generator(ckpt, model, prompt, {"stage": "rollout", "sampling_steps": 2})
    out = tmp_path / "demo.mp4"
    r = CliRunner().invoke(app, ["demo", "--checkpoint", str(ckpt), "--text", "glue the sheet", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "the stream is at" in r.output and "(2 steps)" in r.output
    report = json.loads(out.with_suffix(".json").read_text())
    assert len(read_mp4(out).frames) == 33 * report["summary"]["chunks"]


def test_generate_options_mirror_the_command():
    """`demo` goes through GenerateOptions; every option of `generate` is one of its fields, with the same default."""
    import dataclasses
    import inspect

    from streamchar.cli.generate_cmd import GenerateOptions, generate

    fields = {f.name: f.default for f in dataclasses.fields(GenerateOptions)}
    params = {name: p.default.default for name, p in inspect.signature(generate).parameters.items()}
    assert fields == params


def test_a_listening_session_takes_words_late_and_is_interrupted_between_them():
    """The word plan of a live session: words given after it began start with the next chunk;
    an interrupt keeps the words begun before the next chunk, ends them as a sentence, and
    drops the rest; the pointer-paced path keeps what the pointer has passed."""
    cfg = load_config("tiny")
    model, prompt = new_generator(cfg, seed=0)
    torch.manual_seed(1)
    video = TinyVideoCodec(TinyVideoConfig(encoder_channels=(8, 8, 8, 8), decoder_channels=(8, 8, 8, 8))).eval()
    audio = TinyAudioCodec(TinyAudioConfig(channels=(16, 16))).eval()
    with pytest.raises(StreamcharError, match="empty"):
        StreamSession(model.eval(), prompt, video, audio, _request(cfg, ""), SessionSettings(steps=1))
    s = StreamSession(model.eval(), prompt, video, audio, _request(cfg, ""), SessionSettings(steps=1), listening=True)
    period = cfg.stream.chunk_seconds
    with torch.no_grad():
        for k in range(2):
            s.next_chunk(k)
    assert s.words_total == 0 and s.progress == [0.0, 0.0]
    s.append_text("The birch canoe slid on the smooth planks, glue the sheet to the dark blue background and go home")
    times = s.word_times()
    assert times[0][0] == pytest.approx(2 * period) and all(b > a for a, b in times)
    with torch.no_grad():
        s.next_chunk(2)
    begun = sum(1 for a, _ in times if a < 3 * period)
    assert 0 < begun < 20
    assert s.interrupt() == begun and s.words_total == begun and s.word_times() == times[:begun]
    assert s.transcript.endswith(".") and s.transcript.count(" ") == begun - 1
    with torch.no_grad():
        s.next_chunk(3)
    assert s.progress[-1] <= begun
    s.append_text("It is easy.")
    assert s.words_total == begun + 3 and s.word_times(begun)[0][0] >= 4 * period - 1e-9


def test_interrupt_by_the_pointer_keeps_the_words_it_passed(parts, monkeypatch):
    s = _session(parts, text=TEXT + " and then some more words follow here")
    _scripted_pointer(monkeypatch, s, per_chunk=2.5)
    with torch.no_grad():
        s.next_chunk(0)
    assert s.progress[-1] == pytest.approx(2.5)
    assert s.interrupt() == 3 and s.transcript == "the birch canoe."


def test_a_written_stream_puts_frame_k_at_k_over_24_with_its_sound(tmp_path):
    """The AAC encoder's priming is signalled (an edit list), not moved into the video timeline."""
    from streamchar.streaming.writers import FragmentedMp4Writer

    out = tmp_path / "s.mp4"
    writer = FragmentedMp4Writer(out, 24, 24000, 64, 64)
    rng = np.random.default_rng(0)
    for chunk in range(2):
        audio = np.zeros(33_000, np.float32)
        if chunk == 0:
            audio[240:480] = 0.5  # a click 10 ms in
        writer.write(rng.integers(0, 255, (33, 64, 64, 3), dtype=np.uint8), audio)
    writer.close()
    with av.open(str(out)) as c:
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    with av.open(str(out)) as c:
        first = next(c.decode(audio=0))
        start = float(first.pts * first.time_base)
    with av.open(str(out)) as c:
        sound = np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)])
    assert len(times) == 66 and max(abs(t - k / 24) for k, t in enumerate(times)) < 1e-3
    assert abs(start) < 1e-3 and abs(np.argmax(np.abs(sound) > 0.2) / 24000 - 0.010) < 1e-3  # sample 0 plays with frame 0
