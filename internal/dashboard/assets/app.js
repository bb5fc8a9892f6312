// pinhole dashboard: renders each snapshot of /api/events (one a second)
// into the page. Every value is set as text, never as markup.
"use strict";

const history = new Map(); // key → the last rates (bytes a second, both ways)
const drawn = new Set(); // the keys the snapshot being rendered has
const keep = 60;
let paused = false;
let last = null;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

function size(n) {
  if (n < 1024) return n + " B";
  const units = "KMGTP";
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < units.length - 1);
  return n.toFixed(1) + " " + units[i] + "iB";
}

function age(t, now) {
  if (!t || t.startsWith("0001-")) return "-";
  let s = Math.max(0, Math.round((Date.parse(now) - Date.parse(t)) / 1000));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  if (s < 172800) return Math.floor(s / 3600) + "h" + String(Math.floor(s / 60) % 60).padStart(2, "0") + "m";
  return Math.floor(s / 86400) + "d" + String(Math.floor(s / 3600) % 24).padStart(2, "0") + "h";
}

// spark records c's rate under key and returns its sparkline.
function spark(key, c) {
  drawn.add(key);
  let h = history.get(key);
  if (!h) { h = []; history.set(key, h); }
  h.push(c.rate_to_target + c.rate_from_target);
  if (h.length > keep) h.shift();
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 " + (keep - 1) + " 20");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  const now = h[h.length - 1];
  svg.setAttribute("aria-label", size(Math.round(now)) + "/s now, the last " + h.length + " seconds drawn");
  const peak = Math.max(1, ...h);
  const pts = h.map((v, i) => (keep - h.length + i) + "," + (19 - 18 * v / peak).toFixed(1));
  const base = document.createElementNS(ns, "line");
  base.setAttribute("class", "base");
  base.setAttribute("x1", "0"); base.setAttribute("x2", String(keep - 1));
  base.setAttribute("y1", "19.5"); base.setAttribute("y2", "19.5");
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts.join(" "));
  svg.append(base, line);
  return svg;
}

// fp shows a key's fingerprint short, the whole of it in its title.
function fp(key) {
  if (!key || !key.startsWith("SHA256:") || key.length <= 20) return el("span", { class: "mono" }, key || "-");
  return el("span", { class: "mono", title: key }, key.slice(0, 19) + "…");
}

function counterCells(c) {
  return [
    el("td", { class: "num streams" }, c.streams_open + " / " + c.streams_total + (c.streams_refused ? ", " + c.streams_refused + " refused" : "")),
    el("td", { class: "num to", "data-bytes": c.bytes_to_target }, size(c.bytes_to_target)),
    el("td", { class: "num from", "data-bytes": c.bytes_from_target }, size(c.bytes_from_target)),
  ];
}

function rateCell(key, c) {
  return el("td", { class: "rate", "data-rate": Math.round(c.rate_to_target + c.rate_from_target) },
    el("span", { class: "rate" }, spark(key, c), el("span", {}, size(Math.round(c.rate_to_target + c.rate_from_target)) + "/s")));
}

function fill(tbody, rows, cols, empty) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: cols, class: "empty" }, empty))]));
}

function renderServer(s) {
  const sessions = [], listeners = [];
  for (const ss of s.sessions) {
    const key = "s " + ss.source;
    const fwds = ss.listeners.map(l => l.url || l.addr).join(", ") || "-";
    sessions.push(el("tr", { "data-key": key },
      el("td", {}, el("span", { class: "who" }, (ss.comment || "no comment") + " (" + ss.user + ")"), fp(ss.key)),
      el("td", { class: "mono" }, ss.source),
      el("td", { title: ss.since }, age(ss.since, s.time)),
      el("td", { class: "mono" }, fwds),
      ...counterCells(ss),
      rateCell(key, ss)));
    for (const l of ss.listeners) {
      listeners.push(el("tr", { "data-key": "l " + l.addr },
        el("td", { class: "mono" }, l.addr + "/" + l.proto),
        el("td", { class: "mono" }, l.requested),
        el("td", {}, l.url ? el("a", { href: l.url }, l.url) : (l.name || "-")),
        el("td", {}, ss.comment || fp(ss.key)),
        el("td", { title: l.since }, age(l.since, s.time))));
    }
  }
  fill(document.querySelector("#sessions tbody"), sessions, 8, "no sessions");
  fill(document.querySelector("#listeners tbody"), listeners, 5, "no remote forwards");
}

function renderClient(s) {
  const rows = [];
  for (const t of s.tunnels) {
    const key = "t " + t.name;
    rows.push(el("tr", { class: "tunnel", "data-key": key },
      el("th", { scope: "row" }, t.name),
      el("td", { class: "mono" }, t.server || "-"),
      el("td", { class: "state-" + t.state }, t.state),
      el("td", { title: t.since }, age(t.since, s.time)),
      ...counterCells(t),
      rateCell(key, t),
      el("td", { class: "error" }, t.last_error || "")));
    for (const f of t.forwards) {
      const fk = "f " + t.name + " " + f.forward;
      rows.push(el("tr", { class: "forward", "data-key": fk },
        el("td", { class: "mono" }, f.forward),
        el("td", { class: "mono" }, f.url || f.addr || "-"),
        el("td", { class: "state-" + f.state }, f.state),
        el("td", { title: f.since }, age(f.since, s.time)),
        ...counterCells(f),
        rateCell(fk, f),
        el("td", { class: "error" }, f.last_error || "")));
    }
  }
  fill(document.querySelector("#tunnels tbody"), rows, 9, "no tunnels");
}

function render(s) {
  last = s;
  drawn.clear();
  const server = s.role === "server";
  document.getElementById("title").textContent = server ? "pinhole server" : "pinhole client";
  document.title = (server ? "pinhole server" : "pinhole client") + " — " + size(Math.round(s.totals.rate_to_target + s.totals.rate_from_target)) + "/s";
  document.getElementById("about").textContent = "version " + s.version + ", pid " + s.pid + ", up " + age(s.started, s.time);
  document.getElementById("server").hidden = !server;
  document.getElementById("client").hidden = server;
  const t = s.totals;
  const items = [
    ["To targets", size(t.bytes_to_target)], ["From targets", size(t.bytes_from_target)],
    ["Rate", size(Math.round(t.rate_to_target + t.rate_from_target)) + "/s"],
    ["Streams open", t.streams_open], ["Streams in all", t.streams_total], ["Refused", t.streams_refused],
    [server ? "Sessions" : "Tunnels", server ? s.sessions.length : s.tunnels.length],
  ];
  const dl = document.getElementById("totals");
  dl.replaceChildren(...items.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
  dl.append(el("div", { class: "wide" }, el("dt", {}, "Last minute"), el("dd", {}, spark("total", t))));
  if (server) renderServer(s); else renderClient(s);
  // A session's key is its source address, new with each connection:
  // the history of one that is gone goes with it.
  for (const k of history.keys()) if (!drawn.has(k)) history.delete(k);
  const events = s.events.slice().reverse().map(e => el("tr", { class: "kind-" + e.kind, "data-seq": e.seq },
    el("td", { title: e.time }, age(e.time, s.time) + " ago"),
    el("td", {}, e.kind === "auth" ? "failed login" : "refused"),
    el("td", { class: "reason" }, e.reason + (e.repeats ? " ×" + (e.repeats + 1) : "")),
    el("td", {}, fp(e.tunnel)),
    el("td", { class: "mono" }, e.forward || "-"),
    el("td", { class: "mono peer" }, e.peer || "-"),
    el("td", { class: "error" }, e.detail || "")));
  fill(document.querySelector("#refusals tbody"), events, 7, "nothing refused");
  const counts = Object.entries(s.counts).filter(([, n]) => n > 0).map(([r, n]) => r + " " + n);
  document.getElementById("counts").textContent = counts.length ? "Since the start: " + counts.join(", ") : "Nothing refused since the start.";
}

function setLive(on, text) {
  const live = document.getElementById("live");
  live.className = "live " + (on ? "on" : "off");
  live.textContent = text;
}

function start() {
  document.getElementById("pause").addEventListener("click", e => {
    paused = !paused;
    e.target.setAttribute("aria-pressed", String(paused));
    e.target.textContent = paused ? "Resume" : "Pause";
    if (!paused && last) render(last);
  });
  fetch("api/snapshot").then(r => r.json()).then(s => { if (!last) render(s); }).catch(() => {});
  const es = new EventSource("api/events");
  es.addEventListener("snapshot", ev => {
    setLive(true, "live");
    const s = JSON.parse(ev.data);
    if (paused) { last = s; return; }
    render(s);
  });
  es.onerror = () => setLive(false, "disconnected: retrying");
}

start();
