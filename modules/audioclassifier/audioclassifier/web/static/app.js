// Auscult live page: server-sent events from /api/events, drawn on canvases. No external resources.
"use strict";

const SPEC_COLUMNS = 640;     // spectrogram columns shown (about 20 s at 16 kHz / 512)
const CHART_SECONDS = 300;    // score history shown
const $ = (id) => document.getElementById(id);

const view = {
  columns: [],        // Uint8Array per column (n_mels bytes, lowest band first)
  nMels: 0,
  frameSeconds: 0,
  columnsSeen: 0,
  windows: [],        // {seq,time,offset,level_dbfs,score,label,threshold,state}
  alerts: [],
  status: null,
  lastWindowAt: 0,
};

// -- colour map: a viridis-like ramp, 256 entries ------------------------------------------------
const LUT = (() => {
  const stops = [[0, [13, 8, 40]], [0.25, [59, 28, 140]], [0.5, [33, 145, 140]], [0.75, [94, 201, 98]], [1, [253, 231, 37]]];
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = i / 255;
    let k = 0;
    while (k < stops.length - 2 && t > stops[k + 1][0]) k++;
    const [t0, c0] = stops[k], [t1, c1] = stops[k + 1];
    const f = (t - t0) / (t1 - t0);
    for (let j = 0; j < 3; j++) lut[i * 3 + j] = c0[j] + (c1[j] - c0[j]) * f;
  }
  return lut;
})();

function fmtNum(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return "—";
  return Number(x).toPrecision(digits + 1).replace(/\.?0+$/, "");
}
function epoch(t) { return typeof t === "number" ? t : Date.parse(t) / 1000; }  // alerts carry ISO times
function fmtTime(t) { return new Date(epoch(t) * 1000).toLocaleTimeString(); }
function fmtDuration(s) {
  if (s === null || s === undefined) return "—";
  s = Math.round(s);
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60, sec = s % 60;
  return (d ? d + " d " : "") + (d || h ? h + " h " : "") + (d || h || m ? m + " min " : "") + (d ? "" : sec + " s");
}
function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  if (text !== undefined) e.textContent = text;
  return e;
}

// -- spectrogram -------------------------------------------------------------------------------------
function addSpectrogram(spec) {
  if (!spec || !spec.columns) return;
  const bytes = Uint8Array.from(atob(spec.columns), (c) => c.charCodeAt(0));
  if (spec.n_mels !== view.nMels) { view.columns = []; view.nMels = spec.n_mels; }
  view.frameSeconds = spec.frame_seconds;
  for (let i = 0; i + view.nMels <= bytes.length; i += view.nMels) view.columns.push(bytes.subarray(i, i + view.nMels));
  view.columnsSeen += Math.floor(bytes.length / Math.max(1, view.nMels));
  if (view.columns.length > SPEC_COLUMNS) view.columns.splice(0, view.columns.length - SPEC_COLUMNS);
  drawSpectrogram();
}

function levels() {
  // contrast from the columns shown: 2nd and 99.7th percentiles
  const hist = new Uint32Array(256);
  let n = 0;
  for (const col of view.columns) for (let i = 0; i < col.length; i += 2) { hist[col[i]]++; n++; }
  let lo = 0, hi = 255, acc = 0;
  for (let v = 0; v < 256; v++) { acc += hist[v]; if (acc >= n * 0.02) { lo = v; break; } }
  acc = 0;
  for (let v = 255; v >= 0; v--) { acc += hist[v]; if (acc >= n * 0.003) { hi = v; break; } }
  return [lo, Math.max(hi, lo + 8)];
}

function drawSpectrogram() {
  const canvas = $("spec");
  const n = view.nMels;
  if (!n) return;
  if (canvas.width !== SPEC_COLUMNS || canvas.height !== n) { canvas.width = SPEC_COLUMNS; canvas.height = n; }
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(SPEC_COLUMNS, n);
  const [lo, hi] = levels();
  const scale = 255 / (hi - lo);
  const x0 = SPEC_COLUMNS - view.columns.length;
  for (let c = 0; c < view.columns.length; c++) {
    const col = view.columns[c];
    for (let m = 0; m < n; m++) {
      const v = Math.max(0, Math.min(255, Math.round((col[m] - lo) * scale)));
      const p = ((n - 1 - m) * SPEC_COLUMNS + x0 + c) * 4;  // low bands at the bottom
      img.data[p] = LUT[v * 3]; img.data[p + 1] = LUT[v * 3 + 1]; img.data[p + 2] = LUT[v * 3 + 2]; img.data[p + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
  canvas.dataset.columns = String(view.columnsSeen);
  const span = view.columns.length * view.frameSeconds;
  $("spec-span").textContent = "−" + span.toFixed(0) + " s";
  $("spec-note").textContent = n + " mel bands";
}

// -- score chart ---------------------------------------------------------------------------------------
function sizeCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = Math.max(100, Math.round(canvas.clientWidth * ratio)), h = Math.max(60, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  return ratio;
}

function plotSeries(canvas, points, { xMin, xMax, alerts = [], xLabel }) {
  // points: [{x, score|null, threshold}], drawn with the threshold line, over-threshold points in red
  const ratio = sizeCanvas(canvas);
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, pad = 6 * ratio, left = 44 * ratio, bottom = 16 * ratio;
  ctx.clearRect(0, 0, W, H);
  const vals = [];
  for (const p of points) { if (p.score !== null) vals.push(p.score); vals.push(p.threshold); }
  if (!vals.length) return;
  let yMin = Math.min(...vals), yMax = Math.max(...vals);
  const margin = (yMax - yMin) * 0.1 || Math.abs(yMax) * 0.05 || 1;
  yMin -= margin; yMax += margin;
  const X = (x) => left + (x - xMin) / Math.max(1e-9, xMax - xMin) * (W - left - pad);
  const Y = (y) => pad + (yMax - y) / (yMax - yMin) * (H - pad - bottom);
  ctx.font = `${11 * ratio}px system-ui, sans-serif`;
  ctx.fillStyle = "#8b98a5"; ctx.strokeStyle = "#2b3641"; ctx.lineWidth = 1;
  for (let i = 0; i <= 3; i++) {
    const y = yMin + (yMax - yMin) * i / 3;
    ctx.beginPath(); ctx.moveTo(left, Y(y)); ctx.lineTo(W - pad, Y(y)); ctx.stroke();
    ctx.fillText(fmtNum(y, 2), 2 * ratio, Y(y) + 4 * ratio);
  }
  if (xLabel) { ctx.fillText(xLabel(xMin), left, H - 3 * ratio); const t = xLabel(xMax); ctx.fillText(t, W - pad - ctx.measureText(t).width, H - 3 * ratio); }
  // threshold (a step line: it can change live)
  ctx.strokeStyle = "#ff9f43"; ctx.setLineDash([6 * ratio, 4 * ratio]); ctx.lineWidth = 1.5 * ratio;
  ctx.beginPath();
  points.forEach((p, i) => { const x = X(p.x), y = Y(p.threshold); if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y); });
  ctx.stroke(); ctx.setLineDash([]);
  // score (gaps where silent)
  ctx.strokeStyle = "#4cc2ff"; ctx.lineWidth = 1.5 * ratio; ctx.beginPath();
  let pen = false;
  for (const p of points) {
    if (p.score === null) { pen = false; continue; }
    if (pen) ctx.lineTo(X(p.x), Y(p.score)); else ctx.moveTo(X(p.x), Y(p.score));
    pen = true;
  }
  ctx.stroke();
  ctx.fillStyle = "#ff6b6b";
  for (const p of points) if (p.score !== null && p.score > p.threshold) ctx.fillRect(X(p.x) - 1.5 * ratio, Y(p.score) - 1.5 * ratio, 3 * ratio, 3 * ratio);
  for (const a of alerts) {
    if (a.x < xMin || a.x > xMax) continue;
    const x = X(a.x);
    ctx.beginPath(); ctx.moveTo(x, pad); ctx.lineTo(x - 5 * ratio, pad + 9 * ratio); ctx.lineTo(x + 5 * ratio, pad + 9 * ratio); ctx.closePath(); ctx.fill();
    ctx.globalAlpha = 0.35; ctx.fillRect(x - 0.5 * ratio, pad, ratio, H - pad - bottom); ctx.globalAlpha = 1;
  }
}

function drawChart() {
  const canvas = $("chart");
  const now = view.windows.length ? view.windows[view.windows.length - 1].time : Date.now() / 1000;
  const shown = view.windows.filter((w) => w.time >= now - CHART_SECONDS);
  const points = shown.map((w) => ({ x: w.time, score: w.score, threshold: w.threshold }));
  const alerts = view.alerts.map((a) => ({ x: epoch(a.window_end || a.window_start) }));
  const xMin = points.length ? Math.min(points[0].x, now - 10) : now - CHART_SECONDS;  // the span heard so far, up to CHART_SECONDS
  plotSeries(canvas, points, { xMin, xMax: now, alerts, xLabel: (x) => (x === now ? "now" : "−" + Math.round(now - x) + " s") });
  canvas.dataset.points = String(view.windows.length);
}

// -- facts, alerts, status -------------------------------------------------------------------------------
function addWindows(list) {
  if (!list || !list.length) return;
  view.windows.push(...list);
  const last = list[list.length - 1];
  view.lastWindowAt = Date.now();
  const cut = last.time - CHART_SECONDS - 5;
  while (view.windows.length && view.windows[0].time < cut) view.windows.shift();
  const score = $("last-score");
  score.textContent = last.score === null ? "silent" : fmtNum(last.score);
  score.classList.toggle("over", last.score !== null && last.score > last.threshold);
  $("threshold").textContent = fmtNum(last.threshold);
  $("level").textContent = last.level_dbfs.toFixed(1) + " dBFS";
  renderState();
  drawChart();
}

function displayState() {
  const s = view.status;
  if (!s) return "connecting";
  if (s.learning && s.learning.state === "learning") return "learning";
  if (s.calibration && s.calibration.state === "running") return "calibrating";
  const last = view.windows[view.windows.length - 1];
  if (s.state !== "no-audio" && last && Date.now() - view.lastWindowAt < 5000) return last.state;
  return s.state || "unknown";
}

function renderState() {
  const badge = $("state");
  const st = displayState();
  badge.textContent = st;
  badge.dataset.state = st;
}

function renderAlerts(alerts) {
  view.alerts = alerts || [];
  const list = $("alerts");
  list.replaceChildren();
  if (!view.alerts.length) { list.append(el("li", { class: "muted" }, "No alert since the module started.")); return; }
  for (const a of view.alerts) {
    const li = el("li", { "data-seq": String(a.seq) });
    li.append(el("span", { class: "when" }, fmtTime(a.window_start) + " · " + (a.label || "alert")));
    li.append(el("span", { class: "meta" }, "score " + fmtNum(a.score) + " / " + fmtNum(a.threshold) + " · at " + Number(a.audio_offset_seconds).toFixed(1) + " s · #" + a.seq));
    if (a.clip_url) {
      const audio = el("audio", { controls: "", preload: "none", src: a.clip_url, "data-clip": a.clip });
      li.append(audio);
    } else {
      li.append(el("span", { class: "meta" }, "no clip"));
    }
    list.append(li);
  }
  drawChart();
}

function row(tbody, k, v) {
  const tr = el("tr");
  tr.append(el("td", {}, k), el("td", {}, v === null || v === undefined || v === "" ? "—" : String(v)));
  tbody.append(tr);
}

function flatten(obj, prefix = "", out = []) {
  for (const [k, v] of Object.entries(obj || {})) {
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, prefix + k + ".", out);
    else out.push([prefix + k, v]);
  }
  return out;
}

function renderHealth(s) {
  const box = $("health");
  const h = s.health;
  if (!h || typeof h !== "object") {
    box.replaceChildren(el("p", { class: "muted" }, "No health index in this module's status."));
  } else {
    const idx = typeof h.index === "number" ? h.index : null;
    const parts = [el("div", { class: "health-index", id: "health-index" }, idx === null ? "—" : fmtNum(idx, 2))];
    if (idx !== null && idx >= 0 && idx <= 1) {
      const bar = el("div", { class: "bar" }); const fill = el("span"); fill.style.width = (idx * 100).toFixed(0) + "%"; bar.append(fill); parts.push(bar);
    }
    parts.push(el("p", {}, "state " + (h.state || "—") + (typeof h.trend_per_day === "number" ? " · trend " + (h.trend_per_day >= 0 ? "+" : "") + fmtNum(h.trend_per_day, 2) + " / day" : "")));
    box.replaceChildren(...parts);
  }
  const lines = [];
  if (s.learning && s.learning.state && s.learning.state !== "off") lines.push("on-site learning: " + s.learning.state + (s.learning.state === "learning" ? " (" + Math.round(s.learning.seconds || 0) + " / " + Math.round(s.learning.total || 0) + " s)" : ""));
  if (s.calibration && s.calibration.state && s.calibration.state !== "idle") lines.push("site calibration: " + s.calibration.state);
  $("learning").replaceChildren(...lines.map((t) => el("p", { class: "muted" }, t)));
}

function renderStatus(s) {
  view.status = s;
  const settings = s.settings || {};
  $("machine").textContent = settings.machine || "";
  document.title = "Auscult: " + (settings.machine || "live");
  const c = s.counters || {};
  $("windows").textContent = (c.windows ?? "—") + (c.silent ? " (" + c.silent + " silent)" : "");
  $("alert-count").textContent = c.alerts ?? "—";
  $("audio").textContent = fmtDuration(s.audio_seconds);
  $("uptime").textContent = fmtDuration(s.uptime_seconds);
  $("rss").textContent = s.peak_rss_mb ? s.peak_rss_mb + " MB" : "—";
  if (!view.windows.length) { $("threshold").textContent = fmtNum(s.threshold); }
  const err = $("last-error");
  err.hidden = !s.last_error; err.textContent = s.last_error ? "last error: " + s.last_error : "";
  const st = $("settings").tBodies[0]; st.replaceChildren();
  for (const [k, v] of flatten(settings)) row(st, k, v);
  const m = s.model || {}, mt = $("model").tBodies[0]; mt.replaceChildren();
  row(mt, "model", (m.version || "") + " (" + (m.kind || "") + ")");
  row(mt, "window", m.window_seconds ? m.window_seconds + " s, hop " + fmtNum(s.hop_seconds) + " s" : null);
  row(mt, "threshold", fmtNum(s.threshold) + (settings.threshold !== null && settings.threshold !== undefined ? " (setting)" : " (card or learned)"));
  row(mt, "runs on", [s.backend, s.device, s.precision].filter(Boolean).join(" · "));
  row(mt, "source", s.source);
  if (s.hub) row(mt, "IoT Hub", s.hub.connected ? "connected" : "not connected" + (s.hub.last_error ? ": " + s.hub.last_error : ""));
  if (s.outbox) row(mt, "outbox", Object.entries(s.outbox.pending || {}).map(([k, v]) => k + " " + v).join(", ") + " waiting");
  if (s.uploads) row(mt, "clip uploads", (s.uploads.uploaded ?? 0) + " uploaded, " + (s.uploads.pending ?? 0) + " waiting" + (s.uploads.paused ? " (" + s.uploads.paused + ")" : ""));
  $("version").textContent = "Auscult " + (s.version || "");
  renderHealth(s);
  renderState();
}

// -- the live connection ----------------------------------------------------------------------------------
function connect() {
  const conn = $("conn");
  const es = new EventSource("/api/events");
  es.addEventListener("hello", (e) => {
    const d = JSON.parse(e.data);
    view.columns = []; view.windows = []; view.columnsSeen = 0;
    renderStatus(d.status);
    addSpectrogram(d.spectrogram);
    addWindows(d.windows);
    renderAlerts(d.alerts);
    conn.className = "conn on";
  });
  es.addEventListener("windows", (e) => { const d = JSON.parse(e.data); addSpectrogram(d.spectrogram); addWindows(d.windows); });
  es.addEventListener("alerts", (e) => renderAlerts(JSON.parse(e.data).alerts));
  es.addEventListener("status", (e) => renderStatus(JSON.parse(e.data)));
  es.onerror = () => {
    conn.className = "conn off";
    if (es.readyState === EventSource.CLOSED) {  // refused (e.g. 401 after the token changed): log in again
      setTimeout(() => fetch("/api/status").then((r) => (r.status === 401 ? location.reload() : connect())), 3000);
    }
  };
  es.onopen = () => { conn.className = "conn on"; };
}

// -- try a recording -----------------------------------------------------------------------------------------
async function scoreFile(ev) {
  ev.preventDefault();
  const file = $("score-file").files[0];
  if (!file) return;
  const hop = $("score-hop").value;
  const out = $("score-result"), verdict = $("score-verdict");
  out.hidden = false; verdict.className = "muted"; verdict.textContent = "scoring " + file.name + " …";
  const q = new URLSearchParams({ name: file.name });
  if (hop) q.set("hop_seconds", hop);
  try {
    const r = await fetch("/api/score?" + q, { method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" } });
    const d = await r.json();
    if (!r.ok) { verdict.className = "bad"; verdict.textContent = r.status + ": " + d.error; return; }
    const alerts = d.decision.alerts.length;
    verdict.className = d.label === "anomaly" || alerts ? "bad" : "good";
    verdict.textContent = `${d.label} · mean ${fmtNum(d.score)}, max ${fmtNum(d.max_score)} vs threshold ${fmtNum(d.threshold)} · ` +
      `${d.windows} windows (${d.silent} silent), ${d.decision.windows_over_threshold} over · ` +
      (alerts ? `the module would alert ${alerts}× (first at ${d.decision.alerts[0].start_seconds} s)` : "the module would not alert");
    const pts = d.per_window.map((w) => ({ x: w.end_seconds, score: w.score, threshold: d.threshold }));
    const xMax = pts.length ? pts[pts.length - 1].x : 1;
    plotSeries($("score-chart"), pts, { xMin: 0, xMax, alerts: d.decision.alerts.map((a) => ({ x: a.end_seconds })), xLabel: (x) => x.toFixed(0) + " s" });
  } catch (e) {
    verdict.className = "bad"; verdict.textContent = "failed: " + e;
  }
}

window.addEventListener("resize", () => drawChart());
document.addEventListener("DOMContentLoaded", () => {
  $("score-form").addEventListener("submit", scoreFile);
  connect();
});
