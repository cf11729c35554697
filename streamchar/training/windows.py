"""Training windows cut from the latent cache the way the engine streams (paper §5.1).

For chunk c of a clip (frames [33c, 33c + 33), audio latents the same range):
- the reference frame's latent, the sink (chunk 0's latents, for c >= 1) and the motion latents
  (chunk c - 1's, none for a clip's first chunk);
- the target: 9 video latents and 33 audio latents;
- history audio: the audio latents of at most `stream.history_chunks` preceding chunks (the
  whole chunks that fit in `stream.history_seconds`), as the engine keeps whole chunks. With `vary_history` (`train.vary_history`)
  a later chunk's history is 1 to `history_chunks` chunks, drawn once per window: most of
  SynthTalk's clips are shorter than the history window, so few windows would otherwise show
  what every long stream reads once its window is full, a history that starts mid-speech and a
  transcript whose first words are cut away;
- the transcript with the words finished before the history window cut away and at most
  `lookahead_words` kept after the cut, its word numbers counted from the cut, after the
  prompt's first `prompt_tokens` tokens where the preset reads them (§3.2; the cut keeps them);
- the pointer's target: words finished by the end of the chunk, counted from the cut;
- the phoneme class at every history and target latent (the alignment loss's targets) and,
  for presets that read by the plan, where in the transcript each of them is spoken;
- with `mouth_cells`, which target latent cells hold the mouth (from the clips' mouth boxes,
  kept by the latent cache), for the flow loss's mouth-region term.

Word times come from the clip's word timings (espeak's events here, ASR timestamps for real
data), expanded to the words `normalize_words` counts (a hyphenated word counts as two).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from streamchar.config import Config
from streamchar.data.latents import LatentCache
from streamchar.errors import StreamcharError
from streamchar.model.alignment import spoken_positions, window_positions
from streamchar.model.tokenizer import CharacterTokenizer, QwenTokenizer, prompt_ids, with_prompt
from streamchar.training.phonemes import frame_phonemes, latent_mouth_cells, latent_mouth_shapes
from streamchar.utils.text import normalize_words

CHUNK_FRAMES = 33


def word_times(record: dict) -> list[tuple[float, float]]:
    """(start, end) in seconds of every normalised transcript word; a timed word that counts as
    several ("well-known") shares its time evenly among them."""
    times: list[tuple[float, float]] = []
    for w in record["words"]:
        k = len(normalize_words(w["word"]))  # "3" or a dash counts no word
        start, end = float(w["start"]), float(w["end"])
        times += [(start + (end - start) * i / k, start + (end - start) * (i + 1) / k) for i in range(k)]
    n = len(normalize_words(record["transcript"]))
    if len(times) < n:
        last = times[-1][1] if times else 0.0
        times += [(last, last)] * (n - len(times))
    return times[:n]


def word_end_times(record: dict) -> list[float]:
    """End time (s) of every normalised transcript word."""
    return [end for _, end in word_times(record)]


@dataclass
class Window:
    clip_id: str
    chunk: int
    reference: torch.Tensor  # (z, 1, h, w)
    sink: torch.Tensor | None  # (z, 9, h, w)
    motion: torch.Tensor | None  # (z, 9, h, w)
    video: torch.Tensor  # (z, 9, h, w)
    audio: torch.Tensor  # (z_a, 33)
    history: torch.Tensor  # (z_a, <= 330)
    reference_voice: torch.Tensor  # (z_a, n)
    text_ids: list[int]
    word_numbers: list[int]
    words: int  # N after the cut
    spoken: float  # pointer target after the cut
    prompt: str
    phonemes: torch.Tensor | None = None  # (history + 33,) phoneme class at each history and target latent
    text_positions: torch.Tensor | None = None  # (history + 33,) where in text_ids each latent is spoken (presets that read by the plan)
    mouth: torch.Tensor | None = None  # (9, 3) mouth shape of each target video latent (presets with the DiT's mouth head)
    mouth_cells: torch.Tensor | None = None  # (9, h, w) 1 on the target latent cells that hold the mouth (with `mouth_cells`)


class WindowSource:
    """Every (clip, chunk) of a cache split; clips shorter than one chunk are refused by name."""

    def __init__(self, cache: LatentCache, cfg: Config, tokenizer: CharacterTokenizer | QwenTokenizer, split: str = "train",
                 vary_history: bool = False, mouth_cells: bool = False):
        self.cache, self.cfg, self.tokenizer = cache, cfg, tokenizer
        self.vary_history, self.mouth_cells = vary_history, mouth_cells
        self.index: list[tuple[int, int]] = []
        short = []
        for i, rec in enumerate(cache.records):
            if rec["split"] != split:
                continue
            chunks = rec["frames"] // CHUNK_FRAMES
            if chunks == 0:
                short.append(rec["clip_id"])
            self.index += [(i, c) for c in range(chunks)]
        if not self.index:
            why = f" ({len(short)} clips shorter than one chunk of {CHUNK_FRAMES} frames, e.g. {short[0]})" if short else ""
            raise StreamcharError(f"the latent cache {cache.root} has no {split} chunks to train on{why}")
        if mouth_cells:
            unboxed = [cache.records[i]["clip_id"] for i in sorted({i for i, _ in self.index}) if not cache.records[i].get("mouth_boxes")]
            if unboxed:
                raise StreamcharError(f"the mouth-region loss needs the clips' mouth boxes, and {len(unboxed)} clips of the latent cache "
                                      f"{cache.root} have none (e.g. {unboxed[0]}); re-run `streamchar data encode` on SynthTalk data "
                                      "(existing shards are kept, only the records are rewritten) or set train.mouth_region_weight to 0")
        self.skipped_short = short
        self.speech_only = bool(cache.settings.get("speech_only"))  # `data encode --speech`: no video latents
        self._tokens: dict[int, tuple] = {}

    def __len__(self) -> int:
        return len(self.index)

    def _text(self, i: int):  # noqa: ANN202
        if i not in self._tokens:
            rec = self.cache.records[i]
            prompt = prompt_ids(self.tokenizer, rec.get("prompt", ""), self.cfg.orchestrator.prompt_tokens)
            self._tokens[i] = (self.tokenizer.encode(rec["transcript"]), word_times(rec), prompt)
        return self._tokens[i]

    def window(self, k: int) -> Window:
        i, c = self.index[k]
        rec = self.cache.records[i]
        t = self.cache.tensors(i)
        s = self.cfg.stream
        lv, la = s.chunk_latent_frames, s.chunk_audio_latents
        toks, times, prompt = self._text(i)
        ends = [end for _, end in times]
        first = max(0, c - s.history_chunks)
        if self.vary_history and c > 0:  # 1 .. history_chunks, fixed per window: a history that starts mid-speech, text cut
            first = c - int(np.random.default_rng(k).integers(1, c - first + 1))
        seconds = s.chunk_seconds
        cut = int(np.sum(np.array(ends) <= first * seconds + 1e-6)) if first > 0 else 0
        ids, numbers, n = toks.window(cut, self.cfg.orchestrator.lookahead_words)
        ids, numbers = with_prompt(prompt, ids, numbers)
        spoken = float(np.sum(np.array(ends) <= (c + 1) * seconds + 1e-6)) - cut
        # without a separate reference voice there is none (the clip's own audio would give the target away)
        voice = t.get("reference_voice", torch.zeros(t["audio"].shape[0], 0))
        frames = (c + 1 - first) * la
        timed = rec.get("phonemes")  # real footage and speech corpora have word timings alone: no phoneme or mouth targets
        phonemes = torch.from_numpy(frame_phonemes(timed, first * seconds, frames, s.audio_latent_rate)) if timed else None
        positions = None
        if self.cfg.orchestrator.plan is not None:
            centres = first * seconds + (np.arange(frames) + 0.5) / s.audio_latent_rate
            spoken_at = spoken_positions(toks, times, centres)
            positions = torch.from_numpy(window_positions(toks, cut, self.cfg.orchestrator.lookahead_words, spoken_at) + len(prompt)).float()
        mouth = None
        if self.cfg.dit.mouth_head and timed:
            mouth = torch.from_numpy(latent_mouth_shapes(timed, c * seconds, lv, s.fps, s.vae_temporal_stride))
        cells = None
        if self.mouth_cells:
            h, w = t["video"].shape[2:]
            cell_mask = latent_mouth_cells(rec["mouth_boxes"], c * CHUNK_FRAMES, lv, s.vae_temporal_stride, s.vae_spatial_stride, (h, w))
            cells = torch.from_numpy(cell_mask)
        video, reference = self._video(t, c)
        return Window(
            rec["clip_id"], c, reference, video[:, :lv] if c >= 1 else None, video[:, (c - 1) * lv : c * lv] if c >= 1 else None,
            video[:, c * lv : (c + 1) * lv], t["audio"][:, c * la : (c + 1) * la], t["audio"][:, first * la : c * la], voice,
            ids, numbers, n, float(np.clip(spoken, 0, n)), rec.get("prompt", ""), phonemes, positions, mouth, cells,
        )  # fmt: skip

    def _video(self, t: dict[str, torch.Tensor], c: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The clip's video and reference latents; for a speech-only clip, zeros as long as chunk
        `c` needs, which the speech-only stage never reads (it runs the DiT without video tokens)."""
        if "video" in t:
            return t["video"], t["reference"]
        s, v = self.cfg.stream, self.cfg.video
        h, w = v.height // s.vae_spatial_stride, v.width // s.vae_spatial_stride
        return torch.zeros(v.latent_channels, (c + 1) * s.chunk_latent_frames, h, w), torch.zeros(v.latent_channels, 1, h, w)
