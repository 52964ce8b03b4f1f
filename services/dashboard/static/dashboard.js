// Flare+ live dashboard: holds the view the service streams (/events: a snapshot, then deltas) and draws
// it as SVG. No libraries: the page must work without internet access.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const HISTORY_LIMIT = 200;
const SCORES = [["brier", "Brier", 0, 1], ["precision", "precision", 0, 1], ["recall", "recall", 0, 1], ["tss", "TSS", -1, 1]];
const FLUX_DECADES = [-9, -3];  // log10 W/m² shown
const CLASS_LEVELS = [["A", -8], ["B", -7], ["C", -6], ["M", -5], ["X", -4]];
const LABELLED_CLASSES = ["C", "M", "X"];
const FLARE_COLOURS = { A: "#7d8792", B: "#7d8792", C: "#e8d36a", M: "#f0a030", X: "#ff4d6d" };
const SERIES_COLOURS = ["#f0a030", "#5ab0f0", "#4cc38a", "#c58af0", "#f07a8a", "#d8dee6", "#9fd356"];

const state = {
  header: { counts: {} }, flux: new Map(), flares: new Map(), forecasts: {}, metrics: new Map(), history: new Map(),
  seriesLimit: 1000,
};

// ---- applying what the service sends -------------------------------------------------------------------

function applyUpdate(update) {
  if (update.reset) {
    state.flux.clear(); state.flares.clear(); state.metrics.clear(); state.history.clear(); state.forecasts = {};
    state.seriesLimit = update.series_limit || state.seriesLimit;
  }
  state.header = {
    champion: update.champion, latestFluxMs: update.latest_flux_ms, windowStartMs: update.window_start_ms,
    bucketMs: update.flux_bucket_ms, counts: update.counts || {},
  };
  for (const row of update.flux || []) {
    const [satellite, t, xrsa, xrsb, era] = row;
    state.flux.set(`${satellite}|${t}`, { satellite, t, xrsa, xrsb, era });
  }
  for (const flare of update.flares || []) state.flares.set(flare.id, flare);
  const start = state.header.windowStartMs;
  if (start != null) {
    for (const [key, point] of state.flux) if (point.t + state.header.bucketMs <= start) state.flux.delete(key);
    for (const [id, flare] of state.flares) if (flare.peak_ms < start) state.flares.delete(id);
  }
  if (update.forecasts) state.forecasts = update.forecasts;
  for (const entry of update.metrics || []) mergeMetrics(entry);
  for (const row of update.history || []) state.history.set(row.id, row);
  while (state.history.size > HISTORY_LIMIT) state.history.delete(state.history.keys().next().value);
  scheduleRender();
}

function mergeMetrics(entry) {
  const key = `${entry.model_version}|${entry.shadow}|${entry.window}`;
  const known = state.metrics.get(key);
  const points = entry.replace || !known ? entry.points.slice() : known.points;
  if (!entry.replace && known) {
    for (const point of entry.points) {
      const last = points[points.length - 1];
      if (last && last.t === point.t) points[points.length - 1] = point;
      else if (!last || point.t > last.t) points.push(point);
    }
    if (points.length >= state.seriesLimit) {  // the service thins the same way: every other point, newest kept
      const newest = points[points.length - 1];
      const thinned = points.filter((_, i) => i % 2 === 0);
      if (thinned[thinned.length - 1] !== newest) thinned.push(newest);
      points.length = 0; points.push(...thinned);
    }
  }
  state.metrics.set(key, { ...entry, points });
}

// ---- drawing helpers ------------------------------------------------------------------------------------

function svgEl(tag, attrs, parent) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  if (parent) parent.appendChild(node);
  return node;
}

function text(parent, x, y, content, attrs) {
  const node = svgEl("text", { x, y, ...(attrs || {}) }, parent);
  node.textContent = content;
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

function viewSize(svg) { const box = svg.viewBox.baseVal; return [box.width, box.height]; }

function emptyNote(svg, message) {
  const [w, h] = viewSize(svg);
  text(svg, w / 2, h / 2, message, { "text-anchor": "middle", class: "empty" });
}

const pad2 = (n) => String(n).padStart(2, "0");
function utcLabel(ms, withDate = true, withSeconds = false) {
  const d = new Date(ms);
  const seconds = withSeconds ? `:${pad2(d.getUTCSeconds())}` : "";
  const time = `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}${seconds}`;
  return withDate ? `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())} ${time}` : time;
}
function dayLabel(ms) { const d = new Date(ms); return `${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())}`; }
const percent = (p) => (p == null ? "–" : `${(100 * p).toFixed(p < 0.1 ? 1 : 0)}%`);

function timeTicks(t0, t1) {
  const hour = 3600e3;
  const steps = [hour, 3 * hour, 6 * hour, 12 * hour, 24 * hour, 48 * hour, 7 * 24 * hour, 30 * 24 * hour, 365 * 24 * hour];
  const step = steps.find((s) => (t1 - t0) / s <= 8) || steps[steps.length - 1];
  const ticks = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) ticks.push(t);
  return { ticks, label: step >= 24 * hour ? dayLabel : (t) => utcLabel(t, false) };
}

// the model's bucket names ("0h-6h", ..., "none_within_168h") as an axis of hours after issue reads them:
// "0–6", ..., "120–168", and ">168" for no flare within the horizon; other names are shown as they are
function bucketLabel(name) {
  const interval = /^(\d+)h-(\d+)h$/.exec(name);
  if (interval) return `${interval[1]}–${interval[2]}`;
  const none = /^none_within_(\d+)h$/.exec(name);
  return none ? `>${none[1]}` : name;
}

function colourFor(index) { return SERIES_COLOURS[index % SERIES_COLOURS.length]; }

function legend(node, items) {
  clear(node);
  for (const [label, colour, dashed] of items) {
    const item = document.createElement("span");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = dashed ? `repeating-linear-gradient(90deg, ${colour} 0 4px, transparent 4px 7px)` : colour;
    item.append(swatch, label);
    node.appendChild(item);
  }
}

// ---- the charts -----------------------------------------------------------------------------------------

function drawFlux() {
  const svg = document.getElementById("flux-chart");
  clear(svg);
  const [w, h] = viewSize(svg);
  const m = { left: 58, right: 28, top: 12, bottom: 26 };
  const points = [...state.flux.values()].sort((a, b) => a.t - b.t);
  svg.dataset.points = String(points.length);
  svg.dataset.flares = "0";
  if (!points.length) { emptyNote(svg, "waiting for flux…"); legend(document.getElementById("flux-legend"), []); return; }

  const bucket = state.header.bucketMs || 60e3;
  const t0 = points[0].t, t1 = Math.max(points[points.length - 1].t + bucket, t0 + bucket);
  const x = (t) => m.left + ((t - t0) / (t1 - t0)) * (w - m.left - m.right);
  const [lo, hi] = FLUX_DECADES;
  const y = (flux) => {
    const v = Math.min(hi, Math.max(lo, Math.log10(Math.max(flux, 1e-12))));
    return h - m.bottom - ((v - lo) / (hi - lo)) * (h - m.top - m.bottom);
  };
  for (let d = lo; d <= hi; d++) {
    svgEl("line", { x1: m.left, x2: w - m.right, y1: y(10 ** d), y2: y(10 ** d), class: "gridline" }, svg);
    text(svg, m.left - 6, y(10 ** d) + 4, `1e${d}`, { "text-anchor": "end" });
  }
  for (const [letter, decade] of CLASS_LEVELS) {
    text(svg, w - m.right + 8, (y(10 ** decade) + y(10 ** (decade + 1))) / 2 + 4, letter, { class: "label" });
  }
  const { ticks, label } = timeTicks(t0, t1);
  for (const t of ticks) {
    svgEl("line", { x1: x(t), x2: x(t), y1: m.top, y2: h - m.bottom, class: "gridline" }, svg);
    text(svg, x(t), h - 8, label(t), { "text-anchor": "middle" });
  }
  text(svg, 12, h / 2, "W/m²", { transform: `rotate(-90 12 ${h / 2})`, "text-anchor": "middle" });

  const satellites = [...new Set(points.map((p) => p.satellite))].sort();
  const legendItems = [];
  satellites.forEach((satellite, index) => {
    const mine = points.filter((p) => p.satellite === satellite);
    const era = mine[mine.length - 1].era === "true_flux" ? "true flux" : "SWPC-scaled";
    for (const [band, field, colour, dashed] of [["0.1–0.8 nm", "xrsb", index ? "#ffcf7a" : "#f0a030", false],
                                                 ["0.05–0.4 nm", "xrsa", index ? "#9fd0f5" : "#5ab0f0", true]]) {
      let path = "", previous = null;
      for (const p of mine) {
        if (p[field] == null) { previous = null; continue; }
        const gap = previous == null || p.t - previous > 3 * bucket;
        path += `${gap ? "M" : "L"}${x(p.t).toFixed(1)},${y(p[field]).toFixed(1)}`;
        previous = p.t;
      }
      if (path) {
        svgEl("path", { d: path, fill: "none", stroke: colour, "stroke-width": 1.4,
                        "stroke-dasharray": dashed ? "4 3" : "none", "data-satellite": satellite, "data-band": field }, svg);
      }
      legendItems.push([`${satellite} ${band} (${era})`, colour, dashed]);
    }
  });
  legend(document.getElementById("flux-legend"), legendItems);

  // every flare gets a marker (its class in the tooltip); only C and up get a label, the biggest first, and a
  // label that would overlap one already placed is left out: a week of B flares labelled is unreadable
  const flares = [...state.flares.values()].filter((f) => f.peak_ms >= t0 && f.peak_ms <= t1)
    .sort((a, b) => b.peak_flux - a.peak_flux);
  const placed = [];
  for (const flare of flares) {
    const fx = x(flare.peak_ms), fy = y(flare.peak_flux) - 6;
    const marker = svgEl("path", { d: `M${fx - 5},${fy - 8}L${fx + 5},${fy - 8}L${fx},${fy}Z`,
                                   fill: FLARE_COLOURS[flare.class_letter] || "#ccc", class: "flare-marker",
                                   "data-class": flare.goes_class }, svg);
    svgEl("title", {}, marker).textContent = `${flare.goes_class} flare, peak ${utcLabel(flare.peak_ms)}` +
      (flare.region ? `, region ${flare.region}` : "");
    if (!LABELLED_CLASSES.includes(flare.class_letter)) continue;
    const box = { left: fx - 4 * flare.goes_class.length, right: fx + 4 * flare.goes_class.length,
                  top: fy - 22, bottom: fy - 9 };
    const overlaps = (p) => box.left < p.right && p.left < box.right && box.top < p.bottom && p.top < box.bottom;
    if (placed.some(overlaps)) continue;
    placed.push(box);
    text(svg, fx, fy - 11, flare.goes_class, { "text-anchor": "middle", class: "label flare-label" });
  }
  svg.dataset.flares = String(flares.length);
}

function drawBars(svg, groups, { max = 1, rowHeight = null } = {}) {
  // groups: [{title, bars: [[label, value]]}] drawn as rows of vertical bars
  clear(svg);
  const [w, h] = viewSize(svg);
  const rows = groups.length;
  const height = rowHeight || h / rows;
  let count = 0;
  groups.forEach((group, row) => {
    const top = row * height + (group.title ? 16 : 6), bottom = (row + 1) * height - 18;
    if (group.title) text(svg, 4, row * height + 12, group.title, { class: "label" });
    const n = group.bars.length, slot = (w - 8) / Math.max(n, 1);
    group.bars.forEach(([label, value], i) => {
      const barH = value == null ? 0 : (Math.min(value, max) / max) * (bottom - top - 12);
      const bx = 4 + i * slot + slot * 0.15;
      svgEl("rect", { x: bx, y: bottom - barH, width: slot * 0.7, height: Math.max(barH, 0.5), rx: 2,
                      fill: group.colour || "#f0a030", class: "bar", "data-label": label, "data-value": value ?? "" }, svg);
      text(svg, bx + slot * 0.35, bottom - barH - 3, percent(value), { "text-anchor": "middle", class: "label" });
      text(svg, bx + slot * 0.35, bottom + 13, label, { "text-anchor": "middle" });
      count += 1;
    });
  });
  svg.dataset.bars = String(count);
}

function drawForecast() {
  const champion = state.forecasts.champion, shadow = state.forecasts.shadow;
  const meta = document.getElementById("forecast-meta");
  const classes = document.getElementById("class-probabilities"), buckets = document.getElementById("time-to-flare");
  if (!champion) {
    meta.textContent = "no forecast yet"; meta.dataset.version = "";
    clear(classes); emptyNote(classes, "waiting for a forecast…"); classes.dataset.bars = "0";
    clear(buckets); buckets.dataset.bars = "0";
  } else {
    meta.dataset.version = champion.model_version;
    meta.dataset.degraded = champion.degraded ? "true" : "false";
    meta.textContent = `issued ${utcLabel(champion.issued_ms)} UTC by ${champion.model_version}` +
      (champion.status === "ok" ? (champion.predicted_class ? `; most likely: ${champion.predicted_class}` : "")
                                : `; ${champion.status}: ${champion.reason || ""}`) +
      (champion.degraded ? `; DEGRADED (${champion.reason})` : "");
    const order = ["none", "C", "M", "X"];
    const probabilities = Object.entries(champion.class_probabilities)
      .sort(([a], [b]) => order.indexOf(a) - order.indexOf(b));
    if (probabilities.length) {
      drawBars(classes, [{ bars: probabilities.map(([k, v]) => [k === "none" ? "below C" : k, v]) }]);
    } else { clear(classes); emptyNote(classes, "no class probabilities"); classes.dataset.bars = "0"; }
    const targets = Object.keys(champion.survival).sort();
    if (targets.length) {
      drawBars(buckets, targets.map((target, i) => ({
        title: `≥${target}: ${percent(champion.survival[target].within_24h)} within 24 h`,
        colour: ["#e8d36a", "#f0a030", "#ff4d6d"][i % 3],
        bars: Object.entries(champion.survival[target].distribution).map(([bucket, p]) => [bucketLabel(bucket), p]),
      })), { max: 1 });
    } else { clear(buckets); emptyNote(buckets, "no time-to-flare distribution"); buckets.dataset.bars = "0"; }
  }
  document.getElementById("shadow-meta").textContent = shadow
    ? `shadow ${shadow.model_version} at ${utcLabel(shadow.issued_ms)}: ` +
      Object.entries(shadow.class_probabilities).map(([k, v]) => `${k} ${percent(v)}`).join(", ")
    : "";
}

function versionLabel(entry) { return `${entry.model_version}${entry.shadow ? " (shadow)" : ""}`; }

function selectedWindow() {
  const select = document.getElementById("metrics-window");
  const windows = [...new Set([...state.metrics.values()].map((e) => e.window))].sort();
  const current = select.value;
  if (windows.join() !== [...select.options].map((o) => o.value).join()) {
    clear(select);
    for (const w of windows) select.appendChild(new Option(w, w));
    select.value = windows.includes(current) ? current : (windows.find((w) => w !== "all") || windows[0] || "");
  }
  return select.value;
}

function drawMetrics() {
  const container = document.getElementById("metrics-charts");
  clear(container);
  const windowName = selectedWindow(), target = document.getElementById("metrics-target").value;
  const entries = [...state.metrics.values()].filter((e) => e.window === windowName)
    .sort((a, b) => versionLabel(a).localeCompare(versionLabel(b)));
  container.dataset.series = String(entries.length);
  const allPoints = entries.flatMap((e) => e.points);
  const t0 = Math.min(...allPoints.map((p) => p.t)), t1 = Math.max(...allPoints.map((p) => p.t));
  for (const [score, title, lo, hi] of SCORES) {
    const [w, h] = [360, 130];
    const svg = svgEl("svg", { viewBox: `0 0 ${w} ${h}`, class: "chart metric-chart", "data-score": score }, container);
    const m = { left: 30, right: 6, top: 16, bottom: 16 };
    text(svg, m.left, 11, `${title} (≥${target})`, { class: "label" });
    if (!entries.length) { text(svg, w / 2, h / 2, "waiting for metrics…", { "text-anchor": "middle" }); continue; }
    const x = (t) => m.left + (t1 > t0 ? (t - t0) / (t1 - t0) : 0.5) * (w - m.left - m.right);
    const y = (v) => h - m.bottom - ((v - lo) / (hi - lo)) * (h - m.top - m.bottom);
    for (const v of [lo, (lo + hi) / 2, hi]) {
      svgEl("line", { x1: m.left, x2: w - m.right, y1: y(v), y2: y(v), class: "gridline" }, svg);
      text(svg, m.left - 4, y(v) + 4, String(v), { "text-anchor": "end" });
    }
    if (t1 > t0) {
      const label = t1 - t0 < 2 * 86400e3 ? (t) => utcLabel(t).slice(5) : dayLabel;
      text(svg, m.left, h - 2, label(t0)); text(svg, w - m.right, h - 2, label(t1), { "text-anchor": "end" });
    }
    let drawn = 0;
    entries.forEach((entry, index) => {
      const values = entry.points.filter((p) => p[`${target}.${score}`] != null);
      if (!values.length) return;
      const path = values.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p[`${target}.${score}`]).toFixed(1)}`).join("");
      svgEl("path", { d: path, fill: "none", stroke: colourFor(index), "stroke-width": 1.6,
                      "stroke-dasharray": entry.shadow ? "4 3" : "none", "data-version": entry.model_version }, svg);
      const last = values[values.length - 1];
      svgEl("circle", { cx: x(last.t), cy: y(last[`${target}.${score}`]), r: 2.5, fill: colourFor(index) }, svg);
      drawn += 1;
    });
    svg.dataset.lines = String(drawn);
  }
  legend(document.getElementById("metrics-legend"), entries.map((e, i) => {
    const latest = e.points[e.points.length - 1];
    return [`${versionLabel(e)} · ${latest ? latest.scored : 0} scored`, colourFor(i), e.shadow];
  }));
}

function drawReliability() {
  const svg = document.getElementById("reliability-chart");
  clear(svg);
  const [w, h] = viewSize(svg);
  const m = { left: 40, right: 10, top: 10, bottom: 36 };
  const size = Math.min(w - m.left - m.right, h - m.top - m.bottom);
  const x = (p) => m.left + p * size, y = (p) => m.top + (1 - p) * size;
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    svgEl("line", { x1: x(0), x2: x(1), y1: y(v), y2: y(v), class: "gridline" }, svg);
    svgEl("line", { x1: x(v), x2: x(v), y1: y(0), y2: y(1), class: "gridline" }, svg);
    text(svg, m.left - 4, y(v) + 4, String(v), { "text-anchor": "end" });
    text(svg, x(v), y(0) + 14, String(v), { "text-anchor": "middle" });
  }
  svgEl("line", { x1: x(0), y1: y(0), x2: x(1), y2: y(1), stroke: "#8a96a3", "stroke-dasharray": "3 3" }, svg);
  text(svg, x(0.5), y(0) + 30, "forecast probability", { "text-anchor": "middle" });
  text(svg, 10, y(0.5), "observed frequency", { transform: `rotate(-90 10 ${y(0.5)})`, "text-anchor": "middle" });

  const windowName = document.getElementById("metrics-window").value, target = document.getElementById("metrics-target").value;
  // the figures of the champion, of the shadow, and of the version that scored as champion most recently
  // (the previous champion, just after a promotion); older versions would only clutter the diagram
  const candidates = [...state.metrics.values()].filter((e) => e.window === windowName && (e.reliability || []).length)
    .sort((a, b) => versionLabel(a).localeCompare(versionLabel(b)));
  const live = candidates.filter((e) => !e.shadow).reduce((a, b) => (!a || b.t > a.t ? b : a), null);
  const entries = candidates.filter((e) => e === live || e.shadow || e.model_version === state.header.champion);
  const all = [...state.metrics.values()].sort((a, b) => versionLabel(a).localeCompare(versionLabel(b)));
  let count = 0;
  for (const entry of entries) {
    const colour = colourFor(all.filter((e) => e.window === windowName).indexOf(entry));
    const rows = entry.reliability.filter((r) => (r.target ?? target) === target && r.count > 0 && r.mean_forecast != null);
    const path = rows.map((r, i) => `${i ? "L" : "M"}${x(r.mean_forecast).toFixed(1)},${y(r.observed_frequency).toFixed(1)}`).join("");
    if (path) svgEl("path", { d: path, fill: "none", stroke: colour, "stroke-width": 1.5,
                              "stroke-dasharray": entry.shadow ? "4 3" : "none" }, svg);
    const biggest = Math.max(...rows.map((r) => r.count), 1);
    for (const r of rows) {
      const dot = svgEl("circle", { cx: x(r.mean_forecast), cy: y(r.observed_frequency),
                                    r: 2.5 + 4 * Math.sqrt(r.count / biggest), fill: colour, "fill-opacity": 0.8,
                                    class: "reliability-point", "data-version": entry.model_version }, svg);
      svgEl("title", {}, dot).textContent = `${versionLabel(entry)}: ${r.count} forecasts, mean ${percent(r.mean_forecast)}, observed ${percent(r.observed_frequency)}`;
      count += 1;
    }
  }
  if (!count) text(svg, x(0.5), y(0.55), "waiting for scored forecasts…", { "text-anchor": "middle", class: "empty" });
  svg.dataset.points = String(count);
  legend(document.getElementById("reliability-legend"),
         entries.map((e) => [`${versionLabel(e)}, ≥${target}, ${windowName}`, colourFor(all.filter((a) => a.window === windowName).indexOf(e)), e.shadow]));
}

function drawHistory() {
  const body = document.querySelector("#history tbody");
  clear(body);
  // newest recorded first (as decided); one never recorded (no broker timestamp) goes last, by arrival
  const recorded = (row) => row.recorded_ms ?? -Infinity;
  const rows = [...state.history.values()].reverse().sort((a, b) => (recorded(a) === recorded(b) ? 0
    : recorded(b) > recorded(a) ? 1 : -1));
  for (const row of rows) {
    const tr = document.createElement("tr");
    tr.dataset.kind = row.kind;
    tr.dataset.version = row.version || "";
    const kind = document.createElement("span");
    kind.className = `kind ${row.kind}`;
    kind.textContent = row.kind.replace(/^Model/, "").replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
    const recordedAt = row.recorded_ms == null ? "–" : utcLabel(row.recorded_ms, true, true);
    const cells = [recordedAt, utcLabel(row.event_ms), kind, row.version || "", row.actor || "", row.summary];
    for (const cell of cells) {
      const td = document.createElement("td");
      td.append(cell);
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  if (!rows.length) {
    const tr = document.createElement("tr"), td = document.createElement("td");
    td.colSpan = 6; td.textContent = "no model events yet"; td.className = "meta";
    tr.appendChild(td); body.appendChild(tr);
  }
}

function drawHeader() {
  document.getElementById("champion").textContent = state.header.champion || "–";
  document.getElementById("latest-flux").textContent =
    state.header.latestFluxMs ? `${utcLabel(state.header.latestFluxMs)} UTC` : "–";
  const total = Object.values(state.header.counts).reduce((a, b) => a + b, 0);
  document.getElementById("message-count").textContent = total.toLocaleString("en");
}

// ---- render loop and stream -----------------------------------------------------------------------------

let renderPending = false;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => {
    renderPending = false;
    drawHeader(); drawFlux(); drawForecast(); drawMetrics(); drawReliability(); drawHistory();
  });
}

function setConnection(stateName) {
  const node = document.getElementById("connection");
  node.dataset.state = stateName;
  node.textContent = stateName;
}

function connect() {
  const source = new EventSource("/events");
  source.addEventListener("open", () => setConnection("live"));
  source.addEventListener("error", () => setConnection("reconnecting"));  // EventSource retries by itself
  source.addEventListener("snapshot", (event) => applyUpdate(JSON.parse(event.data)));
  source.addEventListener("delta", (event) => applyUpdate(JSON.parse(event.data)));
}

document.getElementById("metrics-window").addEventListener("change", scheduleRender);
document.getElementById("metrics-target").addEventListener("change", scheduleRender);
scheduleRender();
connect();
