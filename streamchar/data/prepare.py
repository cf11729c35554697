"""Your own footage as a training set (`streamchar data prepare`): a folder of talking-head
videos, `<name>.mp4` with its transcript `<name>.txt` (any frame rate, size and audio rate),
becomes a folder in the real-data layout `data/dataset.py` reads:

- `<name>.mp4`: a square crop centred on the face (YuNet, `data/faces.py`, its box smoothed over
  time), resized to the preset's frame size, at 24 fps, with the audio resampled to the preset's
  rate;
- `<name>.json`: the transcript, each word's start and end from forced alignment
  (`data/align.py`), the split (`train`), and the reference image and voice beside it
  (`<name>.png`: the crop's first frame; `<name>.voice.wav`: the clip's first seconds).

A clip without a face, without speech, or whose alignment fails is listed in `prepare.json`
with its reason and skipped; the rest go on. A clip's JSON is written last, so a rerun resumes
after the clips already done.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from streamchar.config import Config
from streamchar.data.align import align_words, word_records
from streamchar.data.audio import is_silent, write_wav
from streamchar.data.faces import detector, find_faces
from streamchar.data.mp4 import read_mp4, write_mp4
from streamchar.data.speech import speakable_text, transcript_words
from streamchar.errors import StreamcharError
from streamchar.utils.files import atomic_write_text
from streamchar.utils.processes import worker_pool

REPORT = "prepare.json"
FACE_SHARE = 0.5  # of the frames looked at, at least this share must show a face
CROP_FACES = 3.2  # the crop's side, in YuNet face widths: head and shoulders, framed as SynthTalk's own clips
VOICE_SECONDS = 10.0


class Skipped(Exception):
    """A clip that cannot be prepared, with the reason."""


def face_boxes(frames: np.ndarray, fps: float, per_second: float = 4.0) -> tuple[np.ndarray, int, int]:
    """(n, 3) face centre x, centre y and width for every frame, interpolated between the
    frames looked at (`per_second` of them) and smoothed with a running median; with how many
    were looked at and how many showed a face."""
    seen = range(0, len(frames), max(1, int(round(fps / per_second))))
    found = []
    for i, faces in zip(seen, find_faces(frames[i] for i in seen)):
        if len(faces):
            x, y, w, h, _ = max(faces, key=lambda f: f[2] * f[3])  # the largest: the speaker, not a face behind
            found.append((i, x + w / 2, y + h / 2, float(w)))
    if not found:
        return np.zeros((0, 3)), len(seen), 0
    idx = np.array([f[0] for f in found], float)
    track = np.array([f[1:] for f in found])
    k = 5  # running median over this many detections: a stray box does not move the crop
    smooth = np.array([np.median(track[max(0, j - k // 2) : j + k // 2 + 1], axis=0) for j in range(len(track))])
    every = np.arange(len(frames), dtype=float)
    boxes = np.stack([np.interp(every, idx, smooth[:, c]) for c in range(3)], axis=1)
    return boxes, len(seen), len(found)


def crop_frames(frames: np.ndarray, boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Square crops around each face (one side for the whole clip), resized to `size` (w, h)."""
    import cv2

    h, w = frames.shape[1:3]
    side = int(min(h, w, np.median(boxes[:, 2]) * CROP_FACES))
    out = []
    for frame, (cx, cy, _) in zip(frames, boxes):
        x0 = int(np.clip(cx - side / 2, 0, w - side))
        y0 = int(np.clip(cy - side * 0.4, 0, h - side))  # the face in the upper part, shoulders below
        out.append(cv2.resize(frame[y0 : y0 + side, x0 : x0 + side], size, interpolation=cv2.INTER_AREA))
    return np.stack(out)


def at_fps(frames: np.ndarray, fps: float, target: int) -> np.ndarray:
    """The frame showing at each 1/target s (nearest in time)."""
    n = int(np.floor(len(frames) / fps * target + 1e-6))
    return frames[np.minimum(np.round(np.arange(n) * fps / target).astype(int), len(frames) - 1)]


def prepare_clip(video: Path, text: Path, out: Path, cfg: Config) -> dict:
    """One clip into `out`; `Skipped` with the reason where it cannot be."""
    transcript = " ".join(speakable_text(text.read_text(encoding="utf-8", errors="replace")).split())
    if not transcript_words(transcript):
        raise Skipped("the transcript has no words")
    sr, fps = cfg.audio.sample_rate, cfg.stream.fps
    try:
        clip = read_mp4(video, sample_rate=sr)
    except StreamcharError as e:
        raise Skipped(str(e)) from None
    if len(clip.frames) == 0 or not clip.fps:
        raise Skipped("no video stream")
    if is_silent(clip.audio):
        raise Skipped("no speech (the audio is silent or missing)")
    boxes, looked, found = face_boxes(clip.frames, clip.fps)
    if found < FACE_SHARE * looked:
        raise Skipped(f"no face: one was found in {found} of {looked} frames looked at")
    frames = crop_frames(at_fps(clip.frames, clip.fps, fps), at_fps(boxes, clip.fps, fps), (cfg.video.width, cfg.video.height))
    audio = clip.audio[: int(len(frames) / fps * sr)]
    try:
        words = align_words(transcript, audio, sr)
    except (StreamcharError, RuntimeError) as e:  # RuntimeError: pocketsphinx refusing a word's phones
        raise Skipped(f"alignment failed: {e}") from None
    name = video.stem
    write_mp4(out / f".{name}.mp4", frames, fps, audio, sr)
    os.replace(out / f".{name}.mp4", out / f"{name}.mp4")
    from PIL import Image

    Image.fromarray(frames[0]).save(out / f"{name}.png")
    write_wav(out / f"{name}.voice.wav", audio[: int(VOICE_SECONDS * sr)], sr)
    record = {"transcript": transcript, "words": word_records(words),
              "split": "train", "reference_image": f"{name}.png", "reference_voice": f"{name}.voice.wav",
              "source": {"file": video.name, "fps": clip.fps, "size": list(clip.frames.shape[2:0:-1]), "faces_found": [found, looked]}}  # fmt: skip
    atomic_write_text(out / f"{name}.json", json.dumps(record, indent=1))
    return record


def _one(args: tuple[Path, Path, Path, Config]) -> tuple[str, str | None]:
    video, text, out, cfg = args
    try:
        prepare_clip(video, text, out, cfg)
        return video.stem, None
    except Skipped as e:
        return video.stem, str(e)
    except (StreamcharError, OSError, ValueError) as e:  # recorded with the clip; the others go on
        return video.stem, f"failed: {e}"


def _check_tools() -> None:
    import shutil

    try:
        import cv2  # noqa: F401
        import pocketsphinx  # noqa: F401
    except ModuleNotFoundError as e:
        raise StreamcharError(f"data prepare needs {e.name}: pip install 'streamchar[eval]'") from None
    detector()
    if shutil.which("t2p") is None:
        raise StreamcharError("data prepare spells words its aligner does not know with Flite's t2p: sudo apt-get install flite")


def _read_report(path: Path) -> dict:
    if not path.is_file():
        return {"prepared": [], "skipped": {}}
    try:
        report = json.loads(path.read_text())
        return {"prepared": list(report["prepared"]), "skipped": dict(report["skipped"])}
    except (json.JSONDecodeError, KeyError, TypeError):
        raise StreamcharError(f"{path} is damaged; remove it (the clips already prepared are kept and found again)") from None


def prepare_folder(src: Path, out: Path, cfg: Config, workers: int = 1, on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Every `<name>.mp4` of `src` with its `<name>.txt` into `out`; returns (and writes to
    `out/prepare.json`) the clips prepared and those skipped with their reasons."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise StreamcharError(f"--in {src} is not a folder")
    if out.resolve() == src.resolve():
        raise StreamcharError("--out must be another folder than --in: the prepared clips would replace the footage")
    _check_tools()
    videos = sorted(src.glob("*.mp4"))
    if not videos:
        raise StreamcharError(f"no <name>.mp4 files in {src}; each clip is a video and its transcript <name>.txt")
    out.mkdir(parents=True, exist_ok=True)
    report_path = out / REPORT
    report = _read_report(report_path)
    skipped = {v.stem: "no transcript: expected " + v.with_suffix(".txt").name for v in videos if not v.with_suffix(".txt").is_file()}
    skipped |= {v.stem: f"its name is the report's ({REPORT}); rename the clip" for v in videos if v.name == Path(REPORT).with_suffix(".mp4").name}
    todo = [v for v in videos if v.stem not in skipped and not (out / f"{v.stem}.json").is_file()]
    done = [v.stem for v in videos if (out / f"{v.stem}.json").is_file()]
    report["skipped"] = {**{k: r for k, r in report["skipped"].items() if k not in done}, **skipped}
    jobs = [(v, v.with_suffix(".txt"), out, cfg) for v in todo]
    pool = worker_pool(workers) if workers > 1 else None
    try:
        for k, (name, reason) in enumerate(pool.map(_one, jobs) if pool else map(_one, jobs)):
            if reason is None:
                done.append(name)
                report["skipped"].pop(name, None)
            else:
                report["skipped"][name] = reason
            report["prepared"] = sorted(set(done))
            atomic_write_text(report_path, json.dumps(report, indent=1))
            if on_progress:
                on_progress(k + 1, len(jobs))
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    report["prepared"] = sorted(set(done))
    atomic_write_text(report_path, json.dumps(report, indent=1))
    return report
