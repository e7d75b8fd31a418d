// Overview of one site: live power, today's and this month's energy and cost, the week
// compared with the last, the always-on load and its yearly cost, open alerts.
// The live total sums the site's main meters (its settings' main_meters; every device when
// none are set): a sub-meter or plug behind a main meter is already in the main's reading.

import { get, has, hasSocket, live } from "./api.js";
import { CHART_CONFIG, TZ, ago, card, chartLayout, h, kwh, money, notice, pct, watts } from "./format.js";

const LIVE_WINDOW_MS = 15 * 60 * 1000;
const ONLINE_WINDOW_MS = 5 * 60 * 1000;
const OPEN_STATES = new Set(["pending", "firing", "acknowledged"]);

export async function renderOverview(main, _args, state) {
  if (!state.site) {
    main.append(notice("No devices yet: readings will appear here once a meter reports."));
    return null;
  }
  const devices = state.devices.filter((d) => d.site === state.site).map((d) => d.id);
  const mains = await loadMainMeters(state.site, devices);
  const liveCard = card("Live power", "—", meterCount(mains, devices), { id: "live-power", "data-updates": "0" });
  const cards = h("div", { class: "cards" }, liveCard);
  const chart = h("div", { class: "chart", id: "live-chart" });
  const deviceList = h("ul", { class: "device-power" });
  const alertBox = h("section", { class: "panel", id: "open-alerts" }, h("h2", {}, "Open alerts"));
  main.append(
    h("h1", {}, `Site ${state.site}`), cards,
    h("section", { class: "panel" }, h("h2", {}, "Last 15 minutes"), chart, deviceList),
    alertBox,
  );
  const [summary] = await Promise.all([loadSummary(state.site, mains), loadAlerts(state.site, alertBox)]);
  cards.append(...summaryCards(summary));
  return startLive(state.site, devices, mains, liveCard, chart, deviceList);
}

/** The devices whose sum is the site's power: its main meters when set (and known), else all its devices. */
async function loadMainMeters(site, devices) {
  if (!has("/api/v1/sites/{site}")) return devices;
  const settings = await get(`sites/${encodeURIComponent(site)}`).catch(() => null);
  const mains = (settings?.main_meters || []).filter((d) => devices.includes(d));
  return mains.length ? mains : devices;
}

function meterCount(mains, devices) {
  if (mains.length === devices.length) return `${devices.length} devices`;
  const subs = devices.length - mains.length;
  return `${mains.length} main meter${mains.length > 1 ? "s" : ""} · ${subs} sub-meter${subs > 1 ? "s" : ""}`;
}

async function loadSummary(site, devices) {
  if (has("/api/v1/sites/{site}/summary")) return get(`sites/${encodeURIComponent(site)}/summary`, { tz: TZ });
  // Without the sites router: energy from each device's own counter, no costs.
  const now = new Date();
  const midnight = new Date(now.getFullYear(), now.getMonth(), now.getDate());
  const monthStart = new Date(now.getFullYear(), now.getMonth(), 1);
  const sumWh = async (start) => {
    const series = await Promise.all(devices.map((d) => get(`devices/${d}/energy`, {
      start: start.toISOString(), end: now.toISOString(), bucket: "day", tz: TZ,
    })));
    return series.reduce((total, s) => total + s.total_wh, 0) / 1000;
  };
  const [today, month] = await Promise.all([sumWh(midnight), sumWh(monthStart)]);
  return { today_kwh: today, month_kwh: month, partial: true };
}

function summaryCards(s) {
  const weekChange = s.last_week_kwh ? ((s.week_kwh - s.last_week_kwh) / s.last_week_kwh) * 100 : null;
  const dayChange = s.last_week_same_day_kwh
    ? ((s.today_kwh - s.last_week_same_day_kwh) / s.last_week_same_day_kwh) * 100 : null;
  const yearly = s.baseload_yearly_cost !== null && s.baseload_yearly_cost !== undefined
    ? `${money(s.baseload_yearly_cost, s.currency)} a year`
    : s.baseload_yearly_kwh !== null && s.baseload_yearly_kwh !== undefined ? `${kwh(s.baseload_yearly_kwh)} a year` : "—";
  const cards = [
    card("Today", kwh(s.today_kwh), money(s.today_cost, s.currency), { id: "today" }),
    card("This month", kwh(s.month_kwh), money(s.month_cost, s.currency), { id: "month" }),
    card("vs last week", pct(weekChange), s.partial ? "needs the sites API"
      : `this week ${kwh(s.week_kwh)} · today ${pct(dayChange)} vs a week ago`, { id: "vs-last-week" }),
    card("Always-on", watts(s.baseload_w), yearly, { id: "baseload" }),
  ];
  if (s.open_alerts !== undefined) {
    cards.push(h("a", { href: "#/alerts", class: "card-link" },
      card("Open alerts", String(s.open_alerts), "see Alerts", { id: "open-alert-count" })));
  }
  return cards;
}

async function loadAlerts(site, box) {
  if (!has("/api/v1/alerts")) {
    box.append(notice("Alerts are not available on this server."));
    return;
  }
  const page = await get("alerts", { site, limit: 100 });
  const open = page.items.filter((a) => OPEN_STATES.has(a.state));
  box.querySelector("h2").textContent = `Open alerts (${open.length})`;
  if (!open.length) {
    box.append(h("p", { class: "muted" }, "Nothing needs attention."));
    return;
  }
  box.append(h("ul", { class: "alert-list" }, open.slice(0, 5).map((a) => h("li", {},
    h("span", { class: `badge ${a.severity}` }, a.severity), " ",
    h("a", { href: "#/alerts" }, a.title), h("span", { class: "muted" }, ` ${a.device} · ${ago(a.opened_at)}`)))));
}

function startLive(site, devices, mains, liveCard, chart, deviceList) {
  const latest = new Map();
  const isSub = (d) => !mains.includes(d);
  const traces = devices.map((d) => ({
    x: [], y: [], name: isSub(d) ? `${d} (sub-meter)` : d, mode: "lines", type: "scatter",
  }));
  const layout = chartLayout({
    showlegend: devices.length > 1,
    legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" },
    margin: { l: 48, r: 12, t: 28, b: 36 },
  });
  // The window moves every few seconds: zoom tools would only fight it.
  Plotly.newPlot(chart, traces, layout, { ...CHART_CONFIG, displayModeBar: false });
  const rows = new Map(devices.map((d) => [d, h("span", { class: "num" }, "—")]));
  deviceList.append(...devices.map((d) => h("li", { "data-device": d, "data-role": isSub(d) ? "sub-meter" : "main" },
    h("a", { href: `#/device/${d}` }, d), isSub(d) ? h("span", { class: "muted" }, " sub-meter") : null, rows.get(d))));
  let updates = 0;
  let stopped = false;
  const show = (r, counted) => {
    if (stopped) return;  // a late backfill or message after leaving the page
    const index = devices.indexOf(r.device);
    if (index < 0 || r.power_w === null || r.power_w === undefined) return;
    // Already drawn: the polling fallback's first answer repeats the backfilled minutes.
    const previous = latest.get(r.device);
    if (previous && new Date(r.ts) <= new Date(previous.ts)) return;
    latest.set(r.device, r);
    rows.get(r.device).textContent = watts(r.power_w);
    // Only main meters add up (sub-meters are inside them); one silent for longer than the
    // API's online window no longer counts.
    const fresh = [...latest.values()]
      .filter((x) => !isSub(x.device) && Date.now() - new Date(x.ts) < ONLINE_WINDOW_MS);
    const total = fresh.reduce((sum, x) => sum + x.power_w, 0);
    liveCard.querySelector(".value").textContent = watts(total);
    const noun = mains.length === devices.length ? "devices" : `main meter${mains.length > 1 ? "s" : ""}`;
    liveCard.querySelector(".sub").textContent =
      `${fresh.length} of ${mains.length} ${noun} · ${new Date(r.ts).toLocaleTimeString()}`;
    liveCard.dataset.total = String(total);
    // Only readings that arrived live count: the e2e test watches this to prove the feed works.
    if (counted) liveCard.dataset.updates = String(++updates);
    Plotly.extendTraces(chart, { x: [[new Date(r.ts)]], y: [[r.power_w]] }, [index], 2000);
  };
  let stop = () => {};
  const begin = async () => {
    // The WebSocket only carries what happens from now on: draw the last minutes first.
    // (The polling fallback starts with those minutes itself.)
    if (hasSocket("/api/v1/live")) await backfill(devices, (r) => show(r, false)).catch(() => {});
    if (!stopped) stop = live(site, devices, { onReading: (r) => show(r, true) });
  };
  begin();
  const trim = setInterval(() => {
    const now = Date.now();
    Plotly.relayout(chart, { "xaxis.range": [new Date(now - LIVE_WINDOW_MS), new Date(now + 5000)] });
  }, 5000);
  return () => { stopped = true; stop(); clearInterval(trim); Plotly.purge(chart); };
}

async function backfill(devices, onReading) {
  const end = new Date(Date.now() + 60000);
  const start = new Date(end - LIVE_WINDOW_MS);
  for (const device of devices) {
    const series = await get(`devices/${device}/readings`, { start: start.toISOString(), end: end.toISOString(), limit: 2000 });
    for (const r of series.items) onReading({ device, ts: r.ts, power_w: r.power_w });
  }
}
