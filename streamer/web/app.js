// ser's web page: the microphone or an audio file streamed to ser-serve, results shown live.
// Plain JavaScript, no build step, no CDN. Audio goes as 32-bit float PCM at the browser's
// sample rate in 100 ms frames (the server resamples, as it does for any client).
"use strict";

const LETTERS = { neutral: "N", calm: "C", happy: "H", sad: "S", angry: "A", fearful: "F",
  disgust: "D", surprised: "U" };  // the same letters as the terminal dashboard
const LABELS = Object.keys(LETTERS);
const FRAME_S = 0.1;
const HOLD_S = 30;          // audio kept while the server is away (oldest dropped beyond)
const MAX_IN_FLIGHT_S = 2;  // socket back-pressure: stop sending beyond this much unsent audio
const SPEECH_RMS = 0.02;    // the level meter's "speech" (a hint; the server's VAD decides)
const TIMELINE = 40;
const HISTORY = 12;
const BACKOFF_MIN_S = 0.5, BACKOFF_MAX_S = 10;

const $ = (id) => document.getElementById(id);
let token = "";             // memory only: never in the URL or in storage
const allResults = [];      // everything this page received, for the download
let current = null;         // the Session streaming now

function setStatus(text, kind = "") {
  const el = $("status");
  el.textContent = text;
  el.dataset.kind = kind;
}

function streamUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const base = location.pathname.replace(/[^/]*$/, "");
  return `${scheme}//${location.host}${base}v1/stream`;
}

function safeName(text) {
  const name = text.replace(/[^A-Za-z0-9_.:@-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 100);
  return `${name || "web"}-${Math.random().toString(16).slice(2, 8)}`;
}

async function checkToken() {
  // a browser cannot see why a WebSocket upgrade failed: ask the server first
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  let response;
  try {
    response = await fetch("v1/auth", { headers, cache: "no-store" });
  } catch (err) {
    setStatus("The server cannot be reached. Is ser-serve running?", "error");
    return false;
  }
  if (response.status === 401) {
    const why = (await response.text()).trim();
    setStatus(`The server refused the token (${why}): enter its token under “Token”.`, "error");
    $("auth").open = true;
    $("token").focus();
    return false;
  }
  return response.ok;
}

// ---- one stream to the server: reconnects with back-off, keeping its name ----

class Session {
  constructor(name, sampleRate, onEnd) {
    this.name = name;
    this.sampleRate = sampleRate;
    this.onEnd = onEnd;
    this.queue = [];          // Float32Array frames not yet sent
    this.queuedSamples = 0;
    this.dropped = 0;
    this.stopping = false;
    this.ended = false;
    this.backoff = BACKOFF_MIN_S;
    this.ws = null;
    this.ready = false;
    this.connect();
  }

  connect() {
    const protocols = token ? ["ser.v1", `ser.token.${token}`] : undefined;
    const ws = new WebSocket(streamUrl(), protocols);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.ready = false;
    ws.onopen = () => ws.send(JSON.stringify({ type: "start", stream: this.name,
      sample_rate: this.sampleRate, format: "f32le", channels: 1 }));
    ws.onmessage = (event) => this.receive(JSON.parse(event.data));
    ws.onclose = (event) => this.closed(event);
  }

  receive(message) {
    if (message.type === "ready") {
      this.ready = true;
      this.backoff = BACKOFF_MIN_S;
      $("model").textContent = `model ${message.model}` +
        (message.accuracy ? ` (${message.accuracy})` : "");
      $("stream").textContent = `stream ${message.stream}`;
      setStatus(this.stopping ? "Finishing…" : "Connected: listening.");
      this.flush();
    } else if (message.type === "result") {
      showResult(message);
    } else if (message.type === "end") {
      this.ended = true;
      setStatus(`Done: ${message.utterances} utterance${message.utterances === 1 ? "" : "s"}.`);
    } else if (message.type === "error") {
      this.lastError = message.message;
    }
  }

  closed(event) {
    this.ready = false;
    if (this.ended || (this.stopping && event.code === 1000)) {
      this.onEnd();
      return;
    }
    if (event.code === 1008 || event.code === 1009) {  // the server says this cannot work
      setStatus(`The server refused the stream: ${this.lastError || event.reason}`, "error");
      this.onEnd();
      return;
    }
    // drawn from the back-off's upper half: pages of one dead replica do not come back in step
    const wait = this.backoff * (0.5 + Math.random() / 2);
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_S);
    setStatus(`The server is away (${this.lastError || "connection lost"}): ` +
      `holding audio, reconnecting in ${wait.toFixed(1)} s…`, "warning");
    this.lastError = "";
    setTimeout(async () => {
      if (this.ended) return;
      if (await checkToken()) this.connect();
      else this.onEnd();
    }, wait * 1000);
  }

  push(samples) {
    this.queue.push(samples);
    this.queuedSamples += samples.length;
    while (this.queuedSamples > HOLD_S * this.sampleRate) {  // keep the newest
      this.queuedSamples -= this.queue.shift().length;
      this.dropped += 1;
    }
    this.flush();
  }

  inFlightS() {
    return this.ws ? this.ws.bufferedAmount / 4 / this.sampleRate : 0;
  }

  flush() {
    if (!this.ready) return;
    while (this.queue.length && this.inFlightS() < MAX_IN_FLIGHT_S) {
      const frame = this.queue.shift();
      this.queuedSamples -= frame.length;
      this.ws.send(frame.buffer.byteLength === frame.length * 4 ? frame.buffer : frame.slice().buffer);
    }
    if (this.queue.length) {
      setStatus(`The network cannot keep up: holding ${(this.queuedSamples / this.sampleRate).toFixed(1)} s of audio` +
        (this.dropped ? `, dropped ${(this.dropped * FRAME_S).toFixed(1)} s` : "") + ".", "warning");
      setTimeout(() => this.flush(), 100);
    } else if (this.stopping && !this.stopSent) {
      this.stopSent = true;
      this.ws.send(JSON.stringify({ type: "stop" }));
    }
  }

  reset() {
    if (this.ready) this.ws.send(JSON.stringify({ type: "reset" }));
  }

  stop() {
    this.stopping = true;
    this.flush();
  }
}

// ---- what the page shows ----

function buildBars() {
  const bars = $("bars");
  bars.replaceChildren();
  for (const label of LABELS) {
    const li = document.createElement("li");
    li.dataset.label = label;
    li.innerHTML = `<span class="e-${label}">${LETTERS[label]} ${label}</span>` +
      `<span class="track"><span class="fill"></span></span><span class="pct">–</span>`;
    bars.append(li);
  }
  const legend = $("legend");
  legend.replaceChildren();
  for (const label of LABELS) {
    const span = document.createElement("span");
    span.className = `e-${label}`;
    span.textContent = `${LETTERS[label]} ${label}`;
    legend.append(span);
  }
  const dot = document.createElement("span");
  dot.textContent = "· not speech";
  legend.append(dot);
}

function showResult(r) {
  allResults.push(r);
  $("download").disabled = false;
  const notSpeech = r.emotion === "not_speech";
  const current = $("current");
  current.className = notSpeech ? "notspeech" : (r.uncertain ? "uncertain" : `e-${r.emotion}`);
  current.textContent = notSpeech
    ? `not speech (speech probability ${Math.round(r.speech * 100)}%)`
    : `${r.emotion} ${Math.round(r.confidence * 100)}%${r.uncertain ? " (uncertain)" : ""}`;
  current.dataset.emotion = r.emotion;
  for (const li of $("bars").children) {
    const p = (r.probabilities || {})[li.dataset.label] || 0;
    li.querySelector(".fill").style.width = `${(p * 100).toFixed(0)}%`;
    li.querySelector(".pct").textContent = notSpeech ? "–" : `${Math.round(p * 100)}%`;
    li.classList.toggle("top", !notSpeech && li.dataset.label === r.emotion);
  }
  const timeline = $("timeline");
  const mark = document.createElement("span");
  mark.textContent = notSpeech ? "·" : LETTERS[r.emotion] || "?";
  mark.className = notSpeech ? "notspeech" : `e-${r.emotion}${r.uncertain ? " u" : ""}`;
  mark.title = `#${r.seq} ${notSpeech ? "not speech" : r.emotion} at ${r.start_s.toFixed(2)} s`;
  timeline.append(mark);
  while (timeline.children.length > TIMELINE) timeline.firstChild.remove();
  const row = document.createElement("tr");
  row.dataset.emotion = r.emotion;
  row.className = notSpeech || r.uncertain ? "uncertain" : "";
  row.innerHTML = `<td>${r.seq}</td><td>${r.start_s.toFixed(2)}</td>` +
    `<td class="e-${r.emotion}">${notSpeech ? "(not speech)" : r.emotion}</td>` +
    `<td>${notSpeech ? "" : Math.round(r.confidence * 100) + "%"}</td>`;
  $("history").prepend(row);
  while ($("history").children.length > HISTORY) $("history").lastChild.remove();
  if (r.trend) {
    const t = r.trend;
    $("trend").textContent = `trend: ${t.emotion} ${Math.round(t.confidence * 100)}% over ` +
      `${t.utterances} utterances · arousal ${t.arousal >= 0 ? "+" : ""}${t.arousal.toFixed(2)} ` +
      `· valence ${t.valence >= 0 ? "+" : ""}${t.valence.toFixed(2)}`;
  }
  setState("listening");
}

let lastLoud = 0, state = "idle";
function setState(next) {
  state = next;
  $("state").textContent = next;
}

function showLevel(rms) {
  $("level").style.width = `${Math.min(100, Math.sqrt(rms) * 200).toFixed(0)}%`;
  const now = performance.now();
  if (rms > SPEECH_RMS) {
    lastLoud = now;
    setState("speech");
  } else if (state === "speech" && now - lastLoud > 400) {
    setState("thinking");  // the utterance ended: its result is on its way
  }
}

// ---- the microphone ----

let mic = null;  // {context, stream, node}

async function startMic() {
  if (!window.isSecureContext || !navigator.mediaDevices) {
    setStatus("Browsers allow microphones only on https:// or localhost: open this page that way.", "error");
    return;
  }
  if (!(await checkToken())) return;
  setStatus("Asking for the microphone…");
  let media;
  try {
    media = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1,
      echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  } catch (err) {
    const why = {
      NotAllowedError: "Microphone permission was refused: allow it in the browser's site settings, or drop an audio file instead.",
      NotFoundError: "No microphone was found: plug one in, or drop an audio file instead.",
      NotReadableError: "The microphone is busy or unreadable (another program may hold it).",
    }[err.name] || `The microphone cannot be opened (${err.name}: ${err.message}).`;
    setStatus(why, "error");
    return;
  }
  const context = new AudioContext();
  await context.audioWorklet.addModule("static/worklet.js");
  const node = new AudioWorkletNode(context, "ser-capture");
  context.createMediaStreamSource(media).connect(node);
  node.connect(context.destination);  // pulled by the graph (it outputs silence)
  await context.resume();
  const session = new Session(safeName("web-mic"), context.sampleRate, () => stopMic(true));
  node.port.onmessage = (event) => {
    showLevel(event.data.rms);
    session.push(event.data.samples);
  };
  mic = { context, media, node, session };
  current = session;
  setState("listening");
  $("mic").textContent = "Stop microphone";
  $("reset").disabled = false;
  setStatus("Connecting…");
}

function stopMic(ended = false) {
  if (!mic) return;
  const { context, media, node, session } = mic;
  mic = null;
  node.port.onmessage = null;
  media.getTracks().forEach((t) => t.stop());
  context.close();
  if (!ended) session.stop();
  $("mic").textContent = "Start microphone";
  $("reset").disabled = true;
  setState("idle");
  $("level").style.width = "0%";
}

// ---- a file, decoded here and streamed ----

async function streamFile(file) {
  if (!(await checkToken())) return;
  setStatus(`Decoding ${file.name}…`);
  const context = new AudioContext();
  let audio;
  try {
    audio = await context.decodeAudioData(await file.arrayBuffer());
  } catch (err) {
    setStatus(`${file.name} cannot be decoded by this browser (${err.message}).`, "error");
    context.close();
    return;
  }
  context.close();
  const mono = new Float32Array(audio.length);
  for (let c = 0; c < audio.numberOfChannels; c++) {
    const data = audio.getChannelData(c);
    for (let i = 0; i < data.length; i++) mono[i] += data[i] / audio.numberOfChannels;
  }
  const rate = audio.sampleRate, step = Math.round(rate * FRAME_S);
  const realtime = $("realtime").checked;
  const done = new Promise((resolve) => {
    const session = new Session(safeName(file.name.replace(/\.[^.]*$/, "")), rate, resolve);
    current = session;
    let i = 0;
    const started = performance.now();
    const pump = () => {
      // real time: one frame per 100 ms; otherwise as fast as the socket takes it
      while (i < mono.length && (realtime
        ? (i / rate) * 1000 <= performance.now() - started
        : session.queue.length < 10)) {
        session.push(mono.slice(i, i + step));
        i += step;
      }
      if (i < mono.length) setTimeout(pump, realtime ? 20 : 5);
      else session.stop();
    };
    pump();
  });
  setStatus(`Streaming ${file.name}…`);
  await done;
}

function download() {
  const lines = allResults.map((r) => { const { type, ...rest } = r; return JSON.stringify(rest); });
  const blob = new Blob([lines.join("\n") + "\n"], { type: "application/x-ndjson" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = "ser-results.jsonl";
  a.click();
  URL.revokeObjectURL(a.href);
}

function main() {
  buildBars();
  // every result so far, as --json lines carry them (for scripts and tests driving the page)
  window.serResults = () => allResults.map(({ type, ...rest }) => rest);
  $("token").addEventListener("input", (e) => { token = e.target.value.trim(); });
  $("tokenform").addEventListener("submit", (e) => e.preventDefault());  // Enter: nothing to send
  $("mic").addEventListener("click", () => (mic ? stopMic() : startMic()));
  $("reset").addEventListener("click", () => current && current.reset());
  $("download").addEventListener("click", download);
  $("file").addEventListener("change", (e) => e.target.files[0] && streamFile(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) streamFile(e.dataTransfer.files[0]);
  });
}

main();
