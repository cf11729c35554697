"""The orchestrator's word-duration head: when each word of a transcript is spoken, predicted from
the orchestrator's hidden states of the transcript and the reference voice (`word_pace.durations:
learned`).

Each word is read from the hidden states of its tokens (their mean, its last token, which is the
space or punctuation before the next word and so sees the pause coming, and how many there
are, which a mean does not keep); the reference
voice's latents, through a small strided convolution pooled over time, give the speaker's rate
and style. A transformer over the words mixes them, and each word gets its duration and the
pause after it; the start token, with the voice, gives the silence before the first word.

The plan this makes is what a stream reading by plan places its latents by (streaming/reading.py),
so streaming needs no speech engine. The head is trained on the data's word timings with the rest
of the model frozen (`streamchar train durations`), so that it never changes what the model
generates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from streamchar.config.schema import DurationHeadConfig

MIN_SECONDS = 0.02  # shortest predicted word


class DurationHead(nn.Module):
    def __init__(self, cfg: DurationHeadConfig, hidden: int, audio_channels: int):
        super().__init__()
        w = cfg.width
        self.voice = nn.Sequential(
            nn.Conv1d(audio_channels, w, 5, padding=2), nn.GELU(),
            nn.Conv1d(w, w, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv1d(w, w, 5, stride=2, padding=2), nn.GELU(),
        )  # fmt: skip
        self.word_in = nn.Linear(2 * hidden + 2 * w + 1, w)
        layer = nn.TransformerEncoderLayer(w, cfg.heads, 2 * w, dropout=0.0, batch_first=True, norm_first=True)
        self.mix = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.word_out = nn.Linear(w, 2)
        self.lead_out = nn.Sequential(nn.Linear(hidden + 2 * w, w), nn.GELU(), nn.Linear(w, 1))

    def forward(self, text_hidden: torch.Tensor, word_numbers: torch.Tensor, text_mask: torch.Tensor, words: int,
                reference_audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Seconds: (B, W) durations, (B, W) pauses after each word, (B,) silence before the
        first word, and (B, W) which words are real (W = `words`, the batch's most)."""
        with torch.autocast(text_hidden.device.type, enabled=False):
            h = text_hidden.float()
            v = self.voice(reference_audio.float())
            voice = torch.cat([v.mean(dim=2), v.std(dim=2)], dim=1)  # (B, 2w)
            numbers = word_numbers.long().masked_fill(~text_mask.bool(), -1)
            member = (numbers[:, None, :] == torch.arange(1, words + 1, device=h.device)[None, :, None]).float()  # (B, W, L)
            count = member.sum(dim=2, keepdim=True)
            mean = member @ h / count.clamp(min=1)
            last_index = (member * torch.arange(h.shape[1], device=h.device)).amax(dim=2).long()  # (B, W)
            last = torch.gather(h, 1, last_index[..., None].expand(-1, -1, h.shape[2]))
            real = count[..., 0] > 0
            x = self.word_in(torch.cat([mean, last, voice[:, None].expand(-1, words, -1), count.log1p()], dim=2))
            x = self.mix(x, src_key_padding_mask=~real) if words else x
            out = self.word_out(x)
            durations = F.softplus(out[..., 0]) + MIN_SECONDS
            pauses = F.softplus(out[..., 1] - 2.0)
            lead = F.softplus(self.lead_out(torch.cat([h[:, 0], voice], dim=1))[:, 0] - 2.0)
            return durations, pauses, lead, real


def starts_from(durations: torch.Tensor, pauses: torch.Tensor, lead: torch.Tensor) -> torch.Tensor:
    """(B, W) each word's start: the lead, then every word before it and the pause after it."""
    steps = durations + pauses
    return lead[:, None] + torch.cumsum(steps, dim=1) - steps


def duration_loss(durations: torch.Tensor, pauses: torch.Tensor, lead: torch.Tensor, real: torch.Tensor, target: torch.Tensor,
                  from_start: torch.Tensor) -> dict[str, torch.Tensor]:
    """L1 in seconds on each word's duration, the pause after it (not the last word's) and its start
    counted from the first word's (which a rate that is a little off moves the most), and on the
    lead where the text is a clip's beginning (`from_start`). `target` (B, W, 2): true (start, end)."""
    start, end = target[..., 0], target[..., 1]
    mask = real.float()
    n = mask.sum().clamp(min=1)
    gap_mask = mask * torch.cat([real[:, 1:], torch.zeros_like(real[:, :1])], dim=1).float()
    gaps = torch.cat([start[:, 1:] - end[:, :-1], torch.zeros_like(start[:, :1])], dim=1).clamp(min=0)
    d = ((durations - (end - start)).abs() * mask).sum() / n
    p = ((pauses - gaps).abs() * gap_mask).sum() / gap_mask.sum().clamp(min=1)
    planned = starts_from(durations, pauses, torch.zeros_like(lead))
    s = ((planned - (start - start[:, :1])).abs() * mask).sum() / n
    first = from_start.float()
    lead_loss = ((lead - start[:, 0]).abs() * first).sum() / first.sum().clamp(min=1)
    return {"loss": d + p + s + lead_loss, "duration": d, "pause": p, "start": s, "lead": lead_loss}
