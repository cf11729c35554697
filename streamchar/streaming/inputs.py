"""What a stream is asked for, checked before any work starts: transcript, reference image,
reference voice and prompt, given directly or by a SynthTalk character id."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from streamchar.config import Config
from streamchar.data.audio import read_wav, resample
from streamchar.errors import StreamcharError, TooLarge

MIN_VOICE_SECONDS = 1.0
MAX_VOICE_SECONDS = 10.0


@dataclass
class StreamRequest:
    transcript: str
    reference_image: np.ndarray  # (H, W, 3) uint8 at the configured size
    reference_voice: np.ndarray  # float32 mono at the configured rate, 1-10 s
    prompt: str
    notices: tuple[str, ...] = ()


def check_transcript(text: str, allow_empty: bool = False) -> str:
    """Whitespace folded; empty only where `allow_empty` (a live session may start listening)."""
    clean = " ".join(text.split())
    if not clean and not allow_empty:
        raise StreamcharError("the transcript is empty; give at least one word to speak")
    return clean


def check_image_size(data: bytes, max_pixels: int) -> tuple[int, int]:
    """An image's (width, height) from its header, refused over `max_pixels` before a pixel is
    decoded (a small file can say it is huge)."""
    import io
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit here is the caller's
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
    except Image.DecompressionBombError as e:
        raise TooLarge(f"the reference image is too large to open ({e}); at most {max_pixels:,} pixels are accepted") from None
    except (OSError, ValueError) as e:
        raise StreamcharError(f"cannot read the reference image: {e}") from None
    if width * height > max_pixels:
        raise TooLarge(f"the reference image is {width}x{height} pixels; at most {max_pixels:,} pixels are accepted")
    return width, height


def load_reference_image(path: Path, cfg: Config) -> tuple[np.ndarray, list[str]]:
    try:
        img = Image.open(path).convert("RGB")
    except (OSError, ValueError) as e:
        raise StreamcharError(f"cannot read the reference image {path}: {e}") from None
    notices = []
    want = (cfg.video.width, cfg.video.height)
    if img.size != want:
        notices.append(f"reference image {img.size[0]}x{img.size[1]} resized to {want[0]}x{want[1]} (the model's frame size)")
        img = img.resize(want, Image.BICUBIC)
    return np.asarray(img), notices


def load_reference_voice(path: Path, cfg: Config) -> tuple[np.ndarray, list[str]]:
    try:
        audio, rate = read_wav(path)
    except (OSError, ValueError, EOFError) as e:
        raise StreamcharError(f"cannot read the reference voice {path} (a WAV file is expected): {e}") from None
    notices = []
    if rate != cfg.audio.sample_rate:
        notices.append(f"reference voice resampled from {rate} Hz to {cfg.audio.sample_rate} Hz")
        audio = resample(audio, rate, cfg.audio.sample_rate)
    return check_voice(audio, cfg), notices


def check_voice(audio: np.ndarray, cfg: Config) -> np.ndarray:
    seconds = len(audio) / cfg.audio.sample_rate
    if seconds < MIN_VOICE_SECONDS:
        raise StreamcharError(f"the reference voice is {seconds:.2f} s long; at least {MIN_VOICE_SECONDS:g} s of speech is needed")
    return np.asarray(audio[: int(MAX_VOICE_SECONDS * cfg.audio.sample_rate)], np.float32)


def _character(character: str, cfg: Config, seed: int):  # noqa: ANN202 - data.character.Character
    """A SynthTalk character by id: `unseen-K` / `train-K` (the K-th character of the set made
    with `seed`) or a bare character seed; its voice drawn from `cfg.synthtalk.engines`."""
    from streamchar.data.character import make_character
    from streamchar.data.synth import character_seeds

    train, unseen = character_seeds(seed, cfg)
    kind, _, num = character.partition("-")
    try:
        if kind in ("unseen", "train") and num:
            pool = unseen if kind == "unseen" else train
            char_seed = pool[int(num)]
        else:
            char_seed = int(character)
    except (ValueError, IndexError):
        raise StreamcharError(f"unknown character {character!r}: use unseen-0..unseen-{len(unseen) - 1}, "
                              f"train-0..train-{len(train) - 1} or a character seed") from None  # fmt: skip
    return make_character(char_seed, tuple(cfg.synthtalk.engines))


def character_request(character: str, transcript: str, cfg: Config, seed: int = 0, allow_empty: bool = False) -> StreamRequest:
    """A SynthTalk character (`_character`): it supplies image, voice (spoken by its engine) and prompt."""
    from streamchar.data.clip import neutral_frame
    from streamchar.data.harvard import split_sentences
    from streamchar.data.speech import synthesize

    ch = _character(character, cfg, seed)
    voice = synthesize(" ".join(split_sentences("val")[:2]), ch.voice, cfg.audio.sample_rate).audio
    prompt = f"{ch.describe()} talks {ch.scene()}"
    return StreamRequest(check_transcript(transcript, allow_empty), neutral_frame(ch, cfg), check_voice(voice, cfg), prompt)


def silent_voice_request(character: str, transcript: str, cfg: Config, seed: int = 0) -> StreamRequest:
    """A SynthTalk character's picture and prompt with a made-up voice (quiet noise): a request
    no speech engine is needed for, for warming a server up."""
    from streamchar.data.clip import neutral_frame

    ch = _character(character, cfg, seed)
    voice = (0.01 * np.random.default_rng(0).standard_normal(2 * cfg.audio.sample_rate)).astype(np.float32)
    return StreamRequest(check_transcript(transcript), neutral_frame(ch, cfg), check_voice(voice, cfg), f"{ch.describe()} talks {ch.scene()}")


def file_request(transcript: str, image: Path, voice: Path, prompt: str, cfg: Config) -> StreamRequest:
    img, n1 = load_reference_image(image, cfg)
    v, n2 = load_reference_voice(voice, cfg)
    return StreamRequest(check_transcript(transcript), img, v, prompt or "", tuple(n1 + n2))
