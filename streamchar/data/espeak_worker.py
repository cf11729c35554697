"""libespeak-ng's synthesis, in a helper process of its own (`python espeak_worker.py LIBRARY`), fed
requests on its stdin and answering on its stdout.

libespeak-ng carries voice-quality state (pitch flutter) from one utterance to the next, so each
utterance is spoken by a child forked from an engine that has spoken nothing. The fork happens here,
in a process with one thread that imports only the standard library, never in the process asking:
a fork copies the locks its other threads hold (torch, FFmpeg, a server's workers), and a child
that needs one (PyAV freeing a reformatter) waits for ever.

Request: 4-byte little-endian length, then JSON {"text", "name", "rate", "pitch", "range"}.
Answer: 8-byte little-endian length, then the payload `speech.py` decodes (empty: the child died).
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
import sys
from typing import BinaryIO

EV_LIST_TERMINATED, EV_WORD, EV_PHONEME = 0, 1, 7
AUDIO_OUTPUT_SYNCHRONOUS = 2
INIT_PHONEME_EVENTS = 0x0001
CHARS_UTF8 = 1
PARAM_RATE, PARAM_PITCH, PARAM_RANGE = 1, 3, 4
NO_VOICE = -1
HEAD = "<iqq"  # status, samples, events
EVENT = "<iii8s"  # type, text position, sample, label
REQUEST_LENGTH, ANSWER_LENGTH = "<I", "<Q"  # the frames' length prefixes


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class Engine:
    """One initialised libespeak-ng, which speaks what it is asked to in a forked child."""

    def __init__(self, library: str) -> None:
        self.lib = ctypes.CDLL(library)
        if self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None, INIT_PHONEME_EVENTS) <= 0:
            raise RuntimeError("espeak-ng failed to initialise")
        self._pcm: list[bytes] = []
        self._events: list[bytes] = []
        self._cb = _CALLBACK(self._on_audio)  # kept alive: espeak holds the pointer
        self.lib.espeak_SetSynthCallback(self._cb)
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]

    def _on_audio(self, wav, n, events) -> int:  # noqa: ANN001 - ctypes callback
        if n > 0:
            self._pcm.append(ctypes.string_at(wav, 2 * n))
        i = 0
        while events[i].type != EV_LIST_TERMINATED:
            e = events[i]
            if e.type in (EV_WORD, EV_PHONEME):
                label = e.id.string if e.type == EV_PHONEME else b""
                self._events.append(struct.pack(EVENT, e.type, e.text_position, e.sample, label))
            i += 1
        return 0

    def speak(self, request: dict) -> bytes:
        """The payload for one request, spoken by this engine (call it in a fresh child)."""
        if self.lib.espeak_SetVoiceByName(request["name"].encode()) != 0:
            return struct.pack(HEAD, NO_VOICE, 0, 0)
        for param, key in ((PARAM_RATE, "rate"), (PARAM_PITCH, "pitch"), (PARAM_RANGE, "range")):
            self.lib.espeak_SetParameter(param, int(request[key]), 0)
        data = request["text"].encode("utf-8")
        err = self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        if err != 0:
            return struct.pack(HEAD, err, 0, 0)
        pcm = b"".join(self._pcm)
        return struct.pack(HEAD, 0, len(pcm) // 2, len(self._events)) + pcm + b"".join(self._events)

    def speak_in_child(self, request: dict) -> bytes:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: speak, send, exit without running the parent's cleanup
            status = 1
            try:
                os.close(read_fd)
                view = memoryview(self.speak(request))
                while view:
                    view = view[os.write(write_fd, view) :]
                status = 0
            finally:
                os._exit(status)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            payload = f.read()
        _, status = os.waitpid(pid, 0)
        return payload if status == 0 else b""


def read_exactly(stream: BinaryIO, n: int) -> bytes | None:
    """`n` bytes from a pipe, or None where it ended first."""
    data = stream.read(n)
    return data if data is not None and len(data) == n else None


def serve(library: str, requests: BinaryIO, answers: BinaryIO) -> None:
    """Answer requests until the asking process closes the pipe."""
    engine = Engine(library)
    while (head := read_exactly(requests, struct.calcsize(REQUEST_LENGTH))) is not None:
        body = read_exactly(requests, struct.unpack(REQUEST_LENGTH, head)[0])
        if body is None:
            return
        payload = engine.speak_in_child(json.loads(body))
        answers.write(struct.pack(ANSWER_LENGTH, len(payload)) + payload)
        answers.flush()


if __name__ == "__main__":
    serve(sys.argv[1], sys.stdin.buffer, sys.stdout.buffer)
