// One device's history: zoomable, downsampled on the server, with anomaly episodes drawn as
// bands (the expected range) over their time span, and their explanations listed below.

import { get } from "./api.js";
import { CHART_CONFIG, ago, chartLayout, h, notice, watts, when } from "./format.js";

const RANGES = { "6 h": 6, "24 h": 24, "7 d": 24 * 7, "30 d": 24 * 30, "1 y": 24 * 365 };
const RESOLUTIONS = ["auto", "raw", "1m", "15m", "1h", "1d"];
const POINTS = 2000;

export async function renderDevice(main, [deviceId], _state) {
  if (!deviceId) {
    main.append(notice("No device chosen: pick one on the Devices page."));
    return null;
  }
  const device = await get(`devices/${encodeURIComponent(deviceId)}`);
  const view = { hours: 24, resolution: "auto", start: null, end: null };
  const chart = h("div", { class: "chart tall", id: "history-chart" });
  const info = h("p", { class: "muted", id: "history-info" });
  const episodes = h("section", { class: "panel", id: "anomalies" });
  const rangeButtons = Object.entries(RANGES).map(([label, hours]) =>
    h("button", { type: "button", class: hours === view.hours ? "active" : "", onclick: (e) => {
      for (const b of rangeButtons) b.classList.toggle("active", b === e.target);
      view.hours = hours;
      view.start = view.end = null;
      load();
    } }, label));
  const select = h("select", { id: "resolution", "aria-label": "resolution" },
    RESOLUTIONS.map((r) => h("option", { value: r }, r)));
  select.onchange = () => { view.resolution = select.value; load(); };
  main.append(
    h("h1", {}, device.id),
    h("p", { class: "muted" }, `site ${device.site} · ${device.online ? "online" : "offline"} · last seen ${ago(device.last_seen)}`,
      device.firmware ? ` · firmware ${device.firmware}` : ""),
    h("div", { class: "toolbar" }, h("div", { class: "buttons" }, rangeButtons),
      h("label", {}, "Resolution ", select)),
    h("section", { class: "panel" }, chart, info), episodes);

  let plotted = false;
  let request = 0;
  const load = async () => {
    const mine = ++request;
    const end = view.end || new Date();
    const start = view.start || new Date(end - view.hours * 3600 * 1000);
    const data = await fetchSeries(device.id, start, end, view.resolution);
    if (mine !== request) return;  // a newer zoom already asked for another window
    draw(chart, data, start, end, plotted);
    if (!plotted) {
      plotted = true;
      chart.on("plotly_relayout", (event) => onZoom(event, view, load));
    }
    chart.dataset.resolution = data.resolution;
    chart.dataset.points = String(data.points.length);
    const coarser = view.resolution !== "auto" && data.resolution !== view.resolution;
    info.textContent = `${data.points.length} points at ${data.resolution} resolution` +
      (view.resolution === "auto" ? " (auto: the finest that fits)" : "") +
      (coarser ? ` (${view.resolution} is not kept for all of this range or would be more than ${POINTS} points)` : "");
    showEpisodes(episodes, data.anomalies, (a) => {
      view.start = new Date(new Date(a.start) - 3600 * 1000);
      view.end = new Date(new Date(a.end || a.last) + 3600 * 1000);
      load();
    });
  };
  await load();
  return () => Plotly.purge(chart);
}

function onZoom(event, view, load) {
  // A drag reports "xaxis.range[0]"/"[1]"; a programmatic relayout may report "xaxis.range".
  const range = event["xaxis.range"] || [event["xaxis.range[0]"], event["xaxis.range[1]"]];
  if (range[0] && range[1]) {
    // Zooming in asks the server again: a narrower window comes back at a finer resolution.
    view.start = plotlyTime(range[0]);
    view.end = plotlyTime(range[1]);
    load();
  } else if (event["xaxis.autorange"]) {
    view.start = view.end = null;
    load();
  }
}

/** Plotly reports date-axis ranges as local wall-clock strings ("2026-01-02 10:00:00.5"). */
function plotlyTime(value) {
  if (value instanceof Date) return value;
  const [day, time] = String(value).split(" ");
  // Without an offset, ES parses a date-time as local time (what Plotly means) but a bare date as UTC.
  return new Date(`${day}T${time || "00:00"}`);
}

/** Points and anomalies of [start, end), downsampled on the server; nothing finer than `resolution`. */
async function fetchSeries(deviceId, start, end, resolution) {
  const span = { start: start.toISOString(), end: end.toISOString() };
  const finest = resolution === "auto" ? {} : { resolution };
  return get(`devices/${deviceId}/history`, { ...span, points: POINTS, ...finest });
}

function draw(chart, data, start, end, plotted) {
  const x = data.points.map((p) => new Date(p.ts));
  const traces = [
    { x, y: data.points.map((p) => p.max_w), mode: "lines", line: { width: 0 }, hoverinfo: "skip", type: "scatter" },
    { x, y: data.points.map((p) => p.min_w), mode: "lines", line: { width: 0 }, fill: "tonexty",
      fillcolor: "rgba(37,99,235,0.15)", hoverinfo: "skip", type: "scatter" },
    { x, y: data.points.map((p) => p.power_w), mode: "lines", name: "power", line: { color: "#2563eb", width: 1.5 },
      type: "scatter", hovertemplate: "%{y:.0f} W<extra></extra>" },
  ];
  const shapes = data.anomalies.flatMap((a) => episodeShapes(a, end));
  // A young device fills a sliver of the window: show from its first point instead.
  const first = x.length ? x[0] : start;
  const from = first - start > 0.1 * (end - start) ? new Date(first - 0.05 * (end - first)) : start;
  const layout = chartLayout({ shapes, xaxis: { type: "date", range: [from, end] }, dragmode: "zoom" });
  if (plotted) Plotly.react(chart, traces, layout, CHART_CONFIG);
  else Plotly.newPlot(chart, traces, layout, CHART_CONFIG);
}

function episodeShapes(a, end) {
  const x1 = a.end ? new Date(a.end) : end;
  const span = { type: "rect", xref: "x", yref: "paper", x0: new Date(a.start), x1, y0: 0, y1: 1,
    fillcolor: "rgba(220,38,38,0.10)", line: { width: 0 }, layer: "below" };
  if (a.low_w === null || a.high_w === null) return [span];
  const band = { type: "rect", xref: "x", yref: "y", x0: new Date(a.start), x1, y0: floor(a.low_w), y1: a.high_w,
    fillcolor: "rgba(22,163,74,0.25)", line: { color: "rgba(22,163,74,0.8)", width: 1, dash: "dot" }, layer: "above" };
  return [span, band];
}

/** A band's lower edge: consumption is never negative, so a band reaching below 0 W stops there (as explanations do). */
function floor(low) {
  return low === null || low === undefined ? low : Math.max(low, 0);
}

function showEpisodes(box, anomalies, zoomTo) {
  box.replaceChildren(h("h2", {}, `Anomalies in view (${anomalies.length})`));
  if (!anomalies.length) {
    box.append(h("p", { class: "muted" }, "None in this window."));
    return;
  }
  box.append(h("ul", { class: "episodes" }, anomalies.map((a) => h("li", { "data-anomaly-id": a.id },
    h("button", { type: "button", class: "link", onclick: () => zoomTo(a) }, a.kind),
    h("span", { class: "muted" }, ` ${when(a.start)} → ${a.end ? when(a.end) : "ongoing"}`),
    h("div", { class: "explanation" }, a.explanation),
    h("div", { class: "muted" }, `expected ${watts(a.expected_w)} (band ${watts(floor(a.low_w))}–${watts(a.high_w)}),`
      + ` observed ${watts(a.observed_w)}, score ${a.score.toFixed(2)}, ${a.detector}`)))));
}
