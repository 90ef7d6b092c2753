// dashboard.js polls /metrics every second and keeps two minutes of
// history per plot: clients per state, drops by cause per second, and the
// p50 and p90 of reconnect time and heartbeat round trip.
"use strict";

const SPAN = 120 * 1000; // milliseconds of history kept and shown
const MIN_SPAN = 30 * 1000; // the time axis of a page opened a moment ago
const WINDOW = 10; // polls a quantile looks back over
const RATE_WINDOW = 5; // polls a rate looks back over
const STATES = ["connecting", "open", "closing", "closed"];
const STATE_COLORS = ["#d89614", "#2e9d4f", "#8b5cf6", "#d9453b"];
const QUANTILE_COLORS = ["#2563eb", "#db2777", "#0d9488"];
const PALETTE = ["#2563eb", "#d9453b", "#2e9d4f", "#d89614", "#8b5cf6", "#0d9488",
  "#db2777", "#65a30d", "#475569", "#ea580c", "#0891b2", "#a16207", "#7c3aed"];

const history = { states: new Map(), drops: new Map(), reconnect: new Map(), rtt: new Map() };
const snapshots = { reconnect: [], rtt: [], drops: [] };
let firstTime = 0;

function push(series, name, t, v) {
  if (!Number.isFinite(v)) return;
  if (!series.has(name)) series.set(name, []);
  const points = series.get(name);
  points.push([t, v]);
  while (points.length > 0 && points[0][0] < t - SPAN) points.shift();
}

// cause names a disconnect by what ended it and what the client did.
function cause(l) {
  const set = (v) => v !== undefined && v !== "" && v !== "0";
  let what = "network";
  if (set(l.http_response_status_code)) what = "HTTP " + l.http_response_status_code;
  else if (set(l.websocket_close_code)) what = l.websocket_close_code;
  return what + " → " + (l.resocket_action || "?");
}

function recordStates(samples, t) {
  const byState = prom.sumBy(samples, "resocket_client_state", (l) => l.resocket_state);
  for (const s of STATES) push(history.states, s, t, byState.get(s) || 0);
}

// recordDrops turns the disconnect counters into drops per second over
// the last RATE_WINDOW polls.
function recordDrops(samples, t) {
  const now = prom.sumBy(samples, "resocket_client_disconnects_total", cause);
  const snaps = snapshots.drops;
  snaps.push({ t, counts: now });
  if (snaps.length > RATE_WINDOW + 1) snaps.shift();
  if (snaps.length < 2) return;
  const then = snaps[0];
  const seconds = Math.max(0.001, (t - then.t) / 1000);
  for (const [k, n] of now) push(history.drops, k, t, Math.max(0, n - (then.counts.get(k) || 0)) / seconds);
}

// recordQuantiles plots p50 and p90 of the histogram base over the last
// WINDOW polls (the mean when it has no buckets), in seconds times scale.
function recordQuantiles(samples, t, key, base, scale) {
  const h = prom.histogram(samples, base);
  const snaps = snapshots[key];
  snaps.push(h);
  if (snaps.length > WINDOW + 1) snaps.shift();
  const recent = prom.since(h, snaps.length > 1 ? snaps[0] : null);
  if (recent.count <= 0) return;
  if (recent.buckets.length === 0) {
    push(history[key], "mean", t, (scale * recent.sum) / recent.count);
    return;
  }
  push(history[key], "p50", t, scale * prom.quantile(recent, 0.5));
  push(history[key], "p90", t, scale * prom.quantile(recent, 0.9));
}

function showStatus(samples, t) {
  const total = (name) => prom.sumBy(samples, name, () => "").get("") || 0;
  const open = prom.sumBy(samples, "resocket_client_state", (l) => l.resocket_state).get("open") || 0;
  const status = document.getElementById("status");
  status.className = "";
  status.textContent = `${total("resocket_client_state")} clients, ${open} open · ` +
    `${total("resocket_client_disconnects_total")} drops, ` +
    `${total("resocket_client_attempts_total")} attempts · updated ${new Date(t).toLocaleTimeString()}`;
}

// render draws every plot, over the time the page has been open (at
// least MIN_SPAN, at most SPAN).
function render(now) {
  firstTime = firstTime || now;
  const span = Math.min(SPAN, Math.max(MIN_SPAN, now - firstTime));
  const draw = (id, colors) => {
    const series = [...history[id].entries()].map(([name, points]) => ({ name, points }));
    plot.draw(document.getElementById(id), series, colors, now, span);
  };
  draw("states", STATE_COLORS);
  draw("drops", PALETTE);
  draw("reconnect", QUANTILE_COLORS);
  draw("rtt", QUANTILE_COLORS);
}

// poll reads /metrics once. A server that is gone shows in the status
// line; a page that cannot read what it got is a script error.
async function poll() {
  let text;
  try {
    const res = await fetch("metrics", { cache: "no-store" });
    if (!res.ok) throw new Error("HTTP " + res.status);
    text = await res.text();
  } catch (err) {
    const status = document.getElementById("status");
    status.className = "down";
    status.textContent = "cannot read /metrics: " + err.message;
    return;
  }
  const samples = prom.parse(text);
  const t = Date.now();
  recordStates(samples, t);
  recordDrops(samples, t);
  recordQuantiles(samples, t, "reconnect", "resocket_client_reconnect_duration_seconds", 1);
  recordQuantiles(samples, t, "rtt", "resocket_client_heartbeat_rtt_seconds", 1000);
  render(t);
  showStatus(samples, t);
}

function tick() {
  poll().finally(() => setTimeout(tick, 1000));
}

tick();
