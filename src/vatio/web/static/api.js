// Talking to the Vatio API: JSON helpers, which routes exist, the live feed.

const API = "/api/v1";

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "http_error";
  }
}

async function request(method, path, { params, body } = {}) {
  const url = new URL(path.startsWith("/") ? path : `${API}/${path}`, location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  const payload = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) throw new ApiError(response.status, payload);
  return payload;
}

export const get = (path, params) => request("GET", path, { params });
export const post = (path, body) => request("POST", path, { body });
export const del = (path) => request("DELETE", path);

let routes = null;

/** Which API routes this server has: optional routers degrade a panel, never fail a request. */
export async function loadFeatures() {
  routes = await get("/web/features");
  return routes;
}

/** True when the server has the HTTP route `template` (e.g. "/api/v1/sites/{site}/summary"). */
export function has(template) {
  return Boolean(routes && routes.http.includes(template));
}

export function hasSocket(template) {
  return Boolean(routes && routes.websocket.includes(template));
}

/** Every item of a paginated list (`{items, next_cursor}`), at most `max` of them. */
export async function all(path, params = {}, max = 1000) {
  const items = [];
  let cursor = null;
  do {
    const page = await get(path, { ...params, cursor, limit: Math.min(max, 1000) });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}

/**
 * Live readings of a site: the WebSocket feed when the server has it, else polling the
 * readings of the site's devices. `onReading({device, ts, power_w})`, `onAlert(event)`.
 * Returns a function that stops the feed.
 */
export function live(site, devices, { onReading, onAlert, pollMs = 3000 }) {
  const poll = () => pollFeed(devices, onReading, pollMs);
  if (hasSocket(`${API}/live`)) return socketFeed(site, onReading, onAlert, poll);
  return poll();
}

function socketFeed(site, onReading, onAlert, fallback) {
  let socket = null;
  let stopped = false;
  let stopFallback = null;
  let retryMs = 1000;
  const open = () => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}${API}/live?site=${encodeURIComponent(site)}`);
    socket.onopen = () => { retryMs = 1000; };
    socket.onmessage = (event) => {
      if (stopped) return;  // the page that asked is gone
      const message = JSON.parse(event.data);
      if (message.type === "reading") onReading(message);
      else if (message.type === "alert" && onAlert) onAlert(message);
      else if (message.type === "error") {
        // The server refused (e.g. an API without a broker): poll instead of retrying forever.
        stopped = true;
        stopFallback = fallback();
      }
    };
    socket.onclose = () => {
      // Capped exponential backoff: a restarting server is not hammered.
      if (!stopped) setTimeout(() => { if (!stopped) open(); }, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    };
  };
  open();
  return () => {
    stopped = true;
    if (stopFallback) stopFallback();
    if (!socket) return;
    // Closing while still connecting makes the browser log an error: close once open instead.
    if (socket.readyState === WebSocket.CONNECTING) socket.onopen = () => socket.close();
    else socket.close();
  };
}

function pollFeed(devices, onReading, pollMs) {
  const newest = new Map();
  let stopped = false;
  const poll = async () => {
    const end = new Date(Date.now() + 60000);
    const start = new Date(end - 10 * 60000);
    await Promise.all(devices.map(async (device) => {
      const series = await get(`devices/${device}/readings`, {
        start: start.toISOString(), end: end.toISOString(), limit: 500,
      });
      for (const r of series.items) {
        if (stopped) return;
        if (newest.has(device) && r.ts <= newest.get(device)) continue;
        newest.set(device, r.ts);
        onReading({ type: "reading", device, ts: r.ts, power_w: r.power_w, energy_wh: r.energy_wh });
      }
    }));
  };
  poll().catch(() => {});
  const timer = setInterval(() => poll().catch(() => {}), pollMs);
  return () => { stopped = true; clearInterval(timer); };
}
