"""The paper preset end to end: random stand-ins for every public part, in their real classes and
formats, assembled into one checkpoint that loads and streams; each mismatch named; the Qwen2.5
tokenizer kept in the checkpoint; the memory modes on a CPU; and (slow) `bench paper --reduced`
at the real geometry into a playable MP4."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from streamchar.config import load_config
from streamchar.errors import StreamcharError
from streamchar.evaluation.bench_paper import REDUCED, mp4_facts
from streamchar.model.assemble import Parts, assemble_checkpoint
from streamchar.model.checkpoint import load_generator
from streamchar.model.stand_ins import oobleck, write_stand_ins
from streamchar.model.tokenizer import QwenTokenizer, prompt_ids
from streamchar.streaming.bench import random_request
from streamchar.streaming.engine import SessionSettings
from streamchar.streaming.memory import apply_memory_mode
from streamchar.streaming.pipeline import Pipeline
from streamchar.streaming.placement import Placement

SMALL = {**REDUCED, "video": {"height": 32, "width": 32}}  # the VAEs' strides and channels as the paper's; frames small


@pytest.fixture(scope="module")
def assembled(tmp_path_factory):
    cfg = load_config("paper", SMALL)
    root = tmp_path_factory.mktemp("paper")
    parts = write_stand_ins(cfg, root / "parts", vae_width=0.025)
    report = assemble_checkpoint(cfg, Parts(**parts), root / "checkpoint")
    return cfg, parts, root / "checkpoint", report


def test_the_checkpoint_holds_every_part_initialised_as_the_paper_says(assembled):
    cfg, parts, out, report = assembled
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "config.json", "umt5", "tokenizer", "video-vae", "audio-vae"}
    assert report["audio_experts_from_video_ffn"] == 4 * cfg.dit.num_layers  # two linear layers' weight and bias per block
    model, prompt, meta = load_generator(out)
    assert meta["stage"] == "assembled" and meta["video_codec"] == "video-vae"
    wan = load_file(parts["wan"] / "diffusion_pytorch_model.safetensors")
    own = model.dit.state_dict()
    assert all(torch.equal(own[k], v) for k, v in wan.items())
    block = model.dit.blocks[1]
    assert all(torch.equal(a, b) for a, b in zip(block.ffn_audio.state_dict().values(), block.ffn.state_dict().values()))
    qwen = load_file(parts["qwen"] / "model.safetensors")
    backbone = model.orchestrator.backbone.state_dict()
    assert all(torch.equal(backbone[k.removeprefix("model.")], v) for k, v in qwen.items() if k.startswith("model."))
    assert isinstance(model.tokenizer, QwenTokenizer) and model.tokenizer.directory == out / "tokenizer"
    words = "the birch canoe slid on the smooth planks"
    assert model.tokenizer.encode(words) == QwenTokenizer(parts["qwen"]).encode(words)
    assert model.tokenizer.encode(words).words == 8 and len(model.tokenizer.encode(words).ids) > 8  # Qwen's pieces, not words
    assert prompt.directory == out / "umt5" and prompt(["a person talks"]).shape == (1, cfg.prompt.tokens, cfg.dit.text_dim)


def test_the_orchestrator_reads_the_prompt_then_the_transcript_and_a_cut_keeps_the_prompt(assembled):
    """§3.2: the orchestrator's text block is the prompt and the transcript (paper preset); the tiny one reads the transcript alone."""
    cfg, _, out, _ = assembled
    pipe = Pipeline.load(out)
    request = random_request(cfg, 30)
    session = pipe.session(request, SessionSettings(steps=1, max_chunks=1, stop_at_end=False))
    prompt = prompt_ids(session.tokenizer, request.prompt, cfg.orchestrator.prompt_tokens)
    assert 0 < len(prompt) <= cfg.orchestrator.prompt_tokens == 64 and prompt == session.prompt_ids
    assert session.tokenizer.tok.decode(prompt) == request.prompt + "\n"
    ids, numbers, n = session.text_window(0)
    later, later_numbers, later_n = session.text_window(5)
    window = session.reader.tokens.window(5, cfg.orchestrator.lookahead_words)
    assert ids[0, : len(prompt)].tolist() == later[0, : len(prompt)].tolist() == prompt  # the cut keeps the prompt
    assert later[0, len(prompt) :].tolist() == window[0] and later_numbers[0, : len(prompt)].eq(0).all() and later_n.item() == n.item() - 5
    assert load_config("tiny").orchestrator.prompt_tokens == 0


@pytest.mark.slow
def test_the_assembled_checkpoint_streams_with_no_other_path(assembled):
    cfg, _, out, _ = assembled
    pipe = Pipeline.load(out)
    assert type(pipe.video_codec).__name__ == "WanVideoCodec" and type(pipe.audio_codec).__name__ == "OobleckAudioCodec"
    session = pipe.session(random_request(cfg, 30), SessionSettings(steps=2, max_chunks=2, stop_at_end=False))
    with torch.no_grad():
        chunk = session.next_chunk(0)
    assert chunk.video.shape == (1, 48, 9, 2, 2) and chunk.audio.shape == (1, 64, 33)
    assert {"orchestrator_s", "dit_s", "prepare_s"} <= set(chunk.timings)
    frames = pipe.video_codec.decode_chunks(chunk.video)
    assert frames.shape == (1, 3, 33, 32, 32) and pipe.audio_codec.decode(chunk.audio).shape == (1, 33 * 2048)


@pytest.mark.slow
def test_a_bfloat16_assembly_writes_bfloat16_and_streams_placed(assembled, tmp_path):
    """`checkpoint assemble --dtype bfloat16`: the generator built and written in bfloat16; loaded
    and placed in bfloat16 (`--dtype bfloat16`), it streams."""
    from safetensors import safe_open

    cfg, parts, _, _ = assembled
    out = tmp_path / "bf16"
    assemble_checkpoint(cfg, Parts(**parts), out, dtype=torch.bfloat16)
    with safe_open(out / "model.safetensors", "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys() if "durations" not in k}  # noqa: SIM118 - a safe_open is not iterable
    assert dtypes == {"BF16"}
    pipe = Placement.parse("cpu", "bfloat16").apply(Pipeline.load(out))
    assert next(pipe.model.dit.parameters()).dtype == torch.bfloat16
    session = pipe.session(random_request(cfg, 30), SessionSettings(steps=1, max_chunks=1, stop_at_end=False))
    with torch.no_grad():
        chunk = session.next_chunk(0)
    assert chunk.video.dtype == torch.float32 and torch.isfinite(chunk.video).all()


def test_every_mismatch_is_named_before_anything_is_written(assembled, tmp_path):
    cfg, parts, out, _ = assembled
    oobleck(cfg, 0.025).save_pretrained(tmp_path / "sao")
    sao = json.loads((tmp_path / "sao" / "config.json").read_text())
    (tmp_path / "sao" / "config.json").write_text(json.dumps({**sao, "sampling_rate": 44100}))  # Stable Audio Open's rate
    wrong = Parts(parts["wan"], parts["qwen"], tmp_path / "nothing", parts["video_vae"], tmp_path / "sao")
    with pytest.raises(StreamcharError) as e:
        assemble_checkpoint(cfg, wrong, tmp_path / "new")
    assert "--umt5: no umT5 encoder" in str(e.value) and "--audio-vae: audio VAE does not fit" in str(e.value)
    assert "sampling_rate 44100 Hz (stream needs 49152 Hz)" in str(e.value) and not (tmp_path / "new").exists()
    with pytest.raises(StreamcharError, match=r"ffn_dim 512 \(preset needs 1024\)"):
        assemble_checkpoint(load_config("paper", {**SMALL, "dit": {**SMALL["dit"], "ffn_dim": 1024}}), Parts(**parts), tmp_path / "new")
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".new.*"))  # nothing half written
    with pytest.raises(StreamcharError, match="is not empty"):
        assemble_checkpoint(cfg, Parts(**parts), out)
    with pytest.raises(StreamcharError, match="prompt.encoder umt5"):
        assemble_checkpoint(load_config("tiny"), Parts(**parts), tmp_path / "new")


def test_a_qwen2_config_names_its_tokenizer_and_a_checkpoint_keeps_it(assembled, tmp_path):
    with pytest.raises(StreamcharError, match="tokenizer_directory"):
        load_config("paper", {"orchestrator": {"tokenizer_directory": None}})
    with pytest.raises(StreamcharError, match="tokenizer_directory"):
        load_config("tiny", {"orchestrator": {"tokenizer_directory": "tok"}})
    _, _, out, _ = assembled
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("tokenizer"))
    with pytest.raises(StreamcharError, match="cannot load a tokenizer"):
        load_generator(copy)


@pytest.mark.slow
def test_memory_modes_keep_the_prompt_and_store_the_weights_in_float8(assembled):
    cfg, _, out, _ = assembled
    pipe = Pipeline.load(out)
    before = pipe.prompt_encoder(["a person talks in front of a wall"])
    apply_memory_mode(pipe, "offload", torch.device("cpu"))
    torch.testing.assert_close(pipe.prompt_encoder(["a person talks in front of a wall"]), before)
    # as `--dtype bfloat16 --memory-mode fp8` places it: the generator in bfloat16, the codecs left in float32 on a CPU (the
    # audio encoder's bfloat16 convolutions took 25 minutes on one without bfloat16 instructions); the mode stores the generator's weights
    pipe = Placement.parse("cpu", "bfloat16", "fp8").apply(Pipeline.load(out))
    assert next(pipe.audio_codec.parameters()).dtype == torch.float32
    dtypes = {p.dtype for n, p in pipe.model.dit.named_parameters() if n.startswith("blocks.") and n.endswith("ffn.net.2.weight")}
    assert dtypes == {torch.float8_e4m3fn} and pipe.model.dit.patch_embedding.weight.dtype == torch.bfloat16
    session = pipe.session(random_request(cfg, 30), SessionSettings(steps=1, max_chunks=1, stop_at_end=False))
    with torch.no_grad():
        chunk = session.next_chunk(0)
    assert chunk.video.dtype == torch.float32 and torch.isfinite(chunk.video).all() and chunk.video.std() > 0.1
    with pytest.raises(StreamcharError, match="unknown memory mode"):
        apply_memory_mode(pipe, "fp4", torch.device("cpu"))


@pytest.mark.slow
def test_bench_paper_reduced_streams_the_paper_geometry_into_a_playable_mp4(tmp_path):
    video, result = tmp_path / "paper.mp4", tmp_path / "paper.json"
    r = subprocess.run([sys.executable, "-m", "streamchar", "bench", "paper", "--device", "cpu", "--reduced", "--chunks", "2", "--out",
                        str(video), "--result", str(result)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(result.read_text())
    assert res["chunks"] == 2 and res["llm_dit_s"] > 0 and res["vae_decode_s"] > 0 and res["writing_s"] > 0
    mp4 = mp4_facts(video)
    assert (mp4["width"], mp4["height"], mp4["fps"], mp4["frames"], mp4["audio_rate"]) == (512, 512, 24.0, 66, 48000)
    assert abs(mp4["audio_minus_video_frames"]) <= 1.0
    r = subprocess.run([sys.executable, "-m", "streamchar", "bench", "paper", "--device", "cpu"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "needs a CUDA GPU; on a CPU run it with --reduced" in r.stderr


@pytest.mark.slow
def test_the_pointer_drives_a_paper_stream_over_a_full_history_window_to_its_end(tmp_path):
    """The paper's reading (`pointer`) at the paper geometry on the reduced stand-ins, as `bench paper
    --reduced --pointer-words` runs it: the history window fills, the transcript's cut moves on with
    the pointer (the prompt kept before it), and the stream ends by itself after the last word."""
    from streamchar.evaluation.bench_paper import bench_reduced

    res = bench_reduced(torch.device("cpu"), 14, tmp_path / "pointer.mp4", steps=2, pointer_words=3.0, overrides={"video": SMALL["video"]})
    ps, window = res["pointer_stream"], res["pointer_stream"]["history_window_chunks"]
    assert ps["chunks"] >= 12 and ps["ended_by_itself"] and ps["words_spoken"][-1] == ps["words_total"]
    assert ps["history_chunks"][: window + 1] == list(range(window + 1)) and max(ps["history_chunks"]) == window  # fills, then slides
    assert ps["cuts"] == [3.0 * max(0, k - window) for k in range(ps["chunks"])]  # the pointer's word for the chunk before the window
    assert ps["prompt_tokens"] > 0 and ps["prompt_kept_every_chunk"]
    assert res["mp4"]["frames"] == 33 * ps["chunks"]
