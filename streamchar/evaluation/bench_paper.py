"""The paper preset end to end (`streamchar bench paper`), with random weights: speed and memory
do not depend on them.

- `reduced` (any device, CI): random stand-ins for every public part in its real class and
  format (`model/stand_ins.py`), depth and width cut down, assembled by the same code as
  `streamchar checkpoint assemble`, loaded as `generate` loads a checkpoint and streamed by the
  same runner into an MP4, which is then read back and checked: 512x512 at 24 fps, whole
  33-frame chunks, 48 kHz audio, audio and video ending within a frame of each other.
- full size (a GPU): the paper preset's real shapes in bfloat16, built in GPU memory (nothing
  written to disk), timed as the paper splits a chunk (LLM + DiT, VAE decode, preprocessing,
  writing), with the 4-step student and the 50-step teacher, and with each memory mode
  (`streaming/memory.py`) and its peak GPU memory.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from streamchar.config import Config, load_config
from streamchar.config.load import merge_dicts
from streamchar.data.mp4 import read_mp4
from streamchar.errors import StreamcharError
from streamchar.model.assemble import Parts, assemble_checkpoint
from streamchar.streaming.bench import random_request
from streamchar.streaming.engine import SessionSettings
from streamchar.streaming.inputs import StreamRequest
from streamchar.streaming.memory import MEMORY_MODES, apply_memory_mode
from streamchar.streaming.pipeline import Pipeline
from streamchar.streaming.runner import StreamReport
from streamchar.streaming.sampler import device_clock

# depth and width cut down; the stream's geometry, the VAEs' layouts, the prompt length and the head size kept
REDUCED = {
    "dit": {"num_layers": 2, "num_heads": 2, "ffn_dim": 512, "text_dim": 64, "audio_encoder_layers": 1, "audio_decoder_layers": 1},
    "orchestrator": {"num_layers": 2, "hidden_size": 128, "num_heads": 4, "num_kv_heads": 2, "ffn_dim": 256, "vocab_size": 1024},
}
REDUCED_VAE_WIDTH = 0.025  # of the real VAEs' channels
GiB = 1024**3


def paper_config(reduced: bool) -> Config:
    return load_config("paper", REDUCED if reduced else None)


def chunk_split(report: StreamReport) -> dict:
    """Mean seconds per chunk after the first (which also warms up), split as the paper does."""
    mean = report.steady_mean
    written = [c.written_at_s for c in report.chunks]
    return {
        "llm_dit_s": mean("orchestrator_s") + mean("dit_s"), "orchestrator_s": mean("orchestrator_s"), "dit_s": mean("dit_s"),
        "vae_decode_s": mean("decode_s"), "preprocessing_s": mean("prepare_s"), "writing_s": mean("write_s"), "total_s": mean("compute_s"),
        "wall_s_per_chunk": float(np.mean(np.diff(written))) if len(written) > 1 else None,
        "first_chunk_s": report.first_chunk_latency_s, "session_setup_s": report.setup_s, "chunks": len(report.chunks),
        "stalls": sum(c.stall_s > 0 for c in report.chunks),
    }  # fmt: skip


def mp4_facts(path: Path) -> dict:
    """What a player sees: the video's size, rate and frames, the audio's rate and length."""
    clip = read_mp4(path)
    frames, fps = len(clip.frames), clip.fps
    out = {"width": clip.frames.shape[2], "height": clip.frames.shape[1], "fps": fps, "frames": frames, "audio_rate": clip.sample_rate,
           "video_s": frames / fps, "audio_s": len(clip.audio) / clip.sample_rate}  # fmt: skip
    out["audio_minus_video_frames"] = (out["audio_s"] - out["video_s"]) * fps
    return out


def split_alone(pipe: Pipeline, steps: int, chunks: int) -> dict:
    """Each part of a chunk timed alone, one after another: the paper's split. (The stream
    overlaps decoding and writing with the next chunk's generation; on one GPU they share it.)"""
    from streamchar.streaming.runner import to_frames

    session = pipe.session(*_inputs(pipe, steps, chunks))
    now = device_clock(session.reference.device)
    video, audio = pipe.video_codec.stream_decoder(session.decode_reference), pipe.audio_codec.stream_decoder()
    rows = []
    with tempfile.TemporaryDirectory(prefix="streamchar-split-") as tmp, torch.no_grad():
        writer = pipe.mp4_writer(Path(tmp) / "alone.mp4")
        for k in range(chunks):
            chunk = session.next_chunk(k)
            t0 = now()
            frames, sound = to_frames(video.decode(chunk.video)), audio.decode(chunk.audio)[0].float().cpu().numpy()
            t1 = now()
            writer.write(frames, sound)
            rows.append({"llm_s": chunk.timings["orchestrator_s"], "dit_s": chunk.timings["dit_s"], "preprocessing_s": chunk.timings["prepare_s"],
                         "vae_decode_s": t1 - t0, "writing_s": now() - t1})  # fmt: skip
        writer.close()
    out = {key: float(np.mean([r[key] for r in rows[1:]])) for key in rows[0]}
    return {**out, "llm_dit_s": out["llm_s"] + out["dit_s"], "total_s": sum(out.values()), "chunks": chunks}


def _inputs(pipe: Pipeline, steps: int, chunks: int) -> tuple[StreamRequest, SessionSettings]:
    """A random request long enough for `chunks`, and settings that run exactly that many."""
    return random_request(pipe.cfg, 40 * chunks), SessionSettings(steps=steps, max_chunks=chunks, stop_at_end=False)


def _stream(pipe: Pipeline, steps: int, chunks: int, out: Path) -> StreamReport:
    return pipe.stream_to_mp4(*_inputs(pipe, steps, chunks), out)


def bench_reduced(device: torch.device, chunks: int, out: Path, steps: int = 4, pointer_words: float | None = None,
                  overrides: dict | None = None) -> dict:
    """Stand-ins written, assembled, loaded and streamed into `out`; the MP4 read back. With
    `pointer_words`, the stream runs until the pointer ends it (`pointer_stream.py`), about
    `chunks` chunks. `overrides`: fields over the reduced config (tests shrink the frames)."""
    cfg = load_config("paper", merge_dicts(REDUCED, overrides or {}))
    with tempfile.TemporaryDirectory(prefix="streamchar-paper-") as tmp:
        from streamchar.model.stand_ins import write_stand_ins

        t0 = time.perf_counter()
        parts = write_stand_ins(cfg, Path(tmp) / "parts", vae_width=REDUCED_VAE_WIDTH)
        t1 = time.perf_counter()
        assemble_checkpoint(cfg, Parts(**parts), Path(tmp) / "checkpoint")
        t2 = time.perf_counter()
        pipe = Pipeline.load(Path(tmp) / "checkpoint").to(device)
        load_s = time.perf_counter() - t2
        head = {"preset": "paper (reduced)", "device": str(device), "steps": steps, "stand_ins_s": t1 - t0, "assemble_s": t2 - t1, "load_s": load_s}
        if pointer_words is not None:
            from streamchar.evaluation.pointer_stream import pointer_stream

            return {**head, "pointer_stream": pointer_stream(pipe, pointer_words, out, steps, chunks), "mp4": mp4_facts(out)}
        report = _stream(pipe, steps, chunks, out)
    return {**head, **chunk_split(report), "mp4": mp4_facts(out)}


def random_paper_pipeline(cfg: Config, device: torch.device, folder: Path) -> Pipeline:
    """The full-size paper preset with random weights, in bfloat16, built on `device` (its
    tokenizers, which are small, trained and saved in `folder`)."""
    from streamchar.codecs.paper import OobleckAudioCodec, WanVideoCodec
    from streamchar.model.prompt import UMT5PromptEncoder
    from streamchar.model.stand_ins import oobleck, qwen_tokenizer, t5_tokenizer, umt5_encoder, wan_vae
    from streamchar.model.streamchar_model import StreamCharModel
    from streamchar.model.tokenizer import QwenTokenizer

    qwen_tokenizer(1024).save_pretrained(folder / "tokenizer")
    torch.manual_seed(0)
    with torch.device(device):
        model = StreamCharModel(cfg, QwenTokenizer(folder / "tokenizer")).to(torch.bfloat16)
        prompt = UMT5PromptEncoder.from_modules(umt5_encoder(cfg, full=True).to(torch.bfloat16), t5_tokenizer(512), cfg.prompt.tokens)
        video = WanVideoCodec(wan_vae().to(torch.bfloat16).eval(), cfg)
        audio = OobleckAudioCodec(oobleck(cfg).to(torch.bfloat16).eval(), cfg)
    return Pipeline(model.eval(), prompt, video.to(device), audio.to(device), {"name": "random paper preset (bf16)"})


def _decode_alone(pipe: Pipeline, device: torch.device) -> float:
    """One chunk's VAE decode with nothing else on the GPU (the stream's decode overlaps the
    next chunk's generation, which shares the GPU)."""
    cfg = pipe.cfg
    s = cfg.stream
    z = torch.randn(1, cfg.video.latent_channels, s.chunk_latent_frames, cfg.video.height // s.vae_spatial_stride,
                    cfg.video.width // s.vae_spatial_stride, device=device)  # fmt: skip
    with torch.no_grad():
        pipe.video_codec.decode_chunks(z)
        torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        pipe.video_codec.decode_chunks(z)
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def bench_full(device: torch.device, chunks: int, teacher_chunks: int, modes: tuple[str, ...], out: Path,
               on_result: Callable[[dict], None] | None = None) -> dict:
    """Each memory mode in turn on one pipeline (each mode goes further than the one before):
    the 4-step student's stream and its peak GPU memory; the 50-step teacher's in the first."""
    if device.type != "cuda":
        raise StreamcharError("the full-size paper preset needs a CUDA GPU; on a CPU run it with --reduced")
    bad = [m for m in modes if m not in MEMORY_MODES]
    if bad or list(modes) != sorted(modes, key=MEMORY_MODES.index):
        raise StreamcharError(f"--modes takes {', '.join(MEMORY_MODES)}, in that order (each goes further than the one before); "
                              f"got {', '.join(modes)}")  # fmt: skip
    torch.backends.cudnn.benchmark = True  # the VAEs' convolutions see the same shapes every chunk
    cfg = paper_config(reduced=False)
    result: dict = {"preset": "paper", "device": torch.cuda.get_device_name(device), "torch": torch.__version__, "modes": {}}
    with tempfile.TemporaryDirectory(prefix="streamchar-paper-") as tmp:
        t0 = time.perf_counter()
        pipe = random_paper_pipeline(cfg, device, Path(tmp))
        result["build_s"] = time.perf_counter() - t0
        result["decode_alone_s"] = _decode_alone(pipe, device)
        for k, mode in enumerate(modes):
            try:
                result["modes"][mode] = _measure_mode(pipe, mode, device, chunks, teacher_chunks if k == 0 else 0, Path(out), Path(tmp))
            except (RuntimeError, StreamcharError) as e:  # recorded, and the next mode still measured
                result["modes"][mode] = {"error": f"{type(e).__name__}: {e}"}
            if on_result:
                on_result(result)
    return result


def _measure_mode(pipe: Pipeline, mode: str, device: torch.device, chunks: int, teacher_chunks: int, out: Path, tmp: Path) -> dict:
    apply_memory_mode(pipe, mode, device)
    torch.cuda.reset_peak_memory_stats(device)
    report = _stream(pipe, 4, chunks, out.with_name(f"{out.stem}-{mode}{out.suffix}"))
    entry = {"student_4_steps": chunk_split(report), "peak_gib": torch.cuda.max_memory_allocated(device) / GiB,
             "resident_gib": torch.cuda.memory_allocated(device) / GiB, "student_split_alone": split_alone(pipe, 4, 4)}  # fmt: skip
    if teacher_chunks:
        entry["teacher_50_steps"] = chunk_split(_stream(pipe, 50, teacher_chunks, tmp / "teacher.mp4"))
    return entry
