// streamchar live page: a session's fragmented MP4 arrives over a WebSocket and plays through
// Media Source Extensions; each chunk says which words it speaks and when, so the transcript is
// highlighted from the stream's own position, not from a timer.
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token");
const $ = (id) => document.getElementById(id);
const video = $("video");

const stats = {
  session: null, first_frame_s: null, words_spoken: 0, words_total: 0, stalls: 0, buffer_s: 0,
  real_time_factor: null, playing: false, chunks: 0, append_to_heard_s: null, interrupt_to_silence_s: null,
  audio_rms: 0, errors: [], closed: false, closing: null, frames_painted: 0, media_time: 0,
};
let ws = null, mediaSource = null, sourceBuffer = null, queue = [], mime = null;
let words = [], wordTimes = [], spans = [];
let tRequest = 0, lastAppend = null, lastInterrupt = null, audio = null, timers = [];

function headers(extra = {}) { return token ? { ...extra, Authorization: `Bearer ${token}` } : extra; }
function say(text) { $("message").textContent = text || ""; if (text) stats.errors.push(text); }

async function api(path, options = {}) {
  const r = await fetch(path, { ...options, headers: headers(options.headers || {}) });
  const body = r.status === 204 ? {} : await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  return body;
}

// sessions ------------------------------------------------------------------------------------
async function start(character, text, upload) {
  close();
  stats.closed = false;
  tRequest = performance.now();
  Object.assign(stats, { first_frame_s: null, words_spoken: 0, stalls: 0, chunks: 0, append_to_heard_s: null, interrupt_to_silence_s: null,
                         frames_painted: 0, media_time: 0 });
  let s;
  try {
    if (upload) {
      const form = new FormData();
      form.append("image", upload.image); form.append("voice", upload.voice);
      form.append("prompt", upload.prompt || ""); form.append("text", text || "");
      s = await api("/api/sessions/upload", { method: "POST", body: form });
    } else {
      s = await api("/api/sessions", { method: "POST", body: JSON.stringify({ character, text: text || "" }), headers: { "Content-Type": "application/json" } });
    }
  } catch (e) { say(e.message); return null; }
  say("");
  stats.session = s.id;
  setWords(0, s.words); stats.words_total = s.words_total;
  openMedia();
  const q = token ? `?token=${encodeURIComponent(token)}` : "";
  ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${s.media}${q}`);
  ws.binaryType = "arraybuffer";
  ws.onmessage = (ev) => (typeof ev.data === "string" ? handle(JSON.parse(ev.data)) : enqueue(ev.data));
  ws.onclose = () => { stats.closed = true; buttons(false); };
  buttons(true);
  timers.push(setInterval(report, 250), setInterval(poll, 1000));
  return s.id;
}

function handle(m) {
  if (m.type === "chunk") {
    if (m.mime && !mime) { mime = m.mime; makeSourceBuffer(); }
    for (const [i, a, b] of m.words) wordTimes[i] = [a, b];
    stats.words_total = m.words_total; stats.chunks += 1;
  } else if (m.type === "text") {
    setWords(m.first_word, m.words); stats.words_total = m.words_total;
  } else if (m.type === "interrupted") {
    words.length = Math.min(words.length, m.words_total); wordTimes.length = Math.min(wordTimes.length, m.words_total);
    stats.words_total = m.words_total; renderTranscript();
    if (lastInterrupt) lastInterrupt.kept = m.words_total;
  } else if (m.type === "error") {
    say(m.error);
  } else if (m.type === "closing") {
    stats.closing = m.reason; $("message").textContent = `The session has ended: ${m.reason}.`;  // not an error of the page's
  } else if (m.type === "session") {
    setWords(0, m.words); stats.words_total = m.words_total;
  }
}

function send(message) { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message)); }

function append(text) {
  if (!ws || !text || !text.trim()) return false;
  lastAppend = { sent: performance.now(), first: stats.words_total, heard: false };
  stats.append_to_heard_s = null;
  send({ type: "append", text });
  return true;
}

function interrupt() {
  if (!ws) return false;
  lastInterrupt = { sent: performance.now(), kept: null };
  stats.interrupt_to_silence_s = null;
  send({ type: "interrupt" });
  return true;
}

function close() {
  for (const t of timers) clearInterval(t);
  timers = [];
  if (ws) { ws.onclose = null; ws.close(); }
  if (stats.session && !stats.closed) fetch(`/api/sessions/${stats.session}`, { method: "DELETE", headers: headers() }).catch(() => {});
  ws = null; stats.closed = true; buttons(false);
}

function buttons(live) { $("interrupt").disabled = !live; $("close").disabled = !live; $("speak").textContent = live ? "Add" : "Speak"; }

// media -----------------------------------------------------------------------------------------
function openMedia() {
  queue = []; sourceBuffer = null; mime = null;
  mediaSource = new MediaSource();
  video.src = URL.createObjectURL(mediaSource);
  mediaSource.addEventListener("sourceopen", makeSourceBuffer, { once: true });
  const painted = (now, frame) => {
    if (stats.first_frame_s === null) { stats.first_frame_s = (now - tRequest) / 1000; show(); }
    stats.frames_painted += 1; stats.media_time = frame.mediaTime;
    if (!stats.closed) video.requestVideoFrameCallback(painted);
  };
  video.requestVideoFrameCallback(painted);
}

function makeSourceBuffer() {
  if (!mime || sourceBuffer || mediaSource.readyState !== "open") return;
  if (!MediaSource.isTypeSupported(mime)) { say(`this browser cannot play ${mime}`); return; }
  sourceBuffer = mediaSource.addSourceBuffer(mime);
  sourceBuffer.addEventListener("updateend", pump);
  pump();
}

function enqueue(data) { queue.push(data); pump(); }

function pump() {
  if (!sourceBuffer || sourceBuffer.updating) return;
  const t = video.currentTime;
  if (sourceBuffer.buffered.length && t - sourceBuffer.buffered.start(0) > 30) { sourceBuffer.remove(0, t - 10); return; }
  const next = queue.shift();
  if (next) sourceBuffer.appendBuffer(next);
  if (!stats.playing && sourceBuffer.buffered.length) play();
}

function play() {
  stats.playing = true;
  if (!audio) listen();
  video.play().catch(() => { video.muted = true; $("unmute").hidden = false; video.play().catch(() => {}); });
}

function listen() {
  // the level meter and the measured silence after an interrupt read the element's own sound
  try {
    const context = new AudioContext();
    const analyser = context.createAnalyser();
    analyser.fftSize = 1024;
    context.createMediaElementSource(video).connect(analyser);
    analyser.connect(context.destination);
    audio = { context, analyser, samples: new Float32Array(analyser.fftSize) };
  } catch (e) { audio = { failed: String(e) }; }
}

video.addEventListener("waiting", () => { if (stats.playing && stats.first_frame_s !== null && !stats.closed) stats.stalls += 1; });

// where the viewer is in the transcript ----------------------------------------------------------
function setWords(first, list) {
  list.forEach((w, k) => { words[first + k] = w; });
  renderTranscript();
}

function renderTranscript() {
  const box = $("transcript");
  box.textContent = "";
  // one span per typed token; the later words of a token spoken as several ("$3": "three dollars") share its span
  spans = [];
  words.forEach((w) => {
    if (w === "" && spans.length) { spans.push(spans[spans.length - 1]); return; }
    const s = document.createElement("span"); s.textContent = w; box.append(s, " "); spans.push(s);
  });
}

function tick() {
  const t = video.currentTime;
  let heard = 0, now = -1;
  while (heard < wordTimes.length && wordTimes[heard] && wordTimes[heard][1] <= t) heard += 1;
  if (wordTimes[heard] && wordTimes[heard][0] <= t) now = heard;
  if (heard !== stats.words_spoken || now !== tick.now) {
    spans.forEach((s) => { s.className = ""; });
    spans.forEach((s, i) => { if (i < heard) s.className = "heard"; });
    if (spans[now]) spans[now].className = "now";
    if (spans[now]) spans[now].scrollIntoView({ block: "nearest" });
    tick.now = now;
  }
  stats.words_spoken = heard;
  if (lastAppend && !lastAppend.heard && wordTimes[lastAppend.first] && t >= wordTimes[lastAppend.first][0]) {
    lastAppend.heard = true; stats.append_to_heard_s = (performance.now() - lastAppend.sent) / 1000;
  }
  if (lastInterrupt && lastInterrupt.kept !== null && stats.interrupt_to_silence_s === null) {
    const kept = lastInterrupt.kept, last = kept > 0 ? wordTimes[kept - 1] : null;
    if ((kept === 0 || last) && (!last || t >= last[1])) stats.interrupt_to_silence_s = (performance.now() - lastInterrupt.sent) / 1000;
  }
  if (sourceBuffer && sourceBuffer.buffered.length) stats.buffer_s = Math.max(0, sourceBuffer.buffered.end(sourceBuffer.buffered.length - 1) - t);
  if (audio && audio.analyser) {
    audio.analyser.getFloatTimeDomainData(audio.samples);
    stats.audio_rms = Math.sqrt(audio.samples.reduce((a, x) => a + x * x, 0) / audio.samples.length);
  }
  show();
  requestAnimationFrame(tick);
}

function report() { if (stats.playing) send({ type: "position", t: video.currentTime, stalls: stats.stalls }); }

async function poll() {
  if (!stats.session || stats.closed) return;
  try { const s = await api(`/api/sessions/${stats.session}`); stats.real_time_factor = s.real_time_factor; } catch (e) { /* closed meanwhile */ }
}

function show() {
  const f = (x, d = 2, unit = "") => (x === null || x === undefined ? "–" : `${x.toFixed(d)}${unit}`);
  $("f-first").textContent = f(stats.first_frame_s, 2, " s");
  $("f-rtf").textContent = f(stats.real_time_factor);
  $("f-buffer").textContent = f(stats.buffer_s, 1, " s");
  $("f-stalls").textContent = String(stats.stalls);
  $("f-words").textContent = `${stats.words_spoken} / ${stats.words_total}`;
  $("f-level").value = stats.audio_rms;
}

// the form ----------------------------------------------------------------------------------------
async function init() {
  const list = await api("/api/characters").catch((e) => { say(e.message); return { characters: [] }; });
  for (const c of list.characters) $("character").append(new Option(c, c));
  $("speak").onclick = () => {
    const text = $("text").value;
    if (ws && !stats.closed) { if (append(text)) $("text").value = ""; return; }
    const image = $("image").files[0], voice = $("voice").files[0];
    const upload = $("upload").open && image && voice ? { image, voice, prompt: $("prompt").value } : null;
    start($("character").value, text, upload).then((id) => { if (id) $("text").value = ""; });
  };
  $("interrupt").onclick = interrupt;
  $("close").onclick = close;
  $("unmute").onclick = () => { video.muted = false; if (audio && audio.context) audio.context.resume(); $("unmute").hidden = true; };
  requestAnimationFrame(tick);
  const character = params.get("character");
  if (character) {
    $("character").value = character;
    if (params.get("autoplay") === "1") start(character, params.get("text") || "");
  }
}

window.streamchar = { stats, start, append, interrupt, close, audio: () => audio };
init();
