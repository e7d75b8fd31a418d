// Formatting and small DOM helpers shared by the pages.

export const TZ = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

/** An element: h("td", {class: "num"}, "12 W"); children may be strings, nodes or arrays. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function watts(w) {
  if (w === null || w === undefined || Number.isNaN(w)) return "—";
  return Math.abs(w) >= 10000 ? `${(w / 1000).toFixed(1)} kW` : `${Math.round(w)} W`;
}

export function kwh(value) {
  if (value === null || value === undefined) return "—";
  // Three significant digits or so: "8.98 kWh", "38.1 kWh", "342 kWh" all fit a card on one line.
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2;
  return `${value.toFixed(digits)} kWh`;
}

export function money(value, currency) {
  if (value === null || value === undefined) return "—";
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: currency || "EUR" }).format(value);
  } catch {
    return `${value.toFixed(2)} ${currency || ""}`.trim();
  }
}

export function when(iso) {
  if (!iso) return "—";
  return new Date(iso).toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, (Date.now() - new Date(iso)) / 1000);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function pct(change) {
  if (change === null || change === undefined) return "—";
  const sign = change > 0 ? "+" : "";
  return `${sign}${change.toFixed(1)} %`;
}

export function card(title, value, sub, attrs = {}) {
  return h("section", { class: "card", ...attrs },
    h("h3", {}, title),
    h("div", { class: "value" }, value),
    sub ? h("div", { class: "sub muted" }, sub) : null);
}

export function notice(text) {
  return h("p", { class: "notice" }, text);
}

/** Plotly layout shared by the charts: compact, readable on a phone. */
export function chartLayout(extra = {}) {
  return {
    margin: { l: 48, r: 12, t: 8, b: 36 },
    autosize: true,
    showlegend: false,
    hovermode: "x unified",
    xaxis: { type: "date" },
    yaxis: { title: { text: "W" }, rangemode: "tozero" },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    ...extra,
  };
}

export const CHART_CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
