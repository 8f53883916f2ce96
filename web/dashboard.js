// firehose dashboard: polls the REST API every 2 s (conditional requests, so unchanged answers are
// 304s), holds one live SSE stream (the feed) and one WebSocket subscription to the derived events
// (builder.broken ... test.flaky, the last 24 h and then live). Plain JS, no dependencies, served
// by the broker itself.
"use strict";

const REFRESH_MS = 2000;
const FEED_MAX = 60;
const RESULTS = ["success", "warnings", "failure", "skipped", "exception", "retry", "cancelled"];
const TYPES = ["change.new", "buildrequest.new", "buildrequest.claimed", "buildrequest.unclaimed",
  "buildrequest.complete", "build.started", "build.updated", "build.finished", "step.started",
  "step.finished", "log.new", "log.finished", "log.chunk", "property.set", "worker.connected",
  "worker.disconnected", "master.started", "master.stopped"];

const DERIVED = ["builder.broken", "builder.fixed", "lkgr.advanced", "request.stale", "test.flaky"];
const DERIVED_MAX = 40;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let token = params.get("token") || localStorage.getItem("firehose.token") || "";
let matrixKey = params.get("branch") || "";
let branches = [];      // [{branch, repository}], newest activity first
let source = null;
let derivedWs = null;
let derivedCursor = null;  // resume point of the derived subscription across reconnects

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function dur(s) {
  if (s == null || isNaN(s)) return "–";
  s = Math.max(0, Math.round(s));
  if (s < 90) return s + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function shortRepo(r) { return (r || "").replace(/^https?:\/\//, "").replace(/\.git$/, ""); }
function shortRev(r) { return r ? r.slice(0, 10) : "–"; }

async function api(path) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const r = await fetch(path, { headers, cache: "no-cache" });
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { const j = await r.json(); msg = j.message || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r.json();
}

function setRows(tableId, rows, empty) {
  const body = $(tableId).tBodies[0];
  body.innerHTML = rows.length ? rows.join("") : `<tr><td colspan="4" class="muted">${esc(empty)}</td></tr>`;
}

async function refreshPending() {
  const j = await api("/api/v1/pending?limit=50");
  $("n-pending").textContent = j.total ?? j.pending.length;
  $("pending-note").textContent = j.total > j.pending.length ? `(oldest ${j.pending.length} of ${j.total})` : "";
  setRows("pending", j.pending.map((p) =>
    `<tr><td title="${esc(p.reason)}">${esc(p.builder)}</td><td>${esc(p.branch)}</td><td>${esc(p.owner || "–")}</td>` +
    `<td class="num">${dur(p.waiting_s)}</td></tr>`), "nothing waiting");
  showAsOf(j.as_of);
}

// Builder state (GET /api/v1/builders/state): broken ones first, each with how long it has been
// so and the build that made it so.
async function refreshStates() {
  const j = await api("/api/v1/builders/state?limit=500");
  const now = Date.now() / 1000;
  const broken = j.states.filter((s) => s.state === "broken");
  const rows = broken.concat(j.states.filter((s) => s.state !== "broken")).slice(0, 40);
  $("state-note").textContent = `(${broken.length} broken, ${j.states.length - broken.length} green` +
    (j.total > j.states.length ? ` of ${j.total})` : ")");
  setRows("states", rows.map((s) => {
    const b = s.since_build || {};
    const since = s.since ? new Date(s.since * 1000).toISOString().replace(".000", "") : "";
    return `<tr data-state="${esc(s.state)}"><td>${esc(s.builder)}</td><td>${esc(s.branch)}</td>` +
      `<td><span class="pill ${s.state === "broken" ? "bad" : "ok"}">${esc(s.state)}</span> ` +
      `<span class="muted" title="${esc(shortRev(b.revision))}">#${esc(b.number ?? b.buildid)} ${esc(b.owner || "")}</span></td>` +
      `<td class="num" title="since ${esc(since)}">${s.since ? dur(now - s.since) : "–"}</td></tr>`;
  }), "no finished builds yet");
}

// Flaky tests (GET /api/v1/flaky): tests that passed and failed on one revision, most flaky first.
async function refreshFlaky() {
  const j = await api("/api/v1/flaky?limit=20");
  $("flaky-note").textContent = j.total ? `(${j.flaky.length} of ${j.total})` : "";
  const rows = j.flaky.map((f) =>
    `<tr data-test="${esc(f.name)}"><td title="${esc(f.name)}">${esc(f.name.length > 48 ? "…" + f.name.slice(-47) : f.name)}</td>` +
    `<td>${esc(f.builder)}</td><td title="${esc(f.last_branch)}"><code>${esc(shortRev(f.last_revision))}</code></td>` +
    `<td class="num" title="on ${esc(f.revisions)} revision(s)">${esc(f.passed)} / ${esc(f.failed)}</td></tr>`);
  setRows("flaky", rows, "no flaky tests");
}

async function refreshRunning() {
  const j = await api("/api/v1/running?limit=50");
  $("n-running").textContent = j.total ?? j.running.length;
  $("running-note").textContent = j.total > j.running.length ? `(${j.running.length} of ${j.total})` : "";
  setRows("running", j.running.map((b) =>
    `<tr><td>${esc(b.builder)} #${esc(b.number)}</td><td>${esc(b.branch)}</td>` +
    `<td>${esc(b.current_step ? b.current_step.name : b.state_string || "starting")}</td>` +
    `<td class="num">${dur(b.elapsed_s)}</td></tr>`), "nothing running");
}

async function refreshBranches() {
  // The branches worth a line: those of recent builds, try excluded (no one waits for try's LKGR).
  const j = await api("/api/v1/builds?limit=200");
  const seen = new Map();
  for (const b of j.builds) {
    const key = b.branch + "\u0000" + b.repository;
    if (!seen.has(key) && b.branch !== "try") seen.set(key, { branch: b.branch, repository: b.repository });
  }
  branches = [...seen.values()].slice(0, 8);
  const sel = $("matrix-branch");
  const keys = branches.map((b) => b.branch + " " + b.repository);
  if (!matrixKey || !keys.includes(matrixKey)) matrixKey = keys[0] || "";
  if (sel.dataset.keys !== keys.join("|")) {
    sel.innerHTML = branches.map((b, i) =>
      `<option value="${esc(keys[i])}">${esc(b.branch)} (${esc(shortRepo(b.repository))})</option>`).join("");
    sel.dataset.keys = keys.join("|");
  }
  sel.value = matrixKey;
}

async function refreshLastGreen() {
  const rows = await Promise.all(branches.map(async (b) => {
    const q = `branch=${encodeURIComponent(b.branch)}&repository=${encodeURIComponent(b.repository)}`;
    try {
      const g = await api("/api/v1/last-green?" + q);
      const why = (g.builders || []).map((x) => `${x.builder}: ${x.good_by === "green_build" ? "green build" : "between green builds"}`).join("\n");
      return `<tr><td>${esc(b.branch)}</td><td>${esc(shortRepo(b.repository))}</td>` +
        (g.revision ? `<td class="r0" title="${esc(g.revision)}">${esc(shortRev(g.revision))}</td>`
                    : `<td class="muted" title="${esc(g.reason)}">none</td>`) +
        `<td title="${esc(why || g.reason)}">${esc((g.required_builders || []).length)} required</td></tr>`;
    } catch (e) {
      return `<tr><td>${esc(b.branch)}</td><td colspan="3" class="r2">${esc(e.message)}</td></tr>`;
    }
  }));
  setRows("lastgreen", rows, "no finished builds yet");
}

async function refreshMatrix() {
  const b = branches.find((x) => x.branch + " " + x.repository === matrixKey);
  if (!b) { $("matrix").innerHTML = '<p class="muted">no branch yet</p>'; return; }
  const j = await api(`/api/v1/revisions?limit=15&branch=${encodeURIComponent(b.branch)}&repository=${encodeURIComponent(b.repository)}`);
  const head = "<tr><th>revision</th><th>author</th>" + j.builders.map((n) => `<th class="b">${esc(n)}</th>`).join("") + "</tr>";
  const rows = j.revisions.map((r) => {
    const cells = j.builders.map((n) => {
      const x = r.builds[n];
      if (!x) return "<td></td>";
      const cls = x.finished ? "r" + x.results : "run";
      const tip = `${n} #${x.number}: ${x.finished ? RESULTS[x.results] : "running"}`;
      return `<td><span class="cell ${cls}" title="${esc(tip)}"></span></td>`;
    }).join("");
    return `<tr><td title="${esc(r.comments)}"><code>${esc(shortRev(r.revision))}</code></td><td>${esc((r.author || "").replace(/ <.*/, ""))}</td>${cells}</tr>`;
  }).join("");
  $("matrix").innerHTML = `<table>${head}${rows}</table>`;
}

// A polyline through the points that have a value, and a dot on each (one hour alone is a dot).
function svgLine(points, color, x, y) {
  const pts = points.filter((p) => p[1] != null).map((p) => [x(p[0]).toFixed(1), y(p[1]).toFixed(1)]);
  if (!pts.length) return "";
  return `<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map((p) => p.join(",")).join(" ")}"/>` +
    pts.map((p) => `<circle cx="${p[0]}" cy="${p[1]}" r="2.5" fill="${color}"/>`).join("");
}

async function refreshTrend() {
  const j = await api("/api/v1/stats/builds?window=24h&bucket=1h");
  const bs = j.buckets;
  let builds = 0, bad = 0, good = 0;
  for (const k of bs) {
    builds += k.builds;
    bad += k.results.failure + k.results.exception;
    good += k.results.success + k.results.warnings;
  }
  $("n-builds").textContent = builds;
  $("n-failrate").textContent = bad + good ? Math.round(100 * bad / (bad + good)) + " %" : "–";
  const waits = bs.filter((k) => k.queue_wait_s).map((k) => k.queue_wait_s.p50).sort((a, b) => a - b);
  $("n-wait").textContent = waits.length ? dur(waits[Math.floor(waits.length / 2)]) : "–";
  const W = 480, H = 180, L = 40, B = 20;
  const d = bs.map((k, i) => [i, k.duration_s ? k.duration_s.p50 : null]);
  const w = bs.map((k, i) => [i, k.queue_wait_s ? k.queue_wait_s.p50 : null]);
  const max = Math.max(1, ...d.concat(w).map((p) => p[1] || 0));
  const x = (i) => L + (W - L - 8) * i / Math.max(1, bs.length - 1);
  const y = (v) => H - B - (H - B - 10) * v / max;
  $("chart-trend").innerHTML =
    `<line x1="${L}" y1="${H - B}" x2="${W}" y2="${H - B}" stroke="#ccc"/>` +
    `<text x="2" y="14">${esc(dur(max))}</text><text x="2" y="${H - B}">0</text>` +
    `<text x="${L}" y="${H - 4}">${esc((bs[0] || {}).start?.slice(11, 16) || "")}</text>` +
    `<text x="${W - 40}" y="${H - 4}">now</text>` +
    svgLine(d, "#2f7fd8", x, y) + svgLine(w, "#d9a400", x, y) +
    `<text x="${L + 10}" y="14" style="fill:#2f7fd8">build duration</text>` +
    `<text x="${L + 110}" y="14" style="fill:#d9a400">queue wait</text>`;
}

async function refreshSteps() {
  const j = await api("/api/v1/stats/steps?window=24h&limit=8");
  const W = 480, rowH = 20, L = 150;
  const max = Math.max(1, ...j.steps.map((s) => s.p95_s));
  $("chart-steps").innerHTML = j.steps.map((s, i) => {
    const w = (W - L - 60) * s.p95_s / max;
    return `<text x="0" y="${i * rowH + 14}">${esc(s.name.slice(0, 24))}</text>` +
      `<rect x="${L}" y="${i * rowH + 4}" width="${w.toFixed(1)}" height="13" rx="2" fill="#8da9d8"/>` +
      `<text x="${L + w + 4}" y="${i * rowH + 14}">${esc(dur(s.p95_s))} (${s.count})</text>`;
  }).join("") || '<text x="0" y="14">no finished steps yet</text>';
}

function showAsOf(a) {
  if (!a) return;
  $("asof").textContent = `view v${a.version}, ${a.behind ? a.behind + " records behind" : "up to date"}` +
    (a.lag_ms != null ? `, lag ${a.lag_ms} ms` : "") +
    (a.records_lost ? `, ${a.records_lost} records lost (Kafka deleted them unread)` : "");
}

async function refreshReady() {
  const r = await fetch("/readyz", { cache: "no-store" });
  const degraded = r.ok && (await r.json().catch(() => ({}))).status === "degraded";
  $("ready").textContent = degraded ? "degraded: records lost" : r.ok ? "ready" : "not ready";
  $("ready").className = "pill " + (degraded ? "bad" : r.ok ? "ok" : "bad");
}

let refreshing = false;
async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    await refreshReady().catch(() => { $("ready").textContent = "broker unreachable"; $("ready").className = "pill bad"; });
    await Promise.all([refreshPending(), refreshRunning(), refreshStates(), refreshFlaky(), refreshBranches().then(() => Promise.all([refreshLastGreen(), refreshMatrix()])),
      refreshTrend(), refreshSteps()]);
  } catch (e) {
    $("asof").textContent = "error: " + e.message;
  } finally {
    refreshing = false;
  }
}

function describe(ev) {
  const d = ev.data || {};
  const bits = [];
  if (d.builder) bits.push(d.builder + (d.number != null && ev.type.startsWith("build.") ? " #" + d.number : ""));
  if (d.name && !d.builder) bits.push(d.name);
  if (ev.type.startsWith("step.")) bits.push(d.name);
  if (d.branch) bits.push(d.branch);
  if (d.results != null) bits.push(RESULTS[d.results]);
  if (d.state_string && ev.type === "build.updated") bits.push(d.state_string);
  if (ev.type === "change.new") bits.push(d.author, shortRev(d.revision));
  return bits.filter(Boolean).join(" · ");
}

function onEvent(msg) {
  let ev;
  try { ev = JSON.parse(msg.data); } catch (e) { return; }
  const li = document.createElement("li");
  li.className = "fresh";
  li.dataset.id = ev.id;
  li.dataset.type = ev.type;
  const cls = ev.data && ev.data.results != null ? "r" + ev.data.results : "";
  li.innerHTML = `<span class="t">${esc((ev.time || "").slice(11, 23))}</span><span class="ty ${cls}">${esc(ev.type)}</span>${esc(describe(ev))}`;
  const feed = $("feed");
  feed.insertBefore(li, feed.firstChild);
  setTimeout(() => li.classList.remove("fresh"), 50);
  while (feed.children.length > FEED_MAX) feed.removeChild(feed.lastChild);
  $("feed-note").textContent = "(newest first; log chunks hidden)";
}

function connect() {
  if (source) source.close();
  // Everything but log chunks, which would drown the feed. EventSource resumes with Last-Event-ID.
  const types = TYPES.filter((t) => t !== "log.chunk").join(",");
  let url = "/v1/events?from=latest&type=" + encodeURIComponent(types);
  if (token) url += "&access_token=" + encodeURIComponent(token);
  source = new EventSource(url);
  for (const t of TYPES) source.addEventListener(t, onEvent);
  source.addEventListener("open", () => { $("feed").dataset.live = "1"; $("feed-note").textContent = "(live)"; });
  source.addEventListener("error", () => { $("feed").dataset.live = "0"; $("feed-note").textContent = "(reconnecting…)"; });
}

// One line per derived event, in words: what broke or got fixed, where, and the evidence.
function describeDerived(ev) {
  const d = ev.data || {};
  const b = (r) => (r && (r.number ?? r.buildid)) != null ? "#" + (r.number ?? r.buildid) : "";
  switch (ev.type) {
    case "builder.broken": {
      const s = d.suspects || [];
      const who = s.slice(0, 3).map((x) => shortRev(x.revision) + (x.author ? " " + x.author.replace(/ <.*/, "") : ""));
      return [d.builder, d.branch, "build " + b(d.build), shortRev(d.revision),
        s.length ? "suspects " + who.join(", ") + (s.length > 3 ? ` and ${s.length - 3} more` : "") : ""];
    }
    case "builder.fixed":
      return [d.builder, d.branch, "fixed by " + b(d.build), "broken since " + b(d.broken_since)];
    case "lkgr.advanced":
      return [d.branch, (d.old_revision ? shortRev(d.old_revision) + " → " : "→ ") + shortRev(d.new_revision)];
    case "request.stale":
      return [d.builder, d.branch, "request " + d.buildrequestid, "waiting over " + dur(d.threshold_s)];
    case "test.flaky":
      return [d.test != null ? d.test : "(whole build)", d.builder, d.branch, shortRev(d.revision)];
    default:
      return [d.builder, d.branch];
  }
}

function onDerived(ev) {
  const feed = $("derived");
  if (feed.querySelector(`li[data-id="${CSS.escape(ev.id)}"]`)) return; // a resume may repeat one
  const li = document.createElement("li");
  li.className = "fresh";
  li.dataset.id = ev.id;
  li.dataset.type = ev.type;
  const cls = ev.type === "builder.broken" || ev.type === "test.flaky" ? "bad" : ev.type === "builder.fixed" ? "ok" : "";
  li.innerHTML = `<span class="t">${esc((ev.time || "").slice(5, 16).replace("T", " "))}</span>` +
    `<span class="ty ${cls}">${esc(ev.type)}</span>${esc(describeDerived(ev).filter(Boolean).join(" · "))}`;
  feed.insertBefore(li, feed.firstChild);
  setTimeout(() => li.classList.remove("fresh"), 50);
  while (feed.children.length > DERIVED_MAX) feed.removeChild(feed.lastChild);
}

// The derived events over the WebSocket protocol (docs/stream.md): one subscription with a type
// filter, from 24 h ago (then live); after a drop it resumes from the last cursor it saw.
function connectDerived() {
  if (derivedWs) { derivedWs.onclose = null; derivedWs.close(); }
  let url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/v1/stream";
  if (token) url += "?access_token=" + encodeURIComponent(token);
  const ws = new WebSocket(url, "firehose.v1");
  derivedWs = ws;
  ws.onopen = () => {
    const from = derivedCursor ? { cursor: derivedCursor } : { time: new Date(Date.now() - 86400e3).toISOString() };
    ws.send(JSON.stringify({ op: "subscribe", id: "derived", filter: { type: DERIVED }, from }));
  };
  ws.onmessage = (m) => {
    let msg;
    try { msg = JSON.parse(m.data); } catch (e) { return; }
    if (msg.op === "subscribed") {
      $("derived").dataset.live = "1";
      $("derived-note").textContent = "(newest first, live)";
    } else if (msg.op === "event" && msg.event) {
      derivedCursor = msg.cursor || derivedCursor;
      onDerived(msg.event);
    } else if (msg.op === "error") {
      $("derived-note").textContent = "(" + (msg.message || msg.code) + ")";
      if (derivedCursor) derivedCursor = null; // a cursor the broker no longer takes: start over
    }
  };
  ws.onclose = () => {
    $("derived").dataset.live = "0";
    $("derived-note").textContent = "(reconnecting…)";
    if (derivedWs === ws) setTimeout(connectDerived, 2000);
  };
}

$("token").value = token;
$("token").addEventListener("change", (e) => {
  token = e.target.value.trim();
  localStorage.setItem("firehose.token", token);
  connect();
  connectDerived();
  refresh();
});
$("matrix-branch").addEventListener("change", (e) => { matrixKey = e.target.value; refreshMatrix().catch(() => {}); });
connect();
connectDerived();
refresh();
setInterval(refresh, REFRESH_MS);
