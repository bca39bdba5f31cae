// midigen studio: the page. Plain JavaScript and WebAudio, nothing fetched from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token");
const state = { models: [], model: null, results: [], busy: false };

// -- talking to the server ---------------------------------------------------------------------

async function api(path, request, files) {
  const headers = token ? { "X-Studio-Token": token } : {};
  let body;
  if (files && Object.keys(files).length) {
    body = new FormData();
    body.append("request", JSON.stringify(request));
    for (const [field, file] of Object.entries(files)) body.append(field, file.blob, file.name);
  } else if (request) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(request);
  }
  const response = await fetch(path, { method: request ? "POST" : "GET", headers, body });
  const data = await response.json().catch(() => ({ error: `the studio answered ${response.status} without JSON` }));
  if (!response.ok) throw new Error(data.error || `error ${response.status}`);
  return data;
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

function showWarning(message) {
  $("warning").textContent = message ? `warning: ${message}` : "";
  $("warning").hidden = !message;
}

// one call at a time from this page; a bar and the seconds so far while it runs
async function busy(label, work) {
  if (state.busy) return;
  state.busy = true;
  showError("");
  showWarning("");
  document.querySelectorAll("section button").forEach((b) => (b.disabled = true));
  const started = performance.now();
  const tick = () => ($("progress-text").textContent = `${label} ... ${((performance.now() - started) / 1000).toFixed(1)} s`);
  tick();
  $("progress").hidden = false;
  const timer = setInterval(tick, 100);
  try {
    await work();
  } catch (err) {
    showError(err.message);
  } finally {
    clearInterval(timer);
    $("progress").hidden = true;
    document.querySelectorAll("section button").forEach((b) => (b.disabled = false));
    state.busy = false;
    document.body.dataset.idle = "true";
  }
}

// -- models ------------------------------------------------------------------------------------

// the compose controls start at the generate params' defaults
const DEFAULTED = ["temperature", "top_k", "top_p", "seed", "tempo", "max_voices", "max_note_beats", "min_beats"];

async function loadModels() {
  const defaults = await api("/api/defaults");
  for (const key of DEFAULTED) $(`c-${key}`).value = defaults[key];
  $("c-constrained").checked = defaults.constrained;
  const models = await api("/api/models");
  state.models = models;
  const select = $("model");
  select.innerHTML = "";
  for (const m of models) {
    const option = document.createElement("option");
    option.value = m.id;
    option.textContent = `${m.id} (${m.family}, ${m.representation}${m.source === "workspace" ? "" : ", " + m.source})`;
    select.appendChild(option);
  }
  if (!models.length) showError("No checkpoints found: train one first (dvc repro train), or start the studio with --models DIR.");
  chooseModel();
}

function chooseModel() {
  const m = state.models.find((x) => x.id === $("model").value) || null;
  state.model = m;
  $("compose").hidden = !m || m.has_latent;
  $("drums").hidden = !m || !m.has_latent;
  if (!m) return;
  const loss = m.val_loss == null ? "" : `, val loss ${m.val_loss}`;
  $("model-info").textContent = `${m.label}: data ${m.data || m.data_fingerprint || "?"}, ${m.epochs} epochs${loss}`;
  document.querySelectorAll(".groove-only").forEach((el) => (el.hidden = !m.groove));
  document.querySelectorAll(".voices-only").forEach((el) => (el.hidden = m.representation !== "voices"));
  const box = $("attributes");
  box.innerHTML = "";
  for (const name of m.attributes || []) {
    const label = document.createElement("label");
    label.innerHTML = `${name} <span>0</span>`;
    const slider = document.createElement("input");
    Object.assign(slider, { type: "range", min: -3, max: 3, step: 0.25, value: 0 });
    slider.dataset.attribute = name;
    slider.addEventListener("input", () => (label.querySelector("span").textContent = slider.value));
    label.appendChild(slider);
    box.appendChild(label);
  }
  document.body.dataset.model = m.id;
}

// -- reading the controls ----------------------------------------------------------------------

function num(id) {
  const value = $(id).value.trim();
  return value === "" ? undefined : Number(value);
}

function pieceFile(result, step) {
  const bytes = Uint8Array.from(atob(result.pieces[step ?? result.step].midi), (c) => c.charCodeAt(0));
  return { blob: new Blob([bytes], { type: "audio/midi" }), name: result.pieces[step ?? result.step].name };
}

// a pattern: an uploaded file, else the result picked in the list beside it
function pattern(fileId, pickId) {
  const file = $(fileId).files[0];
  if (file) return { blob: file, name: file.name };
  const pick = $(pickId).value;
  if (pick === "") return null;
  return pieceFile(state.results[Number(pick)]);
}

function refreshPicks() {
  for (const id of ["i-a-pick", "i-b-pick", "h-pick"]) {
    const select = $(id);
    const before = select.value;
    select.innerHTML = '<option value="">(upload a file)</option>';
    state.results.forEach((r, i) => {
      if (!r.drums) return;
      const option = document.createElement("option");
      option.value = String(i);
      option.textContent = r.title;
      select.appendChild(option);
    });
    select.value = before;
  }
}

// -- the calls ---------------------------------------------------------------------------------

// an interpolation is one card with a slider over its steps; anything else one card per piece
function addResult(title, data, model, together = false) {
  const result = { title, pieces: data.pieces, step: 0, drums: model.has_latent };
  if (together) {
    state.results.push(result);
    renderResult(result, state.results.length - 1);
  } else {
    // newest results on top, each batch in its own order
    [...data.pieces].reverse().forEach((p) => {
      const one = { ...result, title: `${title} ${p.name}`, pieces: [p] };
      state.results.push(one);
      renderResult(one, state.results.length - 1);
    });
  }
  if (data.warning) showWarning(data.warning);
  $("empty").hidden = true;
  refreshPicks();
}

function sample() {
  const m = state.model;
  const request = { model: m.id, format: "json", num_files: num("c-num"), temperature: num("c-temperature"), top_k: num("c-top_k"),
    top_p: num("c-top_p"), max_steps: num("c-max_steps"), seed: num("c-seed"), tempo: num("c-tempo"),
    constrained: $("c-constrained").checked, max_voices: num("c-max_voices"), max_note_beats: num("c-max_note_beats"),
    min_beats: num("c-min_beats") };
  const primer = $("c-primer").files[0];
  const files = primer ? { primer: { blob: primer, name: primer.name } } : {};
  return busy(`sampling ${request.num_files} on ${m.id}`, async () => {
    addResult(primer ? "continuation" : "sample", await api("/api/sample", request, files), m);
  });
}

// voices models: the melody stays the soprano, the model writes the voices below it
function harmonize() {
  const m = state.model;
  const melody = $("h-melody").files[0];
  if (!melody) return showError("Harmonize: choose a MIDI file with the melody first.");
  const request = { model: m.id, format: "json", num_files: num("c-num"), voices: num("h-voices"),
    temperature: num("c-temperature"), top_k: num("c-top_k"), top_p: num("c-top_p"), seed: num("c-seed"), tempo: num("c-tempo") };
  if ($("h-track").value) request.track = $("h-track").value;
  return busy(`harmonizing ${melody.name} on ${m.id}`, async () => {
    addResult(`harmonization of ${melody.name}`, await api("/api/harmonize", request, { melody: { blob: melody, name: melody.name } }), m);
  });
}

function sampleGrooves() {
  const m = state.model;
  const attributes = {};
  document.querySelectorAll("#attributes input").forEach((s) => {
    if (Number(s.value) !== 0) attributes[s.dataset.attribute] = Number(s.value);
  });
  const request = { model: m.id, format: "json", num_files: num("d-num"), temperature: num("d-temperature"), seed: num("d-seed") };
  if (Object.keys(attributes).length) request.attributes = attributes;
  return busy(`sampling ${request.num_files} grooves on ${m.id}`, async () => {
    addResult("groove", await api("/api/sample", request), m);
  });
}

function interpolate() {
  const m = state.model;
  const a = pattern("i-a", "i-a-pick");
  const b = pattern("i-b", "i-b-pick");
  if (!a || !b) return showError("Interpolate: upload or pick two patterns, A and B.");
  const request = { model: m.id, format: "json", steps: num("i-steps"), temperature: num("i-temperature"), seed: num("d-seed") };
  return busy(`interpolating on ${m.id}`, async () => {
    addResult(`interpolation ${a.name} to ${b.name}`, await api("/api/interpolate", request, { a, b }), m, true);
  });
}

function fileTask(task) {
  const m = state.model;
  const midi = pattern("h-midi", "h-pick");
  if (!midi) return showError(`${task}: upload or pick a pattern.`);
  return busy(`${task} on ${m.id}`, async () => {
    addResult(`${task} ${midi.name}`, await api(`/api/${task}`, { model: m.id, format: "json" }, { midi }), m);
  });
}

// -- results: piano roll, player, download -----------------------------------------------------

function drawRoll(canvas, piece, playhead) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth * ratio, h = canvas.clientHeight * ratio;
  if (canvas.width !== w || canvas.height !== h) Object.assign(canvas, { width: w, height: h });
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, w, h);
  const notes = piece.notes;
  const end = Math.max(piece.duration_s, 0.001);
  let lo = 127, hi = 0;
  for (const n of notes) { lo = Math.min(lo, n[2]); hi = Math.max(hi, n[2]); }
  if (lo > hi) { lo = 60; hi = 72; }
  lo -= 1; hi += 1;
  const rowH = h / (hi - lo + 1);
  g.fillStyle = "#eef1f6";
  for (let p = lo; p <= hi; p++) if ([1, 3, 6, 8, 10].includes(p % 12)) g.fillRect(0, h - (p - lo + 1) * rowH, w, rowH);
  for (const [s, e, p, v, drum] of notes) {
    const shade = Math.round(200 - v * 1.3);
    g.fillStyle = drum ? `rgb(${shade + 40},${Math.round(shade / 2)},40)` : `rgb(40,${Math.round(shade / 1.5)},${shade + 40})`;
    const x = (s / end) * w;
    // a drum hit as a short block with a gap after it, so hits on neighbouring steps stay apart
    const width = drum ? Math.max(2 * ratio, 0.7 * ((e - s) / end) * w) : Math.max(2 * ratio, ((e - s) / end) * w);
    g.fillRect(x, h - (p - lo + 1) * rowH, width, Math.max(1, rowH - 0.5));
  }
  if (playhead != null) {
    g.fillStyle = "#e0433a";
    g.fillRect((playhead / end) * w, 0, 2 * ratio, h);
  }
}

function renderResult(result, index) {
  const card = document.createElement("div");
  card.className = "result";
  card.dataset.index = String(index);
  card.innerHTML = `<div class="title"><span class="name"></span><span class="muted meta"></span></div><canvas></canvas>
    <div class="actions"><button type="button" class="play">Play</button><a class="download" download>Download MIDI</a></div>`;
  card.querySelector(".name").textContent = result.title;
  const canvas = card.querySelector("canvas");
  const actions = card.querySelector(".actions");
  const update = () => {
    const piece = result.pieces[result.step];
    card.querySelector(".meta").textContent = `${piece.notes.length} notes, ${piece.duration_s.toFixed(1)} s`;
    const link = card.querySelector(".download");
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(pieceFile(result).blob);
    link.download = piece.name;
    drawRoll(canvas, piece, null);
  };
  if (result.pieces.length > 1) {
    const slider = document.createElement("input");
    Object.assign(slider, { type: "range", min: 0, max: result.pieces.length - 1, step: 1, value: 0, className: "step" });
    const label = document.createElement("span");
    label.className = "step-label";
    label.textContent = `step 1 of ${result.pieces.length}`;
    slider.addEventListener("input", () => {
      result.step = Number(slider.value);
      label.textContent = `step ${result.step + 1} of ${result.pieces.length}`;
      card.dataset.step = String(result.step);
      update();
    });
    actions.prepend(slider, label);
  }
  card.querySelector(".play").addEventListener("click", () => player.toggle(result, card, canvas));
  $("results").prepend(card);
  update();
}

// -- the synthesizer: WebAudio oscillators and noise, no samples --------------------------------

const player = {
  ctx: null,
  current: null,
  noise: null,
  toggle(result, card, canvas) {
    const same = this.current && this.current.card === card;
    this.stop();
    if (!same) this.start(result, card, canvas);
  },
  start(result, card, canvas) {
    if (!this.ctx) this.ctx = new (window.AudioContext || window.webkitAudioContext)();
    this.ctx.resume();
    const out = this.ctx.createGain();
    out.gain.value = 0.25;
    out.connect(this.ctx.destination);
    const run = { result, card, canvas, out, loops: 0 };
    this.current = run;
    card.querySelector(".play").textContent = "Stop";
    card.dataset.playing = "true";
    this.schedule(run, this.ctx.currentTime + 0.05);
    const frame = () => {
      if (this.current !== run) return;
      const t = this.ctx.currentTime - run.t0;
      if (t >= run.length) {
        if (result.drums && $("loop").checked) this.schedule(run, run.t0 + run.length);
        else return this.stop();
      }
      drawRoll(canvas, result.pieces[run.step], Math.max(0, this.ctx.currentTime - run.t0) * run.rate);
      card.dataset.position = (this.ctx.currentTime - run.t0).toFixed(2);
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  },
  // one pass of the piece (the interpolation's current step) from time t0
  schedule(run, t0) {
    const piece = run.result.pieces[run.result.step];
    const loopTempo = Number($("loop-tempo").value);
    run.rate = run.result.drums && piece.tempo && loopTempo > 0 ? loopTempo / piece.tempo : 1;
    run.step = run.result.step;
    run.t0 = t0;
    run.length = Math.max(piece.duration_s, 0.25) / run.rate;
    run.loops += 1;
    run.card.dataset.loops = String(run.loops);
    for (const [s, e, p, v, drum] of piece.notes) {
      const start = t0 + s / run.rate, end = t0 + e / run.rate;
      if (drum) this.drum(run.out, start, p, v / 127);
      else this.tone(run.out, start, Math.max(end, start + 0.05), p, v / 127);
    }
  },
  tone(out, start, end, pitch, level) {
    const ctx = this.ctx, osc = ctx.createOscillator(), env = ctx.createGain();
    osc.type = "triangle";
    osc.frequency.value = 440 * Math.pow(2, (pitch - 69) / 12);
    env.gain.setValueAtTime(0, start);
    env.gain.linearRampToValueAtTime(0.5 * level, start + 0.01);
    env.gain.exponentialRampToValueAtTime(0.2 * level + 0.001, Math.max(start + 0.02, end));
    env.gain.linearRampToValueAtTime(0, end + 0.08);
    osc.connect(env).connect(out);
    osc.start(start);
    osc.stop(end + 0.1);
  },
  drum(out, start, pitch, level) {
    const ctx = this.ctx;
    const env = ctx.createGain();
    env.connect(out);
    if (pitch === 35 || pitch === 36 || (pitch >= 41 && pitch <= 50 && ![42, 44, 46, 49].includes(pitch))) {
      // kick and toms: a falling sine
      const osc = ctx.createOscillator();
      const base = pitch <= 36 ? 55 : 80 + (pitch - 41) * 12;
      osc.frequency.setValueAtTime(base * 2.5, start);
      osc.frequency.exponentialRampToValueAtTime(base, start + 0.08);
      env.gain.setValueAtTime(level, start);
      env.gain.exponentialRampToValueAtTime(0.001, start + 0.3);
      osc.connect(env);
      osc.start(start);
      osc.stop(start + 0.32);
      return;
    }
    // snare, hi-hats, cymbals: filtered noise, longer for open hats and cymbals
    if (!this.noise) {
      this.noise = ctx.createBuffer(1, ctx.sampleRate, ctx.sampleRate);
      const data = this.noise.getChannelData(0);
      for (let i = 0; i < data.length; i++) data[i] = Math.random() * 2 - 1;
    }
    const src = ctx.createBufferSource();
    src.buffer = this.noise;
    const filter = ctx.createBiquadFilter();
    const snare = pitch === 37 || pitch === 38 || pitch === 39 || pitch === 40;
    filter.type = snare ? "bandpass" : "highpass";
    filter.frequency.value = snare ? 1800 : 7000;
    const decay = snare ? 0.18 : [46, 49, 51, 52, 53, 55, 57, 59].includes(pitch) ? 0.6 : 0.06;
    env.gain.setValueAtTime(level * (snare ? 0.9 : 0.5), start);
    env.gain.exponentialRampToValueAtTime(0.001, start + decay);
    src.connect(filter).connect(env);
    src.start(start);
    src.stop(start + decay + 0.02);
  },
  stop() {
    const run = this.current;
    if (!run) return;
    this.current = null;
    run.out.disconnect();
    run.card.querySelector(".play").textContent = "Play";
    run.card.dataset.playing = "false";
    drawRoll(run.canvas, run.result.pieces[run.result.step], null);
  },
};

// -- wiring --------------------------------------------------------------------------------------

$("model").addEventListener("change", chooseModel);
$("sample").addEventListener("click", sample);
$("sample-grooves").addEventListener("click", sampleGrooves);
$("harmonize").addEventListener("click", harmonize);
$("interpolate").addEventListener("click", interpolate);
$("humanize").addEventListener("click", () => fileTask("humanize"));
$("tap2drum").addEventListener("click", () => fileTask("tap2drum"));
loadModels().then(() => (document.body.dataset.ready = "true"), (err) => showError(err.message));
