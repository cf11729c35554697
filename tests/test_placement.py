"""`--device`, `--dtype` and `--memory-mode`: one reading of them (`streaming/placement.py`) for
generate, serve, eval render and bench stream. On this CPU: the choices a CPU has, a GPU asked
for and missing, and a bfloat16 generator streaming near the float32 one."""

import subprocess
import sys

import pytest
import torch

from streamchar.errors import StreamcharError
from streamchar.streaming.engine import SessionSettings
from streamchar.streaming.inputs import character_request
from streamchar.streaming.pipeline import Pipeline
from streamchar.streaming.placement import Placement

TEXT = "Glue the sheet to the dark blue background."


def test_a_bad_choice_names_what_is_accepted():
    assert Placement.parse("cpu", "auto").dtype == torch.float32, "a CPU's bfloat16 is emulated on many: auto is float32 there"
    assert Placement.parse("auto").device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    for args, message in ((("gpu",), "--device takes auto"), (("cpu", "float16"), "--dtype takes auto, float32, bfloat16"),
                          (("cpu", "auto", "fp4"), "--memory-mode takes resident, offload, fp8"),
                          (("cpu", "float32", "fp8"), "computes in bfloat16")):  # fmt: skip
        with pytest.raises(StreamcharError, match=message):
            Placement.parse(*args)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine with a GPU has one")
@pytest.mark.parametrize("command", [["generate", "--text", TEXT, "--character", "unseen-0", "--out", "{tmp}/x.mp4"], ["serve"],
                                     ["eval", "render", "--data", "{tmp}", "--out", "{tmp}/r"], ["bench", "stream", "--seconds", "2"],
                                     ["data", "encode", "--data", "{tmp}", "--out", "{tmp}/latents"]])  # fmt: skip
def test_a_gpu_asked_for_and_missing_is_one_line_and_exit_2(command, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    r = subprocess.run([sys.executable, "-m", "streamchar", *args, "--device", "cuda"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--device cuda: no CUDA GPU here" in lines[0] and "use --device cpu or auto" in lines[0]
    assert not (tmp_path / "x.mp4").exists()


def _stream(dtype: str, chunks: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    pipe = Placement.parse("cpu", dtype).apply(Pipeline.load("tiny-student"))
    session = pipe.session(character_request("unseen-0", TEXT, pipe.cfg), SessionSettings(steps=4, seed=0))
    video, audio = pipe.video_codec.stream_decoder(session.decode_reference), pipe.audio_codec.stream_decoder()
    frames, sound = [], []
    with torch.no_grad():
        for k in range(chunks):
            c = session.next_chunk(k)
            frames.append(video.decode(c.video))
            sound.append(audio.decode(c.audio))
    return torch.cat(frames, dim=2), torch.cat(sound, dim=1)


def test_a_bfloat16_generator_streams_near_the_float32_one():
    """The generator in bfloat16 (its duration head kept in float32), the tiny codecs in float32
    taking its latents as they come: the same frames within a few 8-bit levels, the same sound
    within a fraction of its loudness (measured: 0.07 levels mean, 11% of the RMS)."""
    frames32, audio32 = _stream("float32")
    frames16, audio16 = _stream("bfloat16")
    assert frames16.dtype == audio16.dtype == torch.float32
    assert (frames16 - frames32).abs().mean() * 127.5 < 1.0
    assert (audio16 - audio32).pow(2).mean().sqrt() < 0.3 * audio32.pow(2).mean().sqrt()
