// The glanet web view: one tile per camera (pictures fetched one at a time, each once it is newer than
// the last), the cameras' status from /api/cameras, the events from Server-Sent Events. No framework, no
// build step, nothing from the network but this server.
"use strict";

const tiles = new Map(); // camera name -> {el, img, seq, attention, alive}
const rows = new Map();  // "camera|start_ts|label" -> <tr> of the events table
let info = { maps: ["none"], max_fps: 15 };
let lastEventId = 0;

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, text = "") => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cameraUrl = (name) => `cameras/${encodeURIComponent(name)}`;
const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : "");
const fmt = (v, digits = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));

async function api(path, options = {}) {
  const response = await fetch(path, { cache: "no-store", ...options });
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) throw new Error(body?.error || `${response.status} ${response.statusText}`);
  return body;
}

function makeTile(camera) {
  const node = el("article", { class: "tile", "data-camera": camera.name });
  const head = el("div", { class: "head" });
  head.append(el("span", { class: "name" }, camera.name), el("span", { class: "badge status" }, camera.status),
              el("span", { class: "top1" }));
  const frame = el("div", { class: "frame" });
  const img = el("img", { class: "tile-img", alt: `camera ${camera.name}` });
  frame.append(img);
  const stats = el("div", { class: "stats" });
  const foot = el("div", { class: "foot" });
  const modes = el("span", { class: "modes", role: "group", "aria-label": "attention map" });
  const tile = { el: node, img, seq: -1, attention: info.attention || info.maps[0], alive: true, url: null };
  for (const mode of info.maps) {
    const button = el("button", { type: "button", "data-mode": mode, "aria-pressed": String(mode === tile.attention) },
                      mode.toUpperCase());
    button.addEventListener("click", () => {
      tile.attention = mode;
      tile.seq = -1; // the newest picture at once, with this map
      for (const b of modes.children) b.setAttribute("aria-pressed", String(b === button));
    });
    modes.append(button);
  }
  const link = el("a", { href: `${cameraUrl(camera.name)}/stream.mjpg`, target: "_blank", title: "MJPEG stream (for a player)" }, "mjpeg");
  const remove = el("button", { type: "button", class: "remove", title: `remove ${camera.name}` }, "remove");
  remove.addEventListener("click", async () => {
    try { await api(`api/${cameraUrl(camera.name)}`, { method: "DELETE" }); }
    catch (error) { alert(error.message); }
    refresh();
  });
  foot.append(modes, link, remove);
  node.append(head, frame, stats, foot);
  $("#tiles").append(node);
  tiles.set(camera.name, tile);
  pump(camera.name, tile);
  return tile;
}

// Pictures, one request at a time: the server answers once it has a newer one (or 204 after `wait`), so
// the tile shows the newest picture without a backlog, at most max_fps a second.
async function pump(name, tile) {
  const interval = 1000 / info.max_fps;
  while (tile.alive) {
    const started = performance.now();
    try {
      const url = `${cameraUrl(name)}/snapshot.jpg?attention=${tile.attention}&after=${tile.seq}&wait=2`;
      const response = await fetch(url, { cache: "no-store" });
      if (response.status === 404) break;
      if (response.status === 200) {
        tile.seq = Number(response.headers.get("X-Frame-Seq"));
        const blob = await response.blob();
        const old = tile.url;
        tile.url = URL.createObjectURL(blob);
        tile.img.src = tile.url;
        if (old) URL.revokeObjectURL(old);
      } else if (response.status !== 204) {
        await sleep(500);
      }
    } catch (error) {
      await sleep(1000);
    }
    const rest = interval - (performance.now() - started);
    if (rest > 0) await sleep(rest);
  }
}

function updateTile(tile, camera) {
  const badge = $(".status", tile.el);
  badge.textContent = camera.status;
  badge.className = `badge status ${camera.status}`;
  badge.title = camera.message || "";
  $(".top1", tile.el).textContent = camera.top1 ? `${camera.top1.label} ${(100 * camera.top1.confidence).toFixed(0)}%` : "";
  $(".stats", tile.el).textContent =
    `${fmt(camera.fps)} fps · p95 ${fmt(camera.latency_p95_ms, 0)} ms · ${camera.reconnects} reconnects · ${camera.source}`;
}

async function refresh() {
  let cameras;
  try {
    cameras = await api("api/cameras");
    $("#link").textContent = "connected";
    $("#link").className = "badge live";
  } catch (error) {
    $("#link").textContent = "server unreachable";
    $("#link").className = "badge failed";
    return;
  }
  const names = new Set(cameras.map((c) => c.name));
  for (const [name, tile] of tiles) {
    if (!names.has(name)) {
      tile.alive = false;
      tile.el.remove();
      if (tile.url) URL.revokeObjectURL(tile.url);
      tiles.delete(name);
    }
  }
  for (const camera of cameras) updateTile(tiles.get(camera.name) || makeTile(camera), camera);
}

function showEvent(event) {
  lastEventId = Math.max(lastEventId, event.id);
  const key = `${event.camera}|${event.start_ts}|${event.label}`;
  let row = rows.get(key);
  if (!row) {
    row = el("tr", { "data-key": key, "data-camera": event.camera, class: "ongoing" });
    for (let i = 0; i < 5; i++) row.append(el("td"));
    row.children[0].textContent = event.camera;
    row.children[1].textContent = event.label;
    rows.set(key, row);
    $("#events tbody").prepend(row);
    while (rows.size > 200) {
      const [oldest, oldRow] = rows.entries().next().value;
      oldRow.remove();
      rows.delete(oldest);
    }
  }
  if (event.event === "start") {
    row.children[2].textContent = clock(event.time);
    row.children[3].textContent = "ongoing";
  } else {
    row.classList.remove("ongoing");
    row.children[3].textContent = clock(event.time);
    if (!row.children[2].textContent) row.children[2].textContent = `${fmt(event.start_ts)} s (video)`;
  }
  row.children[4].textContent = `${(100 * event.peak).toFixed(0)}%`;
  $("#no-events").hidden = true;
}

async function listenEvents() {
  try {
    for (const event of await api("api/events?limit=200")) showEvent(event);
  } catch (error) { /* the stream below retries */ }
  const source = new EventSource(`api/events/stream?since=${lastEventId}`);
  source.addEventListener("action", (message) => showEvent(JSON.parse(message.data)));
}

$("#add").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const form = submit.target;
  $("#add-error").textContent = "";
  try {
    await api("api/cameras", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: form.name.value.trim(), source: form.source.value.trim() }),
    });
    form.reset();
    refresh();
  } catch (error) {
    $("#add-error").textContent = error.message;
  }
});

(async function main() {
  try {
    info = await api("api/info");
  } catch (error) { /* shown by refresh */ }
  $("#model").textContent = [info.backend, info.note].filter(Boolean).join(" · ");
  await refresh();
  setInterval(refresh, 1000);
  listenEvents();
})();
