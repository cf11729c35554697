"""Frame-level phoneme targets for the orchestrator's alignment loss, and mouth-shape targets for
the DiT's (tiny-scale training aids).

The paper's orchestrator is a pretrained 3B LLM that already reads text; a 4-layer one trained
from scratch on two cores learns to ignore the transcript instead (the tiny teacher's audio loss
moved by under 0.5% when its transcripts were shuffled) and speaks unintelligible babble. Asking
its hidden state at every audio latent, history and chunk alike, to name the phoneme spoken there
makes it align the transcript to the audio, which is what the frame-aligned condition c_a must
carry. Targets come from espeak's phoneme events in SynthTalk (forced-aligner phonemes for real
data); the head exists only when the preset sets `orchestrator.phoneme_classes`.

The DiT's video tokens likewise ignored the speech: the tiny teacher's mouth moved as much as the
data's but did not follow its own audio (mouth opening against loudness: correlation -0.03; the
data's 0.55). `latent_mouth_shapes` gives its mouth head (`dit.mouth_head`) the shape SynthTalk's
renderer drew from the same phonemes, and `latent_mouth_cells` marks the latent cells that hold
the mouth, where the flow loss can weigh more (`train.mouth_region_weight`): the mouth is 4 of a
frame's 64 latent cells at the tiny scale, so the plain mean let the teacher leave it vague.
"""

from __future__ import annotations

import numpy as np

from streamchar.config.schema import frames_of_latent
from streamchar.data.speech import Timed
from streamchar.data.visemes import mouth_track

# espeak-ng's English phoneme mnemonics (en-us voices); anything else is class 1, pauses class 0
PHONEMES = (
    "t", "n", "s", "D", "d", "I", "l", "@2", "k", "r", "z", "V", "w", "p", "a", "f", "m", "E", "b", "i:", "eI", "aI",
    "v", "h", "oU", "a#", "@", "u:", "3", "g", "0", "3:", "N", "S", "A@", "O2", "tS", "i", "aU", "O:", "T", "I2", "U",
    "dZ", "j", "o@", "aa", "O@", "t#", "e@", "@L", "I#", "t2", "i@3", "r-", "U@", "OI", "aI3", "?", "n-", "i@", "Z",
    "A:", "e", "oI", "I@", "@5", "l/2", "aI@", "aU@", "W", "x", "C",
)  # fmt: skip
SILENCE, OTHER = 0, 1
PHONEME_CLASSES = len(PHONEMES) + 2
IGNORE = -100  # padding: no target
_INDEX = {p: i + 2 for i, p in enumerate(PHONEMES)}


def phoneme_class(label: str) -> int:
    if not label or label.startswith("_"):
        return SILENCE
    return _INDEX.get(label, OTHER)


def frame_phonemes(phonemes: list[dict], start: float, frames: int, rate: float) -> np.ndarray:
    """The phoneme class sounding at the centre of each of `frames` latents from `start` seconds
    on, at `rate` latents per second; silence where no phoneme sounds."""
    centres = start + (np.arange(frames) + 0.5) / rate
    out = np.full(frames, SILENCE, dtype=np.int64)
    for p in phonemes:
        inside = (centres >= float(p["start"])) & (centres < float(p["end"]))
        out[inside] = phoneme_class(str(p["phoneme"]))
    return out


def latent_mouth_shapes(phonemes: list[dict], start: float, latent_frames: int, fps: int, stride: int) -> np.ndarray:
    """(latent_frames, 3) mouth shape (open, width, round) averaged over each video latent's
    frames (the first latent is frame 0 alone, each later one `stride` frames), for the latents
    of a chunk starting at `start` seconds."""
    timed = [Timed(str(p["phoneme"]), float(p["start"]), float(p["end"])) for p in phonemes]
    frames = 1 + stride * (latent_frames - 1)
    track = mouth_track(timed, start + (np.arange(frames) + 0.5) / fps)
    return np.stack([track[frames_of_latent(j, stride)].mean(0) for j in range(latent_frames)])


def latent_mouth_cells(boxes: list, first_frame: int, latent_frames: int, temporal_stride: int, spatial_stride: int,
                       grid: tuple[int, int]) -> np.ndarray:
    """(latent_frames, h, w) 1 where a latent cell overlaps the mouth box (x0, y0, x1, y1 in
    pixels) of any frame that latent codes, for the chunk whose frame 0 is `first_frame`; frames
    past the clip's boxes take its last box."""
    h, w = grid
    out = np.zeros((latent_frames, h, w), dtype=np.float32)
    if not boxes:
        return out
    last = len(boxes) - 1
    for j in range(latent_frames):
        for f in frames_of_latent(j, temporal_stride):
            x0, y0, x1, y1 = boxes[min(first_frame + f, last)]
            out[j, y0 // spatial_stride : -(-y1 // spatial_stride), x0 // spatial_stride : -(-x1 // spatial_stride)] = 1.0
    return out
