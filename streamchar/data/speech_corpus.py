"""Speech-only corpora for the orchestrator's first stage (paper §5.1 pretrains it on Emilia):

- a folder of `<name>.wav|flac|mp3`, each with its transcript `<name>.txt` beside it, in nested
  folders as LibriTTS lays them out; an utterance's speaker is its folder;
- or a JSONL manifest, one utterance per line: `{"audio": PATH, "text": ..., "speaker": ...}`,
  the path relative to the manifest (the speaker defaults to the audio's folder).

Each utterance is read mono at the preset's audio rate and its words timed by forced alignment
(`data/align.py`), as `data prepare` times footage, because the pointer learns from word ends.
An utterance that cannot be used (no transcript, unreadable, silent, shorter than a chunk,
longer than `MAX_SECONDS`, not alignable) is listed with its reason and skipped. `encode_speech`
makes the speech-only latent cache `streamchar train orchestrator --data` reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from streamchar.codecs.base import AudioCodec
from streamchar.config import Config
from streamchar.data.audio import is_silent, resample
from streamchar.data.latents import encode_audio, write_cache
from streamchar.errors import StreamcharError
from streamchar.utils.files import atomic_write_text

SPEECH_FILES = (".wav", ".flac", ".mp3")
MAX_SECONDS = 30.0  # Emilia's segments run 3-30 s; the paper's clips at most 20 s (§5.1)


class Unusable(Exception):
    """An utterance that cannot be trained on, with the reason."""


@dataclass(frozen=True)
class Utterance:
    name: str  # its path under the corpus, without the suffix: the clip id
    audio: Path
    text: str | None  # None: the transcript is missing (said when it is loaded)
    speaker: str


def read_speech_file(path: Path) -> tuple[np.ndarray, int]:
    """An audio file as float32 mono in [-1, 1] and its rate (PyAV: FFmpeg's decoders, any format)."""
    import av

    try:
        with av.open(str(path)) as inp:
            if not inp.streams.audio:
                raise StreamcharError(f"{path} holds no audio stream")
            stream = inp.streams.audio[0]
            mono = av.AudioResampler(format="flt", layout="mono", rate=stream.rate)
            chunks = [f.to_ndarray().reshape(-1) for frame in inp.decode(stream) for f in mono.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in mono.resample(None)]
            return (np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)), stream.rate
    except (OSError, av.error.FFmpegError) as e:
        raise StreamcharError(f"cannot read {path}: {e}") from None


def speech_files(folder: Path) -> list[Path]:
    """Every audio file under `folder` (`SPEECH_FILES`), nested folders too, sorted by path."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in SPEECH_FILES and p.is_file())


def find_utterances(source: Path) -> list[Utterance]:
    """Every utterance of a corpus folder or JSONL manifest, sorted by name."""
    source = Path(source)
    if source.is_file() and source.suffix == ".jsonl":
        return _from_manifest(source)
    if not source.is_dir():
        raise StreamcharError(f"--speech takes a folder of {'/'.join(SPEECH_FILES)} files with .txt transcripts, or a .jsonl manifest; "
                              f"{source} is neither")  # fmt: skip
    found = []
    for path in speech_files(source):
        text_path = path.with_suffix(".txt")
        text = text_path.read_text(encoding="utf-8", errors="replace") if text_path.is_file() else None
        name = path.relative_to(source).with_suffix("").as_posix()
        found.append(Utterance(name, path, text, path.parent.relative_to(source).as_posix() or "."))
    if not found:
        raise StreamcharError(f"{source} holds no {'/'.join(SPEECH_FILES)} files")
    return found


def _from_manifest(manifest: Path) -> list[Utterance]:
    found = []
    for k, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            audio = manifest.parent / str(row["audio"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise StreamcharError(f"{manifest} line {k}: each line must be a JSON object with \"audio\" and \"text\" "
                                  "(and optionally \"speaker\")") from None  # fmt: skip
        text = row.get("text")
        name = Path(str(row["audio"])).with_suffix("").as_posix()
        found.append(Utterance(name, audio, text if isinstance(text, str) else None, str(row.get("speaker") or audio.parent.name)))
    if not found:
        raise StreamcharError(f"{manifest} lists no utterances")
    return sorted(found, key=lambda u: u.name)


def load_speech(u: Utterance, cfg: Config) -> np.ndarray:
    """The utterance's audio at the preset's rate; Unusable if it cannot be read or is silent."""
    if not u.audio.is_file():
        raise Unusable("the audio file does not exist")
    try:
        audio, rate = read_speech_file(u.audio)
    except StreamcharError as e:
        raise Unusable(str(e)) from None
    if rate <= 0 or not len(audio):
        raise Unusable("no audio samples")
    audio = resample(audio, rate, cfg.audio.sample_rate)
    if is_silent(audio):
        raise Unusable("silent (no speech above the noise floor)")
    return audio


def load_utterance(u: Utterance, cfg: Config) -> tuple[np.ndarray, str, list[dict]]:
    """Audio, transcript (as `data prepare` keeps it) and aligned word timings of a usable
    utterance, else Unusable with the reason."""
    from streamchar.data.align import align_words, word_records
    from streamchar.data.speech import speakable_text, transcript_words

    if u.text is None:
        raise Unusable(f"no transcript (expected {u.audio.with_suffix('.txt').name} beside it, or \"text\" in the manifest)")
    transcript = " ".join(speakable_text(u.text).split())
    if not transcript_words(transcript):
        raise Unusable("the transcript has no words")
    audio = load_speech(u, cfg)
    seconds = len(audio) / cfg.audio.sample_rate
    if seconds < cfg.stream.chunk_seconds:
        raise Unusable(f"{seconds:.2f} s long, shorter than one chunk ({cfg.stream.chunk_seconds:.3f} s)")
    if seconds > MAX_SECONDS:
        raise Unusable(f"{seconds:.1f} s long, over {MAX_SECONDS:.0f} s (split it into utterances)")
    try:
        words = align_words(transcript, audio, cfg.audio.sample_rate)
    except StreamcharError as e:
        raise Unusable(f"forced alignment failed: {e}") from None
    return audio, transcript, word_records(words)


def voice_partners(utterances: list[Utterance]) -> list[int | None]:
    """For each utterance, another of the same speaker whose voice is its reference (the next in
    order, round the speaker's list): the utterance's own speech would give its target away."""
    by_speaker: dict[str, list[int]] = {}
    for i, u in enumerate(utterances):
        by_speaker.setdefault(u.speaker, []).append(i)
    out: list[int | None] = [None] * len(utterances)
    for members in by_speaker.values():
        if len(members) > 1:
            for k, i in enumerate(members):
                out[i] = members[(k + 1) % len(members)]
    return out


VOICE_SECONDS = 10.0  # of the partner utterance kept as the reference voice (the orchestrator reads its first 3 s)
SKIPPED = "skipped.json"


def encode_speech(source: Path, out: Path, cfg: Config, codec: AudioCodec, codec_name: str, clips_per_shard: int = 64,
                  on_progress: Callable[[int, int], None] | None = None) -> dict:
    """A speech corpus as a speech-only latent cache (`data encode --speech`): per utterance its
    audio latents and, where its speaker has another utterance, that one's as the reference
    voice; records with the aligned words. The utterances left out are in `skipped.json`."""
    utterances = find_utterances(source)
    partners = voice_partners(utterances)
    sr, fps = cfg.audio.sample_rate, cfg.stream.fps
    settings = {"speech": str(Path(source).resolve()), "codecs": {"audio": codec_name}, "preset": cfg.preset, "utterances": len(utterances),
                "audio": cfg.audio.model_dump(), "clips_per_shard": clips_per_shard, "speech_only": True}  # fmt: skip
    skipped_path = Path(out) / SKIPPED
    skipped = {row["utterance"]: row for row in json.loads(skipped_path.read_text())} if skipped_path.exists() else {}

    def load(i: int, encode: bool) -> tuple[dict, dict[str, torch.Tensor]] | None:
        u = utterances[i]
        try:
            audio, transcript, words = load_utterance(u, cfg)
        except Unusable as e:
            skipped[u.name] = {"utterance": u.name, "file": str(u.audio), "reason": str(e)}
            return None
        rec = {"clip_id": u.name, "split": "train", "character_id": u.speaker, "transcript": transcript, "prompt": "", "words": words,
               "frames": int(len(audio) / sr * fps), "speech_only": True}  # fmt: skip
        if not encode:
            return rec, {}
        tensors = {"audio": encode_audio(codec, torch.from_numpy(audio))}
        if partners[i] is not None:
            try:
                voice = load_speech(utterances[partners[i]], cfg)[: int(VOICE_SECONDS * sr)]
                tensors["reference_voice"] = encode_audio(codec, torch.from_numpy(voice))
            except Unusable:
                pass  # its partner is skipped itself: no reference voice, as for a speaker heard once
        return rec, tensors

    result = write_cache(Path(out), settings, len(utterances), load, on_progress)
    atomic_write_text(skipped_path, json.dumps(sorted(skipped.values(), key=lambda r: r["utterance"]), indent=1))
    return {**result, "utterances": len(utterances), "skipped": len(skipped), "skipped_list": str(skipped_path)}
