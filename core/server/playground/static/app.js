// The Avaluma playground page: a WebRTC connection to `avaluma playground` and a few buttons. No build step.
//
// It also measures what a viewer gets, as the browser receives it: the mouth region of every presented video frame
// (its mean brightness drops when the mouth opens) and the loudness of the received audio, so that "first lip frame
// after Say" and "lip movement vs sound onset" are measured here, not on the server. With ?autotest=1 the page runs
// that measurement by itself and posts a report to /api/report (tests/e2e/test_playground_browser.py, bench/).
"use strict";

const $ = (id) => document.getElementById(id);
const video = $("video");
const state = {
  pc: null, sessionId: null, channel: null, avatars: [], mouth: null, micTrack: null,
  frames: [], events: [], audioOnsets: [], analyser: null, audioCtx: null,
};

function log(line) {
  const el = $("log");
  el.textContent += `${new Date().toISOString().slice(11, 23)} ${line}\n`;
  el.scrollTop = el.scrollHeight;
}

async function api(path, body, raw) {
  const init = { method: body === undefined && raw === undefined ? "GET" : "POST" };
  if (raw !== undefined) init.body = raw;
  else if (body !== undefined) { init.body = JSON.stringify(body); init.headers = { "Content-Type": "application/json" }; }
  const response = await fetch(path, init);
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.message || `HTTP ${response.status}`);
  return answer;
}

const session = (action) => `/api/sessions/${state.sessionId}/${action}`;

async function loadAvatars() {
  const { avatars, default: preferred } = await api("/api/avatars");
  state.avatars = avatars;
  $("avatar").innerHTML = avatars.map((a) => `<option ${a.id === preferred ? "selected" : ""}>${a.id}</option>`).join("");
}

function iceGathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
    setTimeout(resolve, 2000); // host candidates come at once; never wait on a stuck STUN lookup
  });
}

async function connect() {
  const avatarId = $("avatar").value;
  state.mouth = (state.avatars.find((a) => a.id === avatarId) || {}).mouth || null;
  state.mouthScale = state.avatars.find((a) => a.id === avatarId);
  const pc = new RTCPeerConnection();
  state.pc = pc;
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "sendrecv" }); // receives the avatar, sends the microphone once asked
  state.channel = pc.createDataChannel("events");
  state.channel.onmessage = (e) => {
    const event = JSON.parse(e.data);
    state.events.push({ ...event, received: performance.now() });
    log(`${event.type}${event.interrupted ? " (interrupted)" : ""}${event.state ? ` ${event.state}` : ""}${event.emotion ? ` ${event.emotion}` : ""}`);
  };
  const remote = new MediaStream();
  pc.ontrack = (e) => {
    remote.addTrack(e.track);
    video.srcObject = remote;
    if (e.track.kind === "audio") listenToAudio(remote);
  };
  pc.onconnectionstatechange = () => {
    $("badge").textContent = pc.connectionState;
    log(`connection ${pc.connectionState}`);
  };
  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc);
  const answer = await api("/api/offer", { sdp: pc.localDescription.sdp, type: pc.localDescription.type, avatar_id: avatarId });
  state.sessionId = answer.session_id;
  await pc.setRemoteDescription(answer);
  video.requestVideoFrameCallback(onFrame);
  setConnected(true);
  log(`connected to ${avatarId}`);
}

async function disconnect() {
  if (state.pc) state.pc.close();
  state.pc = null;
  state.sessionId = null;
  video.srcObject = null;
  setConnected(false);
  $("badge").textContent = "not connected";
}

function setConnected(on) {
  $("connect").disabled = on;
  $("disconnect").disabled = !on;
  for (const id of ["say", "stop", "send", "mic"]) $(id).disabled = !on;
  for (const b of document.querySelectorAll("#states button, #emotions button")) b.disabled = !on;
}

// --- what the browser receives -----------------------------------------------------------------------------

const canvas = document.createElement("canvas");
const ctx2d = canvas.getContext("2d", { willReadFrequently: true });

function onFrame(now, metadata) {
  if (!state.pc) return;
  const w = metadata.width, h = metadata.height;
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  ctx2d.drawImage(video, 0, 0, w, h);
  const frame = { t: now, mouth: null, hash: 0 };
  const avatar = state.mouthScale;
  if (state.mouth && avatar) {
    const sx = w / avatar.width, sy = h / avatar.height;
    const [x0, y0, x1, y1] = state.mouth;
    const x = Math.round(x0 * sx), y = Math.round(y0 * sy);
    const data = ctx2d.getImageData(x, y, Math.max(1, Math.round((x1 - x0) * sx)), Math.max(1, Math.round((y1 - y0) * sy))).data;
    let sum = 0;
    for (let i = 0; i < data.length; i += 4) sum += (data[i] + data[i + 1] + data[i + 2]) / 3;
    frame.mouth = sum / (data.length / 4);
  }
  const sample = ctx2d.getImageData(0, 0, w, h).data; // a cheap fingerprint: do frames change?
  let hash = 0;
  for (let i = 0; i < sample.length; i += 4099) hash = (hash * 31 + sample[i]) | 0;
  frame.hash = hash;
  state.frames.push(frame);
  if (state.frames.length > 2000) state.frames.splice(0, 1000);
  video.requestVideoFrameCallback(onFrame);
}

function listenToAudio(stream) {
  if (state.analyser) return;
  const ctx = new AudioContext();
  state.audioCtx = ctx;
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 256; // 5.3 ms at 48 kHz
  ctx.createMediaStreamSource(stream).connect(analyser);
  state.analyser = analyser;
  const buffer = new Float32Array(analyser.fftSize);
  let loud = false;
  setInterval(() => {
    analyser.getFloatTimeDomainData(buffer);
    let energy = 0;
    for (const v of buffer) energy += v * v;
    const rms = Math.sqrt(energy / buffer.length);
    if (rms > 0.02 && !loud) state.audioOnsets.push(performance.now());
    loud = rms > 0.01 ? loud || rms > 0.02 : false;
  }, 4);
}

// --- controls ----------------------------------------------------------------------------------------------

$("connect").onclick = () => connect().catch((e) => log(`error: ${e.message}`));
$("disconnect").onclick = disconnect;
$("say").onclick = () => api(session("say"), { text: $("text").value }).catch((e) => log(`error: ${e.message}`));
$("stop").onclick = () => api(session("stop"), {}).catch((e) => log(`error: ${e.message}`));
$("send").onclick = async () => {
  const file = $("file").files[0];
  if (!file) return log("pick an audio file first");
  try {
    const { duration_s } = await api(session("audio"), undefined, file);
    log(`sent ${file.name} (${duration_s} s)`);
  } catch (e) { log(`error: ${e.message}`); }
};

async function micOn() {
  try {
    if (!state.micTrack) {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      state.micTrack = stream.getAudioTracks()[0];
      const sender = state.pc.getTransceivers().find((t) => t.receiver.track.kind === "audio").sender;
      await sender.replaceTrack(state.micTrack);
    }
    $("mic").setAttribute("aria-pressed", "true");
    await api(session("mic"), { on: true });
  } catch (e) { log(`microphone: ${e.message}`); }
}
async function micOff() {
  if ($("mic").getAttribute("aria-pressed") !== "true") return;
  $("mic").setAttribute("aria-pressed", "false");
  await api(session("mic"), { on: false }).catch((e) => log(`error: ${e.message}`));
}
$("mic").onpointerdown = micOn;
$("mic").onpointerup = micOff;
$("mic").onpointerleave = micOff;

for (const button of document.querySelectorAll("#states button")) {
  button.onclick = async () => {
    await api(session("state"), { state: button.dataset.state }).catch((e) => log(`error: ${e.message}`));
    for (const b of document.querySelectorAll("#states button")) b.setAttribute("aria-pressed", String(b === button));
  };
}

for (const button of document.querySelectorAll("#emotions button")) {
  button.onclick = async () => {
    await api(session("emotion"), { emotion: button.dataset.emotion }).catch((e) => log(`error: ${e.message}`));
    for (const b of document.querySelectorAll("#emotions button")) b.setAttribute("aria-pressed", String(b === button));
  };
}

$("build").onclick = async () => {
  const file = $("build-file").files[0], id = $("build-id").value.trim();
  if (!file || !id) return log("give the new avatar an id and pick a photo or a clip");
  const kind = file.type.startsWith("video/") ? "video" : "photo";
  try {
    const { job } = await api(`/api/build?id=${encodeURIComponent(id)}&kind=${kind}`, undefined, file);
    const bar = $("build-progress");
    bar.hidden = false;
    $("build-preview").hidden = true;
    for (;;) {
      const s = await api(`/api/build/${job}`);
      bar.value = s.fraction;
      $("build-status").textContent = s.error || s.message;
      if (s.status === "error") return log(`build failed: ${s.error}`);
      if (s.status === "done") break;
      await new Promise((r) => setTimeout(r, 300));
    }
    $("build-preview").src = `/api/build/${job}/preview.png`;
    $("build-preview").hidden = false;
    await loadAvatars();
    $("avatar").value = id;
    log(`built avatar ${id}: connect to see it`);
  } catch (e) { log(`error: ${e.message}`); }
};

// --- the self-test (?autotest=1) ---------------------------------------------------------------------------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

async function waitFor(probe, ms, what) {
  const end = performance.now() + ms;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function measureUtterance(text, base) {
  const t0 = performance.now();
  const onsets = state.audioOnsets.length;
  await api(session("say"), { text });
  const lip = await waitFor(() => state.frames.find((f) => f.t > t0 && f.mouth !== null && f.mouth < base - 4), 20000, "a lip frame");
  const audio = await waitFor(() => state.audioOnsets.slice(onsets).find((t) => t > t0), 10000, "the audio");
  await waitFor(() => state.events.some((e) => e.type === "playback_finished" && e.received > t0), 30000, "the end");
  return { t0, lip: lip.t, audio };
}

function toneWav(seconds, rate = 16000) {
  const n = Math.round(seconds * rate), view = new DataView(new ArrayBuffer(44 + 2 * n));
  const text = (offset, s) => [...s].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * n, true); text(8, "WAVEfmt "); view.setUint32(16, 16, true);
  view.setUint16(20, 1, true); view.setUint16(22, 1, true); view.setUint32(24, rate, true); view.setUint32(28, 2 * rate, true);
  view.setUint16(32, 2, true); view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, 2 * n, true);
  for (let i = 0; i < n; i++) {
    const t = i / rate, envelope = 0.5 + 0.5 * Math.sin(2 * Math.PI * 4 * t);
    view.setInt16(44 + 2 * i, Math.round(12000 * envelope * Math.sin(2 * Math.PI * 180 * t)), true);
  }
  return new Blob([view.buffer], { type: "audio/wav" });
}

async function autotest() {
  const report = { errors: [], user_agent: navigator.userAgent };
  try {
    await loadAvatars();
    await connect();
    await waitFor(() => state.frames.length >= 10, 30000, "video frames");
    report.first_frame_ms = state.frames[0].t;
    report.first_frame_epoch_ms = performance.timeOrigin + state.frames[0].t;
    report.video_playing = !video.paused && video.readyState >= 2;
    report.video_size = [video.videoWidth, video.videoHeight];
    report.audio_track = state.pc.getReceivers().some((r) => r.track.kind === "audio" && r.track.readyState === "live");
    await sleep(1500);
    const idle = state.frames.slice(-25);
    const base = median(idle.map((f) => f.mouth));
    report.idle_mouth = base;
    report.idle_distinct_frames = new Set(idle.map((f) => f.hash)).size;
    const runs = [];
    const texts = ["Hello there! I am talking to you live.", "Maybe we should meet again on Monday.", "Bob bought a big blue boat."];
    for (const text of texts.slice(0, Number(new URLSearchParams(location.search).get("runs") || 1))) {
      runs.push(await measureUtterance(text, base));
      await sleep(600);
    }
    report.text_to_first_lip_ms = runs.map((r) => r.lip - r.t0);
    report.text_to_first_audio_ms = runs.map((r) => r.audio - r.t0);
    report.av_offset_ms = runs.map((r) => r.lip - r.audio); // > 0: the mouth moved after the sound started
    const t1 = performance.now();
    report.speech_distinct_frames = new Set(state.frames.filter((f) => f.t > runs[0].t0 && f.t < runs[0].t0 + 3000).map((f) => f.hash)).size;
    // Interruption: a long sentence, then Stop once the mouth moves; how long until it is closed again?
    await api(session("say"), { text: "This is a long sentence that will be interrupted before it is over, by the stop button." });
    await waitFor(() => state.frames.find((f) => f.t > t1 && f.mouth < base - 4), 20000, "speech before stop");
    const tStop = performance.now();
    await api(session("stop"), {});
    const closed = await waitFor(() => state.frames.find((f) => f.t > tStop + 1 && Math.abs(f.mouth - base) < 2.5), 5000, "the mouth to close");
    report.stop_to_closed_ms = closed.t - tStop;
    report.mouth_around_stop = state.frames.filter((f) => f.t > tStop - 200 && f.t < tStop + 1500)
      .map((f) => [Math.round(f.t - tStop), Math.round((f.mouth - base) * 10) / 10]);
    report.interrupted_event = state.events.some((e) => e.type === "playback_finished" && e.interrupted);
    // An uploaded file (a WAV made here: a vowel-like tone) and the microphone (Chromium's fake device in tests).
    await sleep(300);
    const tUpload = performance.now();
    await api(session("audio"), undefined, toneWav(1.0));
    await waitFor(() => state.events.some((e) => e.type === "playback_finished" && !e.interrupted && e.received > tUpload), 15000, "the uploaded file to play");
    report.upload_played = true;
    const tMic = performance.now();
    await micOn();
    await sleep(1200);
    await micOff();
    await waitFor(() => state.events.some((e) => e.type === "playback_finished" && e.received > tMic), 15000, "the microphone segment to play");
    report.mic_played = true;
    report.events = state.events.map((e) => e.type);
  } catch (e) {
    report.errors.push(String(e && e.message || e));
  }
  report.frames_received = state.frames.length;
  await api("/api/report", report);
  log(`self-test: ${JSON.stringify(report)}`);
}

loadAvatars().then(() => {
  if (new URLSearchParams(location.search).get("autotest")) autotest();
}).catch((e) => log(`error: ${e.message}`));
