// The plivo-dlr dashboard: a message table kept live by the /ws stream,
// statistics from /api/stats, and message details from /api/messages/{uuid}.
import { describeError } from "./errors.js";

const $ = (sel, root = document) => root.querySelector(sel);
const tbody = $("#messages tbody");


const state = {
  cursor: null,          // highest stream cursor seen; null before the first "ready"
  applied: new Map(),    // message_uuid -> cursor of the state shown
  next: "",              // next_cursor of the message list
  loading: false,
  filters: { status: "", q: "", since: "" },
  sinceTime: null,       // Date for the "since" filter, for live rows
  detailUUID: null,
  backoff: 500,
};

// ---------- formatting ----------
function fmtTime(s) {
  if (!s) return "";
  const d = new Date(s);
  if (isNaN(d)) return s;
  return d.toLocaleString(undefined, { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}
function statusBadge(s) { return el("span", { class: "status " + s, text: s }); }
function errorText(code) {
  if (!code || code === "000") return "";
  const d = describeError(code);
  return d ? `${code} – ${d}` : code;
}

// ---------- table ----------
function rowFor(m) {
  const tr = el("tr", { "data-uuid": m.message_uuid, "data-status": m.status, "data-first-seen": m.first_seen });
  tr.append(
    el("td", { class: "wide", text: fmtTime(m.first_seen) }),
    el("td", { class: "status-cell" }, statusBadge(m.status)),
    el("td", { text: m.to || "" }),
    el("td", { class: "wide", text: m.from || "" }),
    el("td", { class: "wide", text: m.error_code && m.error_code !== "000" ? m.error_code : "", title: errorText(m.error_code) }),
    el("td", { class: "wide uuid", text: m.message_uuid }),
  );
  return tr;
}

function matchesFilters(m) {
  const f = state.filters;
  if (f.status) {
    const terminal = ["delivered", "undelivered", "failed", "rejected", "read"].includes(m.status);
    if (f.status === "pending" ? terminal : m.status !== f.status) return false;
  }
  if (state.sinceTime && new Date(m.first_seen) < state.sinceTime) return false;
  if (f.q) {
    const q = f.q.toLowerCase();
    const digits = q.replace(/[^0-9]/g, "");
    const num = (s) => (s || "").replace(/[^0-9]/g, "");
    const uuidHit = m.message_uuid.toLowerCase().startsWith(q);
    const numHit = digits !== "" && (num(m.to).includes(digits) || num(m.from).includes(digits));
    if (!uuidHit && !numHit) return false;
  }
  return true;
}

// upsert shows a message's new state: in place when listed, else at its
// place by first_seen (newest first). Returns the row or null.
function upsert(m, mark) {
  let tr = tbody.querySelector(`tr[data-uuid="${CSS.escape(m.message_uuid)}"]`);
  if (!matchesFilters(m)) {
    if (tr) tr.remove();
    return null;
  }
  const fresh = rowFor(m);
  if (tr) {
    tr.replaceWith(fresh);
  } else {
    // Rows are newest first; a row older than everything shown belongs to a
    // later page, which "load more" will bring.
    let before = null;
    const t = new Date(m.first_seen);
    for (const r of tbody.rows) {
      if (new Date(r.dataset.firstSeen) <= t) { before = r; break; }
    }
    if (!before && state.next) return null;
    tbody.insertBefore(fresh, before);
  }
  if (mark) {
    fresh.classList.add("changed");
  }
  return fresh;
}

async function api(path, opts) {
  const res = await fetch(path, { credentials: "same-origin", ...opts });
  if (res.status === 401) {
    location.href = "/login";
    throw new Error("logged out");
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
  return body;
}

async function loadPage(reset) {
  if (state.loading) return;
  if (!reset && !state.next) return;
  state.loading = true;
  $("#list-state").textContent = "loading…";
  try {
    const p = new URLSearchParams({ limit: "50" });
    for (const [k, v] of Object.entries(state.filters)) if (v) p.set(k, v);
    if (!reset) p.set("cursor", state.next);
    const body = await api("/api/messages?" + p);
    if (reset) tbody.replaceChildren();
    for (const m of body.messages) {
      if (!tbody.querySelector(`tr[data-uuid="${CSS.escape(m.message_uuid)}"]`)) tbody.append(rowFor(m));
    }
    state.next = body.next_cursor;
    $("#more-btn").hidden = !state.next;
    const filtered = Object.values(state.filters).some(Boolean);
    $("#list-state").textContent = tbody.rows.length ? "" : filtered ? "No message matches these filters." : "No messages yet.";
  } catch (e) {
    $("#list-state").textContent = "Could not load messages: " + e.message;
  } finally {
    state.loading = false;
  }
}

$("#filters").addEventListener("submit", (e) => {
  e.preventDefault();
  const fd = new FormData(e.target);
  state.filters = { status: fd.get("status"), q: fd.get("q").trim(), since: fd.get("since") };
  const hours = { "1h": 1, "24h": 24, "168h": 168 }[state.filters.since];
  state.sinceTime = hours ? new Date(Date.now() - hours * 3600e3) : null;
  loadPage(true);
});
$("#filters").addEventListener("change", () => $("#filters").requestSubmit());
$("#more-btn").addEventListener("click", () => loadPage(false));
new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting)) loadPage(false);
}).observe($("#more"));

// ---------- detail ----------
tbody.addEventListener("click", (e) => {
  const tr = e.target.closest("tr[data-uuid]");
  if (tr) openDetail(tr.dataset.uuid);
});

async function openDetail(uuid) {
  state.detailUUID = uuid;
  const dlg = $("#detail");
  let body;
  try {
    body = await api("/api/messages/" + encodeURIComponent(uuid));
  } catch (e) {
    $("#detail-body").replaceChildren(el("p", { text: "Could not load: " + e.message }));
    if (!dlg.open) dlg.showModal();
    return;
  }
  const m = body.message;
  const dl = el("dl", { class: "fields" });
  const add = (k, v) => { if (v !== "" && v != null) dl.append(el("dt", { text: k }), el("dd", { text: String(v) })); };
  add("Message UUID", m.message_uuid);
  add("Status", m.status);
  add("Error", errorText(m.error_code));
  add("From", m.from); add("To", m.to); add("Type", m.type);
  add("Units", m.units || "");
  add("Rate", m.total_rate); add("Amount", m.total_amount);
  add("MCC / MNC", [m.mcc, m.mnc].filter(Boolean).join(" / "));
  add("Parent", m.parent_message_uuid !== m.message_uuid ? m.parent_message_uuid : "");
  add("Part", m.part_info);
  add("Message time", fmtTime(m.message_time)); add("Queued", fmtTime(m.queued_time));
  add("Sent", fmtTime(m.sent_time)); add("Delivery report", fmtTime(m.delivery_report_time));
  add("First seen", fmtTime(m.first_seen)); add("Last seen", fmtTime(m.last_seen));
  if (m.text) add("Text", m.text);
  const ol = el("ol", { class: "events" });
  for (const ev of body.events) {
    const p = ev.payload || {};
    const plivoTimes = ["MessageTime", "QueuedTime", "SentTime", "DeliveryReportTime"]
      .filter((k) => p[k]).map((k) => `${k} ${p[k]}`).join(" · ");
    ol.append(el("li", { "data-cursor": ev.cursor },
      el("div", {}, statusBadge(ev.status), ` #${ev.cursor} via ${ev.source}, received ${fmtTime(ev.received_at)}`,
        ev.sequence ? ` · sequence ${ev.sequence}` : ""),
      plivoTimes ? el("div", { class: "plivo-times", text: "Plivo: " + plivoTimes }) : null,
      ev.error_code && ev.error_code !== "000" ? el("div", { class: "event-error", text: "Error " + errorText(ev.error_code) }) : null,
      el("details", {}, el("summary", { text: "Raw payload" }), el("pre", { text: JSON.stringify(p, null, 2) })),
    ));
  }
  $("#detail-body").replaceChildren(el("h2", { text: "Message" }), dl, el("h3", { text: `Events (${body.events.length})` }), ol);
  if (!dlg.open) dlg.showModal();
}
$("#detail").addEventListener("close", () => { state.detailUUID = null; });

// ---------- live stream ----------
function setConn(s, text) {
  const c = $("#conn");
  c.dataset.state = s;
  c.textContent = text || s;
}

let firstReady = true;
let refreshTimer = null;

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  let url = `${proto}//${location.host}/ws`;
  if (state.cursor != null) url += "?since=" + state.cursor;
  const ws = new WebSocket(url);
  ws.onmessage = (e) => {
    let f;
    try { f = JSON.parse(e.data); } catch { return; }
    if (f.type === "ready") {
      state.cursor = Math.max(state.cursor ?? 0, f.cursor);
      state.backoff = 500;
      setConn("live");
      if (firstReady) {
        // Subscribed before listing: nothing between the list and the
        // stream is missed.
        firstReady = false;
        loadPage(true);
      }
      scheduleStats();
      return;
    }
    if (f.type !== "status_update" || !f.message) return;
    state.cursor = Math.max(state.cursor ?? 0, f.cursor);
    const m = f.message;
    const prev = state.applied.get(m.message_uuid);
    if (prev != null && prev >= f.cursor) return;
    state.applied.set(m.message_uuid, f.cursor);
    if (state.applied.size > 50000) state.applied.clear();
    upsert(m, true);
    if (state.detailUUID === m.message_uuid) openDetail(m.message_uuid);
    scheduleStats();
  };
  ws.onclose = (e) => {
    const wait = state.backoff * (0.75 + Math.random() / 2);
    state.backoff = Math.min(state.backoff * 2, 15000);
    setConn("reconnecting", e.code === 4000 ? "catching up…" : `reconnecting in ${Math.ceil(wait / 1000)} s…`);
    $("#conn").dataset.retryMs = String(Math.round(wait));
    setTimeout(async () => {
      // A refused upgrade looks like any close: check we are still logged in.
      try { await api("/api/config"); } catch { /* offline, or sent to /login */ }
      connect();
    }, wait);
  };
}

// ---------- stats ----------
function scheduleStats() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; loadStats(); }, 1000);
}

async function loadStats() {
  let st;
  try { st = await api("/api/stats?window=" + $("#window").value); } catch { return; }
  const ul = $("#counts");
  ul.replaceChildren(el("li", {}, "total", el("b", { text: String(st.total ?? 0) })));
  for (const [k, v] of Object.entries(st.counts).sort()) ul.append(el("li", {}, statusBadge(k), el("b", { text: String(v) })));
  // A rate is only meaningful once some message has a final status.
  const final = ["delivered", "read", "undelivered", "failed", "rejected"].reduce((n, k) => n + (st.counts[k] || 0), 0);
  $("#rate").textContent = final ? `${(st.delivery_rate * 100).toFixed(1)}% delivered` : "– delivered";
  const t = st.time_to_deliver;
  $("#ttd").textContent = t.p50_seconds != null ? `time to deliver p50 ${t.p50_seconds.toFixed(1)} s · p90 ${t.p90_seconds.toFixed(1)} s` : "";
  $("#top-errors").textContent = st.top_error_codes.length
    ? "Top errors: " + st.top_error_codes.map((e) => `${e.code} (${e.count}) ${describeError(e.code)}`).join("; ")
    : "";
  drawChart(st.series);
}
$("#window").addEventListener("change", loadStats);
setInterval(loadStats, 30000);

function drawChart(series) {
  const cv = $("#chart");
  const dpr = window.devicePixelRatio || 1;
  const w = cv.clientWidth || 720, h = cv.clientHeight || 160;
  cv.width = w * dpr; cv.height = h * dpr;
  const ctx = cv.getContext("2d");
  ctx.scale(dpr, dpr);
  ctx.clearRect(0, 0, w, h);
  const pts = (series && series.points) || [];
  if (!pts.length) return;
  const css = getComputedStyle(document.documentElement);
  const keys = ["delivered", "failed", "undelivered"];
  const max = Math.max(1, ...pts.map((p) => Math.max(...keys.map((k) => p.counts[k] || 0))));
  const padL = 36, padB = 18, plotW = w - padL - 4, plotH = h - padB - 6;
  ctx.strokeStyle = "#e2e5ea"; ctx.fillStyle = "#667085"; ctx.font = "11px system-ui";
  ctx.beginPath(); ctx.moveTo(padL, 6); ctx.lineTo(padL, 6 + plotH); ctx.lineTo(padL + plotW, 6 + plotH); ctx.stroke();
  ctx.fillText(String(max), 2, 14); ctx.fillText("0", 2, 6 + plotH);
  const x = (i) => padL + (pts.length === 1 ? plotW / 2 : (i * plotW) / (pts.length - 1));
  const y = (v) => 6 + plotH - (v / max) * plotH;
  const label = (i) => new Date(pts[i].t).toLocaleString(undefined, { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
  ctx.fillText(label(0), padL, h - 4);
  const last = label(pts.length - 1);
  ctx.fillText(last, padL + plotW - ctx.measureText(last).width, h - 4);
  for (const k of keys) {
    ctx.strokeStyle = css.getPropertyValue("--" + k).trim() || "#000";
    ctx.lineWidth = 2;
    ctx.beginPath();
    pts.forEach((p, i) => (i ? ctx.lineTo(x(i), y(p.counts[k] || 0)) : ctx.moveTo(x(i), y(p.counts[k] || 0))));
    ctx.stroke();
  }
}

// ---------- sending ----------
async function setupSend() {
  let cfg;
  try { cfg = await api("/api/config"); } catch { return; }
  if (!cfg.sending_enabled) return;
  $("#send").hidden = false;
  $("#send-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const fd = new FormData(e.target);
    const media = fd.get("media_urls").split(/\s+/).filter(Boolean);
    const req = { to: fd.get("to").trim(), text: fd.get("text") };
    if (media.length) req.media_urls = media;
    const out = $("#send-result");
    out.textContent = "sending…";
    try {
      const body = await api("/api/messages", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(req),
      });
      out.textContent = "queued: " + body.message_uuids.join(", ");
      e.target.reset();
    } catch (err) {
      out.textContent = "not sent: " + err.message;
    }
  });
}

// ---------- problems ----------
// The banner shows GET /api/health: refused callbacks (with the URL that
// would verify), no token, the sandbox, and whatever other parts report.
async function loadHealth() {
  let h;
  try { h = await api("/api/health"); } catch { return; }
  const box = $("#problems");
  box.replaceChildren(...h.problems.map((p) => el("p", { class: "problem " + p.kind, "data-kind": p.kind },
    el("strong", { text: p.detail }), p.hint ? el("span", { class: "hint", text: " " + p.hint }) : null)));
  box.hidden = h.problems.length === 0;
}
setInterval(loadHealth, 10000);
loadHealth();

// ---------- forwarding ----------
// Each sink's health from GET /api/forward, every 10 s; a failing sink puts
// a banner at the top (events wait in the log and are retried).
async function loadForwarding() {
  let body;
  try { body = await api("/api/forward"); } catch { return; }
  const sinks = body.sinks || [];
  $("#forwarding").hidden = sinks.length === 0;
  const list = $("#sinks");
  list.replaceChildren(...sinks.map((s) => {
    const li = document.createElement("li");
    li.className = s.failing ? "sink failing" : "sink";
    const age = s.oldest_pending_seconds > 0 ? `, oldest pending ${Math.round(s.oldest_pending_seconds)} s` : "";
    li.textContent = `${s.name} (${s.kind}): ${s.failing ? "failing" : "ok"}, ${s.lag} behind${age}, ${s.dead} dead-lettered` +
      (s.failing && s.last_error ? ` — ${s.last_error}` : "");
    return li;
  }));
  const failing = sinks.filter((s) => s.failing);
  const banner = $("#forward-banner");
  banner.hidden = failing.length === 0;
  banner.textContent = failing.map((s) =>
    `Forwarding sink ${s.name} is failing since ${s.failing_since}: ${s.last_error}. Events are kept and retried.`).join(" ");
}

setConn("connecting", "connecting…");
loadForwarding();
setInterval(loadForwarding, 10000);
connect();
loadStats();
setupSend();
