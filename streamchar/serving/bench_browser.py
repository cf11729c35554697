"""What a viewer sees, measured in Debian's Chromium (headless, driven by Playwright): request
to first frame painted, text appended while the character listens to its first word heard,
interrupt to silence, and the audio-video offset at the browser.

The offset: while the page plays, every painted frame (`requestVideoFrameCallback`) is drawn
to a canvas, where the open mouth's pixels are counted as `mouth_opening` counts them, beside
the loudness of the element's sound at that moment (a Web Audio analyser). Both series are
matched against the same measures on the very bytes the page was given, decoded here: the
lag of the sound is the audio-video offset the transport and the browser add.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import time
from pathlib import Path
from urllib.parse import quote

import av
import numpy as np

from streamchar.data.motion import loudness
from streamchar.errors import StreamcharError
from streamchar.evaluation.synthtalk_checks import best_lag, mouth_opening
from streamchar.streaming.writers import AAC_PRIMING_SAMPLES

CHROMIUM_ARGS = ["--autoplay-policy=no-user-gesture-required", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
STATS = "window.streamchar.stats"
MAX_LAG = 12  # frames either way the mouth-to-sound lag is looked for

# Keeps a copy of every appended fragment, and samples each painted frame's mouth and the sound's loudness.
PROBE_JS = """
(() => {
  window.__bytes = [];
  const append = SourceBuffer.prototype.appendBuffer;
  SourceBuffer.prototype.appendBuffer = function (data) { window.__bytes.push(new Uint8Array(data.slice(0))); return append.call(this, data); };
  window.__samples = [];
  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const video = document.getElementById('video');
  let buf = null;
  const sample = (now, meta) => {
    const a = window.streamchar && window.streamchar.audio();
    if (video.videoWidth && a && a.analyser) {
      canvas.width = video.videoWidth; canvas.height = video.videoHeight;
      ctx.drawImage(video, 0, 0);
      const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      let mouth = 0;
      for (let i = 0; i < d.length; i += 4) {
        const r = d[i], g = d[i + 1], b = d[i + 2];
        if (Math.abs(r - 60) < 28 && g < 36 && b < 42 && r - g > 22) mouth += 1;
      }
      if (!buf) buf = new Float32Array(a.analyser.fftSize);
      a.analyser.getFloatTimeDomainData(buf);
      const n = Math.min(buf.length, Math.round(a.context.sampleRate / 24));
      let e = 0;
      for (let i = buf.length - n; i < buf.length; i++) e += buf[i] * buf[i];
      window.__samples.push([meta.mediaTime, mouth, Math.sqrt(e / n)]);
    }
    video.requestVideoFrameCallback(sample);
  };
  video.requestVideoFrameCallback(sample);
})();
"""


def chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        raise StreamcharError("bench serve needs Debian's chromium (scripts/install.sh installs it: apt-get install chromium)")
    return path


def _wait(page, condition: str, timeout: float = 30.0) -> None:  # noqa: ANN001
    page.wait_for_function(condition, timeout=timeout * 1000)


def _idle(page, seconds: float = 2.0) -> None:  # noqa: ANN001
    """Until every word is heard, then `seconds` more of silence."""
    _wait(page, f"{STATS}.words_total > 0 && {STATS}.words_spoken === {STATS}.words_total", 60)
    time.sleep(seconds)


def probe_page(host: str, trials: int, sentences: list[str], long_text: str) -> dict:
    """`trials` page loads, each timing its first frame, one idle append and one interrupt."""
    from playwright.sync_api import sync_playwright

    first, heard, silence, lags = [], [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        for k in range(trials):
            page = browser.new_page()
            page.add_init_script("window.addEventListener('DOMContentLoaded', () => {" + PROBE_JS + "});")
            page.goto(f"http://{host}/?character=unseen-{k % 8}&text={quote(sentences[k % len(sentences)])}&autoplay=1")
            _wait(page, f"{STATS}.first_frame_s !== null")
            first.append(page.evaluate(f"{STATS}.first_frame_s"))
            _idle(page)
            page.evaluate(f"window.streamchar.append({json.dumps(sentences[(k + 1) % len(sentences)])})")
            _wait(page, f"{STATS}.append_to_heard_s !== null")
            heard.append(page.evaluate(f"{STATS}.append_to_heard_s"))
            _idle(page, 1.0)
            page.evaluate(f"window.streamchar.append({json.dumps(long_text)})")
            _wait(page, f"{STATS}.words_spoken >= {STATS}.words_total - 20")  # well inside the long text
            time.sleep(1.0)
            _wait(page, f"{STATS}.audio_rms > 0.02")  # in a word, not between sentences
            page.evaluate("window.streamchar.interrupt()")
            _wait(page, f"{STATS}.interrupt_to_silence_s !== null")
            silence.append(page.evaluate(f"{STATS}.interrupt_to_silence_s"))
            time.sleep(1.0)
            lags.append(_offset(page))
            if k == 0:
                page.screenshot(path=str(Path("out") / "bench-serve-page.png"))
            page.evaluate("window.streamchar.close()")
            page.close()
        browser.close()
    return {"first_frame_s": first, "append_to_heard_s": heard, "interrupt_to_silence_s": silence, "av_lags": lags}


def _offset(page) -> dict:  # noqa: ANN001
    """Where the browser plays the sound against the frames it paints: the lag (frames; positive:
    the sound comes later) at which the loudness heard at each painted frame best matches the
    loudness of that frame's own audio in the bytes the page was given (decoded here, where the
    encoder's priming is trimmed, and put back where the muxer meant it). The mouth seen against
    the mouth in the bytes is reported beside it (sparse: a few dozen pixels; a rough check)."""
    samples = np.array(page.evaluate("window.__samples"), dtype=np.float64)
    data = base64.b64decode(page.evaluate("btoa(window.__bytes.map(b => Array.from(b, c => String.fromCharCode(c)).join('')).join(''))"))
    frames, audio, rate = _decode(data)
    fps = 24
    n = len(frames)
    index = np.round(samples[:, 0] * fps).astype(int)
    keep = (index >= 0) & (index < n) & np.isfinite(samples[:, 2])
    grid = np.arange(n)
    painted = np.zeros(n, bool)
    painted[index[keep]] = True

    def on_grid(values: np.ndarray) -> np.ndarray:
        at = np.full(n, np.nan)
        at[index[keep]] = values[keep]
        return np.interp(grid, grid[painted], at[painted])

    truth = np.concatenate([np.zeros(AAC_PRIMING_SAMPLES, np.float32), audio])  # the live muxer starts its sound that early
    sound = best_lag(on_grid(samples[:, 2]), loudness(truth, rate // fps, n), MAX_LAG)
    picture = best_lag(on_grid(samples[:, 1]), mouth_opening(frames), MAX_LAG)
    return {"sound_lag_frames": sound, "picture_lag_frames": picture, "frames_painted": int(painted.sum()), "frames": n}


def _decode(data: bytes) -> tuple[np.ndarray, np.ndarray, int]:
    """Frames placed by their timestamps (frame i at i/24 s; a missing one repeats the one
    before) and the sound from its first sample, at the AAC stream's rate."""
    with av.open(io.BytesIO(data)) as c:
        placed = {round(float(f.pts * f.time_base) * 24): f.to_ndarray(format="rgb24") for f in c.decode(video=0)}
    n = max(placed) + 1
    frames, last = [], placed[min(placed)]
    for i in range(n):
        last = placed.get(i, last)
        frames.append(last)
    with av.open(io.BytesIO(data)) as c:
        rate = c.streams.audio[0].rate
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)]).astype(np.float32)
    return np.stack(frames), audio, rate
