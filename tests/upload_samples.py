"""Reference images and voices as a client uploads them (bytes), for the server's tests."""

import io
import struct
import wave
import zlib

import numpy as np
from PIL import Image


def sample_png() -> bytes:
    """A 64 x 80 skin-toned PNG."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 80), (180, 150, 120)).save(buf, "PNG")
    return buf.getvalue()


def sample_wav(seconds: float = 2.0, rate: int = 16000) -> bytes:
    """A 180 Hz tone as 16-bit mono PCM."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        t = np.arange(int(seconds * rate)) / rate
        w.writeframes((3000 * np.sin(2 * np.pi * 180 * t)).astype("<i2").tobytes())
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header says width x height, with no pixels after it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def silent_wav(seconds: float, rate: int = 16000, channels: int = 1, width: int = 2) -> bytes:
    """Silence in any layout the WAV header can say, sample widths and rates the server refuses included."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels), w.setsampwidth(width), w.setframerate(rate)
        w.writeframes(bytes(int(seconds * rate) * channels * width))
    return buf.getvalue()
