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

# `window.__clock(context, node, video)`: the sound reaching `node` as the audio graph renders it
# (blocks with their context frames, the last 20 s or so) and, for each painted frame, its media
# time, when it is to be shown, and where the audio output's clock then stands.
CLOCK_JS = """
window.__shown = []; window.__pcm = [];
window.__clock = (context, node, video) => {
  const shown = (now, meta) => {
    const out = context.getOutputTimestamp();
    window.__shown.push([meta.mediaTime, meta.expectedDisplayTime, out.contextTime, out.performanceTime]);
    if (window.__shown.length > 480) window.__shown.shift();
    video.requestVideoFrameCallback(shown);
  };
  video.requestVideoFrameCallback(shown);
  const code = `class Rec extends AudioWorkletProcessor {
    constructor() { super(); this.start = -1; this.parts = []; }
    process(inputs) {
      const x = inputs[0] && inputs[0][0];
      if (x) {
        if (this.start < 0) this.start = currentFrame;
        this.parts.push(x.slice(0));
        if (this.parts.length >= 96) { this.port.postMessage({ start: this.start, parts: this.parts }); this.start = -1; this.parts = []; }
      }
      return true;
    }
  }
  registerProcessor('streamchar-rec', Rec);`;
  const url = URL.createObjectURL(new Blob([code], { type: 'application/javascript' }));
  return context.audioWorklet.addModule(url).then(() => {
    const rec = new AudioWorkletNode(context, 'streamchar-rec', { numberOfOutputs: 0 });
    rec.port.onmessage = (m) => {
      const flat = new Float32Array(m.data.parts.reduce((k, p) => k + p.length, 0));
      let at = 0;
      for (const p of m.data.parts) { flat.set(p, at); at += p.length; }
      window.__pcm.push([m.data.start, Array.from(flat)]);
      if (window.__pcm.length > 80) window.__pcm.shift();
    };
    node.connect(rec);
    window.__rate = context.sampleRate;
  });
};
"""

# On the live page: keeps a copy of every appended fragment, samples each painted frame's mouth
# and the sound's loudness, and starts the clocks once the page's audio graph exists.
PROBE_JS = CLOCK_JS + """
(() => {
  window.__bytes = [];
  const append = SourceBuffer.prototype.appendBuffer;
  SourceBuffer.prototype.appendBuffer = function (data) { window.__bytes.push(new Uint8Array(data.slice(0))); return append.call(this, data); };
  window.__samples = [];
  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const video = document.getElementById('video');
  let buf = null, clocked = false;
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
      if (!clocked) { clocked = true; window.__clock(a.context, a.analyser, video); }
    }
    video.requestVideoFrameCallback(sample);
  };
  video.requestVideoFrameCallback(sample);
})();
"""

# The same clocks on a plain <video> playing a file written as `streamchar generate` writes it.
REFERENCE_HTML = """<!doctype html><html><body><video id="video" src="/__streamchar_reference.mp4"></video><script>
""" + CLOCK_JS + """
const video = document.getElementById('video');
const context = new AudioContext();
const analyser = context.createAnalyser();
context.createMediaElementSource(video).connect(analyser);
analyser.connect(context.destination);
window.__clock(context, analyser, video).then(() => video.play());
</script></body></html>"""


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
            lags.append(_offset(page, browser, host))
            if k == 0:
                page.screenshot(path=str(Path("out") / "bench-serve-page.png"))
            page.evaluate("window.streamchar.close()")
            page.close()
        browser.close()
    return {"first_frame_s": first, "append_to_heard_s": heard, "interrupt_to_silence_s": silence, "av_lags": lags}


def _offset(page, browser, host: str) -> dict:  # noqa: ANN001
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
    live = sound_behind_picture(page.evaluate("window.__pcm"), page.evaluate("window.__rate"), page.evaluate("window.__shown"), truth, rate)
    file = _reference_offset(browser, host, frames, truth, rate)
    both = live["av_offset_ms"] is not None and file["av_offset_ms"] is not None
    return {"sound_lag_frames": sound, "picture_lag_frames": picture, "frames_painted": int(painted.sum()), "frames": n, **live,
            "file_av_offset_ms": file["av_offset_ms"], "file_av_match": file.get("av_match"),
            "av_offset_vs_file_ms": live["av_offset_ms"] - file["av_offset_ms"] if both else None}  # fmt: skip


REFERENCE_SECONDS = 20  # of the stream's end, written to a file and played as the reference


def _reference_offset(browser, host: str, frames: np.ndarray, truth: np.ndarray, rate: int) -> dict:  # noqa: ANN001
    """The same clocks on the stream's last seconds written as a file (`FragmentedMp4Writer`,
    whose frame k and sound sample at k/24 s share a timestamp) and played by a plain <video> on
    the server's origin: what this browser reports for media it is given in sync, the reference
    the live stream's offset is read against."""
    import tempfile

    from streamchar.streaming.writers import FragmentedMp4Writer

    fps = 24
    first = max(0, len(frames) - REFERENCE_SECONDS * fps)
    clip = frames[first:]
    sound = truth[first * rate // fps : len(frames) * rate // fps]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reference.mp4"
        writer = FragmentedMp4Writer(path, fps, rate, clip.shape[2], clip.shape[1])
        writer.write(clip, sound)
        writer.close()
        body = path.read_bytes()
    page = browser.new_page()
    try:
        page.route(f"http://{host}/__streamchar_reference.html", lambda r: r.fulfill(body=REFERENCE_HTML, content_type="text/html"))
        page.route(f"http://{host}/__streamchar_reference.mp4", lambda r: r.fulfill(body=body, content_type="video/mp4"))
        page.goto(f"http://{host}/__streamchar_reference.html")
        _wait(page, "document.getElementById('video').ended", timeout=len(clip) / fps + 30)
        return sound_behind_picture(page.evaluate("window.__pcm"), page.evaluate("window.__rate"), page.evaluate("window.__shown"), sound, rate)
    finally:
        page.close()


def sound_behind_picture(pcm: list, context_rate: float, shown: list, truth: np.ndarray, rate: int) -> dict:
    """The offset in milliseconds, from clocks rather than frames: the sound the audio graph
    rendered (blocks at their context frames) is matched to the stream's own sound to find which
    context frame played media time 0; the browser's output timestamps turn context time into
    page time; each painted frame says which media time it showed when. Positive: the sound
    plays later than the picture showing the same moment."""
    from scipy.signal import correlate, resample_poly

    if not pcm or not shown:
        return {"av_offset_ms": None}
    first = min(start for start, _ in pcm)
    heard = np.zeros(max(start + len(x) for start, x in pcm) - first, np.float32)
    for start, x in pcm:
        heard[start - first : start - first + len(x)] = x
    ctx_rate = int(round(context_rate))
    g = np.gcd(ctx_rate, rate)
    said = resample_poly(truth, ctx_rate // g, rate // g).astype(np.float32)  # the stream's sound on the context's clock
    score = correlate(heard, said, mode="full", method="fft")
    lag = int(np.argmax(score)) - (len(said) - 1)  # heard[k] ~ said[k - lag]: media time 0 at context frame first + lag
    zero_ctx = (first + lag) / context_rate
    shown_a = np.asarray(shown, dtype=np.float64)  # mediaTime, expectedDisplayTime (ms), output contextTime, its performanceTime (ms)
    page_minus_ctx = float(np.median(shown_a[:, 3] - shown_a[:, 2] * 1000.0))
    sound_media = (shown_a[:, 1] - page_minus_ctx) / 1000.0 - zero_ctx  # the media time being heard as each frame is shown
    offsets = (shown_a[:, 0] - sound_media) * 1000.0
    k = np.arange(len(heard))
    inside = (k - lag >= 0) & (k - lag < len(said))
    a, b = heard[inside], said[k[inside] - lag]
    match = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))  # how alike the heard sound and the stream's are, aligned
    return {"av_offset_ms": float(np.median(offsets)), "av_offset_ms_iqr": float(np.subtract(*np.percentile(offsets, [75, 25]))),
            "av_match": match}


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
