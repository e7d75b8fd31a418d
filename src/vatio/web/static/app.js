// The dashboard shell: hash routes, the site selector, and page life cycles.
//   #/overview   #/device/{id}   #/alerts   #/devices

import { get, has, all, loadFeatures } from "./api.js";
import { h, notice } from "./format.js";
import { renderOverview } from "./overview.js";
import { renderDevice } from "./device.js";
import { renderAlerts } from "./alerts.js";
import { renderDevices } from "./devices.js";

const PAGES = { overview: renderOverview, device: renderDevice, alerts: renderAlerts, devices: renderDevices };

/** Shared state: the sites, the chosen site, and the devices of every site. */
export const state = { sites: [], site: null, devices: [] };

let cleanup = null;
let generation = 0;

async function loadSites() {
  state.devices = (await get("devices")).items;
  if (has("/api/v1/sites")) {
    state.sites = (await all("sites")).map((s) => s.site);
  } else {
    state.sites = [...new Set(state.devices.map((d) => d.site))].sort();
  }
  const saved = localStorage.getItem("vatio.site");
  state.site = state.sites.includes(saved) ? saved : state.sites[0] || null;
  const select = document.getElementById("site");
  select.replaceChildren(...state.sites.map((s) => h("option", { value: s, selected: s === state.site }, s)));
  select.closest("label").hidden = state.sites.length < 2;
  select.onchange = () => {
    state.site = select.value;
    localStorage.setItem("vatio.site", state.site);
    route();
  };
}

export function siteDevices() {
  return state.devices.filter((d) => d.site === state.site);
}

async function route() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const page = PAGES[name] ? name : "overview";
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.page === page || (page === "device" && link.dataset.page === "devices"));
  }
  if (cleanup) cleanup();
  cleanup = null;
  const mine = ++generation;
  const main = document.getElementById("page");
  main.replaceChildren();
  main.dataset.page = page;
  delete main.dataset.ready;
  try {
    const stop = await PAGES[page](main, rest.map(decodeURIComponent), state);
    // A newer navigation won the race: stop what this one started.
    if (mine !== generation) { if (stop) stop(); return; }
    cleanup = stop || null;
    main.dataset.ready = "true";
  } catch (error) {
    if (mine !== generation) return;
    main.replaceChildren(notice(`Could not load this page: ${error.message}`));
    main.dataset.ready = "error";
  }
}

async function start() {
  await loadFeatures();
  await loadSites();
  window.addEventListener("hashchange", route);
  await route();
  const health = await get("/health");
  document.getElementById("status").textContent =
    `Vatio ${health.version} · ${health.store} · ${health.devices} devices · ${health.readings} readings`;
}

start().catch((error) => {
  document.getElementById("page").replaceChildren(notice(`The API is not reachable: ${error.message}`));
});
