// The glanet web view: one tile per camera (pictures fetched one at a time, each once it is newer than
// the last; the picture carries the heat map and the crop box, the text is written here), the cameras'
// status from /api/cameras, the events a page at a time from /api/events and new ones from Server-Sent
// Events. No framework, no build step, nothing from the network but this server.
"use strict";

const PAGE = 10; // events on a page of the events panel
const tiles = new Map(); // camera name -> {el, img, seq, attention, alive, url}
let info = { maps: ["none"], max_fps: 15 };
let lastEventId = 0;
const events = { camera: "", cursors: [], shown: [], older: false }; // cursors: `before` ids of newer pages

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, text = "") => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cameraUrl = (name) => `cameras/${encodeURIComponent(name)}`;
const fmt = (v, digits = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
const pct = (p) => `${(100 * p).toFixed(0)}%`;

// a wall-clock time as people read it: the time of day, and the date where it is not today
function clock(when) {
  if (when === null || when === undefined) return "";
  const date = typeof when === "number" ? new Date(1000 * when) : new Date(when);
  const time = date.toLocaleTimeString([], { hour12: false });
  if (date.toDateString() === new Date().toDateString()) return time;
  return `${date.toLocaleDateString([], { day: "numeric", month: "short" })} ${time}`;
}

async function api(path, options = {}) {
  const response = await fetch(path, { cache: "no-store", ...options });
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) throw new Error(body?.error || `${response.status} ${response.statusText}`);
  return body;
}

// -- tiles ------------------------------------------------------------------------------------------------

function makeTile(camera) {
  const node = el("article", { class: "tile", "data-camera": camera.name });
  const head = el("div", { class: "head" });
  head.append(el("span", { class: "name" }, camera.name), el("span", { class: "badge status" }, camera.status),
              el("span", { class: "top1" }));
  const frame = el("div", { class: "frame" });
  const img = el("img", { class: "tile-img", alt: `camera ${camera.name}` });
  img.hidden = true; // until its first picture: never a broken-image icon
  const notice = el("div", { class: "notice", role: "status" });
  notice.append(el("strong", { class: "notice-head" }), el("span", { class: "notice-reason" }),
                el("span", { class: "notice-retry" }));
  frame.append(img, notice);
  const readout = el("div", { class: "readout" });
  readout.append(el("ol", { class: "top5", "aria-label": "top five" }), el("p", { class: "warmup" }),
                 el("p", { class: "branches" }), el("p", { class: "stats" }), el("p", { class: "source" }));
  const body = el("div", { class: "body" });
  body.append(frame, readout);
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
  node.append(head, body, foot);
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
        tile.img.hidden = false;
        if (old) URL.revokeObjectURL(old);
      } else if (response.status !== 204) {
        await sleep(tile.status === "failed" || tile.status === "ended" ? 3000 : 500);
      }
    } catch (error) {
      await sleep(1000);
    }
    const rest = interval - (performance.now() - started);
    if (rest > 0) await sleep(rest);
  }
}

// what a tile says over its picture when the camera is not live: what happened, why, and when it retries
function noticeLines(camera) {
  const reason = camera.message || "";
  switch (camera.status) {
    case "live": return null;
    case "connecting": return ["connecting", reason, ""];
    case "reconnecting": {
      let retry = camera.attempt ? `attempt ${camera.attempt}` : "";
      if (camera.retry_at) {
        const left = camera.retry_at - Date.now() / 1000;
        const when = left > 0.5 ? `retry in ${Math.ceil(left)} s (at ${clock(camera.retry_at)})` : "retrying now";
        retry = retry ? `${retry} · ${when}` : when;
      }
      return ["reconnecting", reason, retry];
    }
    case "failed": return ["failed", reason || "the source could not be read", "no more retries"];
    case "ended": return ["ended", reason, ""];
    default: return [camera.status, reason, ""];
  }
}

function updateTile(tile, camera) {
  tile.status = camera.status;
  const badge = $(".status", tile.el);
  badge.textContent = camera.status;
  badge.className = `badge status ${camera.status}`;
  badge.title = camera.message || "";
  tile.el.dataset.status = camera.status;
  $(".top1", tile.el).textContent = camera.top1 ? `${camera.top1.label} ${pct(camera.top1.confidence)}` : "";

  const lines = noticeLines(camera);
  const notice = $(".notice", tile.el);
  notice.hidden = !lines;
  notice.classList.toggle("over-picture", !tile.img.hidden);
  if (lines) {
    $(".notice-head", notice).textContent = lines[0];
    $(".notice-reason", notice).textContent = lines[1];
    $(".notice-retry", notice).textContent = lines[2];
  }

  const top5 = $(".top5", tile.el);
  top5.replaceChildren(...(camera.top5 || []).map((c, i) => {
    const item = el("li", { class: i === 0 ? "first" : "" });
    item.style.setProperty("--p", String(c.confidence));
    const truth = camera.truth && c.label === camera.truth ? " truth" : "";
    item.append(el("span", { class: `label${truth}` }, c.label), el("span", { class: "pct" }, pct(c.confidence)));
    return item;
  }));
  if (!camera.top5?.length) top5.append(el("li", { class: "none" }, "no prediction yet"));
  const warm = $(".warmup", tile.el);
  warm.hidden = camera.warm || !camera.window;
  warm.textContent = warm.hidden ? "" : `warming up ${camera.history}/${camera.window}`;
  const branches = (camera.branches || []).map((b) => `${b.name} ${b.label} ${pct(b.confidence)}`);
  if (camera.truth) branches.push(`truth ${camera.truth}`);
  $(".branches", tile.el).textContent = branches.join(" · ");
  const rates = Object.entries(camera.fps_stages || {}).map(([k, v]) => `${k} ${fmt(v)}`).join(" · ");
  $(".stats", tile.el).textContent =
    `fps ${rates || "–"} · p50 ${fmt(camera.latency_p50_ms, 0)} / p95 ${fmt(camera.latency_p95_ms, 0)} ms · ` +
    `${camera.reconnects} reconnects`;
  $(".source", tile.el).textContent = camera.source;
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
  $("#paused").hidden = !cameras.some((c) => c.paused);
  cameraChoices(cameras.map((c) => c.name));
}

// -- events -----------------------------------------------------------------------------------------------

function cameraChoices(names) {
  const select = $("#events-camera");
  const have = new Set([...select.options].map((o) => o.value));
  for (const name of names) if (!have.has(name)) select.append(el("option", { value: name }, name));
}

function eventKey(e) { return `${e.camera}|${e.start_ts}|${e.label}|${e.event}`; }

function eventRow(e) {
  const ongoing = e.event === "start" && e.end_id === null;
  const item = el("li", { class: `event ${e.event}${ongoing ? " ongoing" : ""}`, "data-id": String(e.id),
                          "data-camera": e.camera, "data-key": eventKey(e) });
  const thumb = el("div", { class: "thumb" });
  if (e.thumbnail) {
    const img = el("img", { src: `api/events/${e.id}/snapshot.jpg`, alt: `${e.label} at its peak`, loading: "lazy" });
    img.addEventListener("error", () => img.remove()); // no longer kept: an empty box, not a broken icon
    thumb.append(img);
  }
  const what = el("div", { class: "what" });
  const kind = e.event === "start" ? (ongoing ? "ongoing" : "started")
    : `ended${e.duration_s !== null ? ` · ${fmt(e.duration_s)} s` : ""}`;
  what.append(el("span", { class: "label" }, e.label), el("span", { class: "sub" }, `${e.camera} · ${kind}`));
  const when = el("div", { class: "when" });
  const time = el("time", { datetime: e.time || "", title: e.time || "" }, clock(e.time));
  when.append(time, el("span", { class: "peak", title: "peak confidence" }, `peak ${pct(e.peak)}`));
  item.append(thumb, what, when);
  return item;
}

const rowCache = new Map(); // "id|ongoing" -> its <li>: a row is made once (its thumbnail fetched once)

function renderEvents() {
  const rows = events.shown.map((e) => {
    const key = `${e.id}|${e.event === "start" && e.end_id === null}`;
    if (!rowCache.has(key)) rowCache.set(key, eventRow(e));
    return [key, rowCache.get(key)];
  });
  const keep = new Set(rows.map(([key]) => key));
  for (const key of rowCache.keys()) if (!keep.has(key)) rowCache.delete(key);
  $("#events").replaceChildren(...rows.map(([, row]) => row));
  $("#no-events").hidden = events.shown.length > 0;
  $("#events-newer").disabled = events.cursors.length === 0;
  $("#events-older").disabled = !events.older;
  $("#events-page").textContent = events.cursors.length ? `page ${events.cursors.length + 1}` : "newest";
}

// one page: the PAGE newest events under the page's cursor (none: the newest), newest first
async function loadEvents() {
  const before = events.cursors.at(-1);
  const query = new URLSearchParams({ limit: String(PAGE + 1) });
  if (before) query.set("before", String(before));
  if (events.camera) query.set("camera", events.camera);
  try {
    const records = await api(`api/events?${query}`);
    events.older = records.length > PAGE;
    events.shown = records.slice(-PAGE).reverse();
    for (const e of records) lastEventId = Math.max(lastEventId, e.id);
  } catch (error) { /* kept as it was; the next page asked for retries */ }
  renderEvents();
}

function newEvent(e) {
  lastEventId = Math.max(lastEventId, e.id);
  if (e.event === "end" && e.start_id !== null) {
    const start = events.shown.find((s) => s.id === e.start_id);
    if (start) start.end_id = e.id;
  }
  if (events.cursors.length === 0 && (!events.camera || events.camera === e.camera)) {
    events.shown.unshift(e);
    if (events.shown.length > PAGE) {
      events.shown.length = PAGE;
      events.older = true;
    }
  }
  renderEvents();
}

async function listenEvents() {
  await loadEvents();
  const source = new EventSource(`api/events/stream?since=${lastEventId}`);
  source.addEventListener("action", (message) => newEvent(JSON.parse(message.data)));
}

$("#events-older").addEventListener("click", () => {
  const oldest = events.shown.at(-1);
  if (!oldest) return;
  events.cursors.push(oldest.id);
  loadEvents();
});
$("#events-newer").addEventListener("click", () => {
  events.cursors.pop();
  loadEvents();
});
$("#events-camera").addEventListener("change", (change) => {
  events.camera = change.target.value;
  events.cursors = [];
  loadEvents();
});

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
