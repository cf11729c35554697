"""What a server allows a client, and how far ahead it streams: every size a client controls has
a limit here, named in the error that enforces it."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_sessions: int | None = Field(None, ge=1, description="sessions at once; one more gets 503 with a retry hint "
                                     "(None: as many as the machine keeps real time, measured at start-up)")
    buffer_seconds: float = Field(1.2, ge=0.3, le=10, description="media a session generates ahead of its viewer's playback, at most "
                                  "(one chunk more may be on its way): small, so appended text and interrupts are heard soon; more than "
                                  "the 0.1 s of a written chunk that its next chunk releases")
    behind_hold_seconds: float = Field(20.0, ge=0, description="after a chunk reaches its viewer late or with under 0.2 s left to "
                                       "play, new sessions are refused (reason `behind`) this long (0: never)")
    max_text_chars: int = Field(2000, ge=1, description="characters of text in one request")
    max_pending_words: int = Field(600, ge=1, description="words given and not yet spoken, per session")
    max_upload_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="size of an uploaded reference image or voice")
    max_image_pixels: int = Field(24_000_000, ge=4096, description="pixels of an uploaded reference image (width x height), "
                                  "read from its header and refused before it is decoded")
    max_prompt_chars: int = Field(500, ge=0, description="characters of an uploaded character's prompt")
    idle_timeout_seconds: float = Field(120.0, gt=0, description="a session with no viewer connected and no request for this "
                                        "long is closed")
    max_message_bytes: int = Field(16 * 1024, ge=256, description="size of one WebSocket message from a client")
    threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, description="worker threads that make and render chunks, "
                         "one torch thread each (default: one per core)")
    max_batch: int = Field(4, ge=1, description="sessions whose next chunks go through the model together (1: one at a time); "
                           "4 kept the most sessions real time on 2 cores (docs/serving.md)")
    measure_mouth: bool = Field(False, description="measure each chunk's mouth opening for the sessions' status (mouth_speaking, "
                                "mouth_silent): a benchmark's check, a pass over every frame, off unless asked for")
    decode_batched: Literal["auto", "on", "off"] = Field("auto", description="decode the chunks of a model batch together, in the "
                                                         "worker that made them (auto: on a GPU, where a batch decodes in about one "
                                                         "chunk's time; a CPU's costs the sum)")
    decode_precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="the video decoder's precision: bf16 decodes "
                                                              "a chunk in about half the time where the CPU or GPU has bfloat16 "
                                                              "instructions (auto: there), with frames within a few levels of fp32's")
