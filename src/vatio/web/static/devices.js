// Every device: site, online, last seen, firmware; a row opens the device's history.

import { get } from "./api.js";
import { ago, h, when } from "./format.js";

export async function renderDevices(main, _args, state) {
  // Fresh from the API: online and last seen change while the dashboard is open.
  const devices = (await get("devices")).items;
  state.devices = devices;
  const mine = devices.filter((d) => d.site === state.site);
  const others = devices.filter((d) => d.site !== state.site);
  const online = devices.filter((d) => d.online).length;
  main.append(
    h("h1", {}, "Devices"),
    h("p", { class: "muted" }, `${online} of ${devices.length} online`),
    h("div", { class: "table-wrap" }, h("table", { class: "devices", id: "device-table" },
      h("thead", {}, h("tr", {}, ["Device", "Site", "Status", "Last seen", "Firmware", "First seen"].map((t) => h("th", {}, t)))),
      h("tbody", {}, [...mine, ...others].map(row)))));
  return null;
}

function row(d) {
  return h("tr", { "data-device": d.id },
    h("td", {}, h("a", { href: `#/device/${encodeURIComponent(d.id)}` }, d.id)),
    h("td", {}, d.site),
    h("td", {}, h("span", { class: `dot ${d.online ? "online" : "offline"}` }), d.online ? "online" : "offline",
      d.reported_online === false ? h("span", { class: "muted" }, " (reported offline)") : null),
    h("td", { title: when(d.last_seen) }, ago(d.last_seen)),
    h("td", {}, d.firmware || "—"),
    h("td", {}, when(d.first_seen)));
}
