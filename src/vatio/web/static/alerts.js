// Alerts of the site: filter by state, severity and device; acknowledge, resolve, mute.

import { get, has, hasSocket, live, post } from "./api.js";
import { ago, h, notice, when } from "./format.js";

const STATES = ["", "pending", "firing", "acknowledged", "resolved"];
const SEVERITIES = ["", "critical", "warning", "info"];
const MUTE_HOURS = 24;

/** Who acts from this browser: remembered, asked once, "dashboard" by default. */
function actor() {
  return localStorage.getItem("vatio.user") || "dashboard";
}

export async function renderAlerts(main, _args, state) {
  main.append(h("h1", {}, "Alerts"));
  if (!has("/api/v1/alerts")) {
    main.append(notice("Alerts are not available on this server yet (no /api/v1/alerts)."));
    return null;
  }
  const filters = { state: "", severity: "", device: "" };
  const devices = state.devices.filter((d) => d.site === state.site).map((d) => d.id);
  const selects = {
    state: options("state", STATES, "any state"),
    severity: options("severity", SEVERITIES, "any severity"),
    device: options("device", ["", ...devices], "any device"),
  };
  const list = h("div", { class: "table-wrap", id: "alert-table" });
  const message = h("p", { class: "muted", id: "alert-message", role: "status" });
  for (const [key, select] of Object.entries(selects)) {
    select.onchange = () => { filters[key] = select.value; refresh(); };
  }
  main.append(h("div", { class: "toolbar filters" }, Object.values(selects)), message, list);

  const refresh = async () => {
    const page = await get("alerts", { site: state.site, ...filters, limit: 200 });
    list.replaceChildren(table(page.items, act));
    list.dataset.count = String(page.items.length);
  };
  const act = async (alert, action) => {
    try {
      if (action === "mute") {
        const until = new Date(Date.now() + MUTE_HOURS * 3600 * 1000).toISOString();
        await post("mutes", { device: alert.device, kind: alert.kind, until, by: actor(), reason: `muted from alert ${alert.id}` });
        message.textContent = `${alert.device} ${alert.kind} muted for ${MUTE_HOURS} h`;
      } else {
        const updated = await post(`alerts/${alert.id}/${action}`, { by: actor(), note: null });
        message.textContent = `alert ${alert.id} is now ${updated.state}`;
      }
    } catch (error) {
      message.textContent = `could not ${action} alert ${alert.id}: ${error.message}`;
    }
    await refresh();
  };
  await refresh();
  // New alerts appear without a reload when the live feed is there.
  if (!hasSocket("/api/v1/live")) return null;
  return live(state.site, devices, { onReading: () => {}, onAlert: () => refresh().catch(() => {}) });
}

function options(name, values, anyLabel) {
  return h("select", { name, "aria-label": name }, values.map((v) => h("option", { value: v }, v || anyLabel)));
}

function table(alerts, act) {
  if (!alerts.length) return h("p", { class: "muted" }, "No alerts match.");
  return h("table", { class: "alerts" },
    h("thead", {}, h("tr", {}, ["Severity", "Alert", "Device", "State", "Opened", "Actions"].map((t) => h("th", {}, t)))),
    h("tbody", {}, alerts.map((a) => row(a, act))));
}

function row(a, act) {
  const open = a.state !== "resolved";
  const button = (label, action, enabled) =>
    h("button", { type: "button", "data-action": action, disabled: !enabled, onclick: () => act(a, action) }, label);
  return h("tr", { "data-alert-id": a.id, "data-state": a.state, class: a.muted ? "muted-row" : "" },
    h("td", {}, h("span", { class: `badge ${a.severity}` }, a.severity)),
    h("td", { class: "alert-text" }, h("div", { class: "title" }, a.title), h("div", { class: "explanation" }, a.explanation)),
    h("td", { class: "nowrap" }, h("a", { href: `#/device/${a.device}` }, a.device)),
    h("td", {}, h("span", { class: `state ${a.state}` }, a.state), a.muted ? h("span", { class: "muted" }, " (muted)") : null,
      a.acknowledged_by ? h("div", { class: "muted" }, `by ${a.acknowledged_by}`) : null),
    h("td", { class: "nowrap", title: when(a.opened_at) }, ago(a.opened_at)),
    h("td", { class: "actions" },
      button("Acknowledge", "acknowledge", a.state === "pending" || a.state === "firing"),
      button("Resolve", "resolve", open),
      has("/api/v1/mutes") ? button("Mute 24 h", "mute", !a.muted) : null));
}
