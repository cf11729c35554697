"""One SynthTalk clip: speech, pose, frames, prompt, reference image and voice, written atomically."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from streamchar.config import Config
from streamchar.data.audio import write_wav
from streamchar.data.character import Character, make_character, speaking_with
from streamchar.data.motion import PoseTrack, make_pose_track
from streamchar.data.mp4 import aac_rate, write_mp4
from streamchar.data.render import CharacterRenderer
from streamchar.data.speech import Speech, synthesize
from streamchar.errors import UnspeakableText
from streamchar.utils.spoken import spoken_text

CLIP_FILES = {
    "video": "clip.mp4",
    "audio": "audio.wav",
    "reference_image": "reference.png",
    "reference_voice": "reference_voice.wav",
}
RECORD = "clip.json"


@dataclass(frozen=True)
class ClipPlan:
    clip_id: str
    index: int
    split: str
    character_seed: int
    sentences: list[str]
    reference_sentences: list[str]
    seed: int
    shard: str = field(default="shard-00000")


def describe_actions(character: Character, pose: PoseTrack) -> str:
    """What the character does in the clip, in words that are true of the pose track."""
    actions = ["talks"]
    if pose.nods:
        actions.append("nods")
    for g in pose.gestures:
        phrase = f"{g.kind} {character.pronoun} {g.side} hand"
        if phrase not in actions:
            actions.append(phrase)
    return actions[0] if len(actions) == 1 else ", ".join(actions[:-1]) + " and " + actions[-1]


def make_prompt(character: Character, pose: PoseTrack) -> str:
    return f"{character.describe()} {describe_actions(character, pose)} {character.scene()}"


def neutral_frame(character: Character, cfg: Config) -> np.ndarray:
    """The character at rest: mouth closed, eyes open, head centred, hands down."""
    return CharacterRenderer(character, cfg.video.height, cfg.video.width).render(PoseTrack.neutral(), 0)


def _timed(items, key: str, offset: float) -> list[dict]:  # noqa: ANN001
    """Timings as JSON records, shifted to the clip's timeline."""
    return [{key: t.label, "start": round(t.start + offset, 5), "end": round(t.end + offset, 5)} for t in items]


def _place(speech: Speech, lead: float, tail: float, samples_per_frame: int, fps: int) -> tuple[np.ndarray, int]:
    """Audio with `lead` s of silence before and at least `tail` after, cut to whole video frames."""
    n_frames = int(np.ceil((lead + speech.duration + tail) * fps))
    audio = np.zeros(n_frames * samples_per_frame, np.float32)
    start = int(round(lead * speech.sample_rate))
    audio[start : start + len(speech.audio)] = speech.audio
    return audio, n_frames


def build_clip(plan: ClipPlan, cfg: Config) -> dict:
    """Everything a clip holds, in memory: frames, audio, reference image/voice and its record."""
    syn = cfg.synthtalk
    fps, sr, spf = cfg.stream.fps, cfg.audio.sample_rate, cfg.samples_per_frame
    character = speaking_with(make_character(plan.character_seed, tuple(syn.engines)), syn.voice)
    rng = np.random.default_rng([plan.seed, 0xC11])
    typed = list(plan.sentences)
    sentences = [spoken_text(x) for x in typed]  # what the voice says and the model reads: "3" as "three"
    lead, tail = float(rng.uniform(0.1, 0.3)), 0.3
    while True:
        speech = synthesize(" ".join(sentences), character.voice, sr)
        if lead + speech.duration + tail <= syn.max_seconds or len(sentences) == 1:
            break
        sentences.pop()
        typed.pop()
    if lead + speech.duration + tail > syn.max_seconds:
        raise UnspeakableText(f"{plan.clip_id}: one sentence takes {speech.duration:.1f} s, longer than max_seconds")
    audio, n_frames = _place(speech, lead, tail, spf, fps)
    shifted = Speech(audio, sr, speech.words, speech.phonemes)
    pose = make_pose_track(shifted, lead, n_frames, fps, spf, rng)
    renderer = CharacterRenderer(character, cfg.video.height, cfg.video.width)
    frames = renderer.render_all(pose)
    reference = renderer.render(PoseTrack.neutral(), 0)

    ref_speech = synthesize(spoken_text(" ".join(plan.reference_sentences)), character.voice, sr)
    ref_audio, _ = _place(ref_speech, 0.1, 0.2, spf, fps)

    record = {
        "clip_id": plan.clip_id,
        "split": plan.split,
        "character_id": character.id,
        "character": character.to_json(),
        "voice": character.voice.describe(),
        "transcript": " ".join(sentences),
        "sentences": sentences,
        "typed_transcript": " ".join(typed),
        "prompt": make_prompt(character, pose),
        "words": _timed(speech.words, "word", lead),
        "phonemes": _timed(speech.phonemes, "phoneme", lead),
        "gestures": [asdict(g) for g in pose.gestures],
        "mouth_boxes": [list(renderer.mouth_box(pose, i)) for i in range(n_frames)],
        "nods": [round(t, 4) for t in pose.nods],
        "fps": fps,
        "frame_count": n_frames,
        "sample_rate": sr,
        "num_samples": int(len(audio)),
        "duration": n_frames / fps,
        "speech_start": round(lead, 5),
        "mp4_audio_rate": aac_rate(sr),
        "reference_voice_transcript": " ".join(plan.reference_sentences),
        "files": dict(CLIP_FILES),
        "seed": plan.seed,
    }
    return {"frames": frames, "audio": audio, "reference": reference, "reference_voice": ref_audio, "record": record, "pose": pose}


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_clip(clip: dict, final_dir: Path, cfg: Config) -> None:
    """Write into a temporary sibling folder, then rename: a clip folder is complete or absent."""
    final_dir = Path(final_dir)
    tmp = final_dir.parent / f".tmp-{final_dir.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        sr, fps = cfg.audio.sample_rate, cfg.stream.fps
        write_mp4(tmp / CLIP_FILES["video"], clip["frames"], fps, clip["audio"], sr, crf=cfg.synthtalk.crf)
        write_wav(tmp / CLIP_FILES["audio"], clip["audio"], sr)
        Image.fromarray(clip["reference"]).save(tmp / CLIP_FILES["reference_image"])
        write_wav(tmp / CLIP_FILES["reference_voice"], clip["reference_voice"], sr)
        (tmp / RECORD).write_text(json.dumps(clip["record"], indent=1))
        for f in tmp.iterdir():
            _fsync(f)
        _fsync(tmp)
        os.rename(tmp, final_dir)
        _fsync(final_dir.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
