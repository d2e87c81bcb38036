// The plivo-dlr dashboard: the message list kept live by the /ws stream,
// key figures from /api/stats, a detail panel from /api/messages/{uuid}.
// The URL's hash names the filters and the open message, so a reload or a
// shared link shows the same view.
import { describeError } from "./errors.js";
import { formatPhone, phoneCountry, phoneCountryCode, relativeTime, absTime, parsePlivoTime, duration } from "./format.js";

const $ = (sel, root = document) => root.querySelector(sel);
const tbody = $("#messages tbody");
const TERMINAL = ["delivered", "undelivered", "failed", "rejected", "read"];
const FAILED = ["undelivered", "failed", "rejected"];
const nf = new Intl.NumberFormat();

// The list filters, as named in the URL: q (number, UUID prefix or text),
// status, direction (inbound, outbound), from and to (dates, in the
// browser's zone), err (error code).
const FILTER_KEYS = ["q", "status", "direction", "from", "to", "err"];
function noFilters() { return Object.fromEntries(FILTER_KEYS.map((k) => [k, ""])); }

const state = {
  cursor: null,          // highest stream cursor seen; null before the first "ready"
  applied: new Map(),    // message_uuid -> cursor of the state shown
  next: "",              // next_cursor of the message list
  loading: false,
  listSeq: 0,            // bumps on every reset, so a stale page is dropped
  filters: noFilters(),
  textMode: false,       // a filter the store lacks (text, error code) is applied here
  scanned: 0,            // messages read by such a filter so far
  detailUUID: null,
  detail: null,          // last detail body, re-rendered on a zone change
  config: null,
  zone: localStorage.getItem("plivo-dlr.zone") === "local" ? "local" : "utc",
  backoff: 500,
};

// ---------- small helpers ----------
function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids) if (k != null && k !== false) e.append(k);
  return e;
}
const hasError = (code) => code && code !== "000" && code !== "0";
function statusBadge(s) { return el("span", { class: "status " + s, text: s }); }
// errorWords is "30 – Spam detected: …"; the code alone when unknown.
function errorWords(code) {
  if (!hasError(code)) return "";
  const d = describeError(code);
  return d ? `${code} – ${d}` : code;
}
// shortError is "30 – Spam detected": the meaning up to its first colon,
// for the list; the whole meaning is in the tooltip and the detail.
function shortError(code) {
  if (!hasError(code)) return "";
  const d = describeError(code);
  return d ? `${code} – ${d.split(/[:;]/)[0]}` : code;
}
// A <time> that reads "3 min ago" and shows the absolute time on hover; the
// ticker below keeps the words current.
function relTime(t) {
  if (!t) return "";
  return el("time", { datetime: t, "data-rel": "", title: absTime(t, state.zone), text: relativeTime(t) });
}
function refreshRelTimes() {
  for (const e of document.querySelectorAll("time[data-rel]")) e.textContent = relativeTime(e.dateTime);
}
setInterval(refreshRelTimes, 15000);
function phone(s) {
  const f = formatPhone(s);
  const country = phoneCountry(s);
  return el("span", { class: "phone", title: country ? `${country} (${s})` : s || null, text: f });
}

async function api(path, opts) {
  const res = await fetch(path, { credentials: "same-origin", ...opts });
  if (res.status === 401) {
    // Keep the view in the fragment: it survives the login (login.js).
    location.href = "/login" + location.hash;
    throw new Error("logged out");
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
  return body;
}

// ---------- URL (hash) ----------
// #q=…&status=…&from=YYYY-MM-DD&to=YYYY-MM-DD&m=<uuid>
function readURL() {
  const p = new URLSearchParams(location.hash.replace(/^#/, ""));
  return {
    filters: Object.fromEntries(FILTER_KEYS.map((k) => [k, p.get(k) || ""])),
    m: p.get("m") || null,
  };
}
function urlFor(filters, m) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(filters)) if (v) p.set(k, v);
  if (m) p.set("m", m);
  const s = p.toString();
  return s ? "#" + s : location.pathname;
}
// writeURL records the view in the URL: push makes a history entry (opening
// a message, so Back closes it); otherwise the current entry is replaced.
// An entry's "pushed" says this page opened the panel in it, so closing can
// step back; a changed filter clears it (the entry before has other
// filters, which a step back would bring back).
function writeURL(push, keepPushed = true) {
  const u = urlFor(state.filters, state.detailUUID);
  const cur = history.state || {};
  const pushed = !!state.detailUUID && (push || (keepPushed && cur.pushed === true));
  if (u === (location.hash || location.pathname) && cur.pushed === pushed) return;
  history[push ? "pushState" : "replaceState"]({ m: state.detailUUID, pushed }, "", u);
}

// ---------- list ----------
// isInbound: a message sent to our number (status "received").
const isInbound = (m) => m.direction === "inbound" || m.status === "received";
// otherParty is the number we talk to; ourNumber is ours.
const otherParty = (m) => (isInbound(m) ? m.from : m.to);
const ourNumber = (m) => (isInbound(m) ? m.to : m.from);
const digitsOf = (s) => (s || "").replace(/[^0-9]/g, "");

function rowFor(m) {
  const failed = FAILED.includes(m.status) || hasError(m.error_code);
  const inbound = isInbound(m);
  const tr = el("tr", {
    "data-uuid": m.message_uuid, "data-status": m.status, "data-first-seen": m.first_seen,
    "data-direction": inbound ? "inbound" : "outbound",
    tabindex: "-1", class: [failed ? "is-failed" : "", inbound ? "inbound" : ""].join(" ").trim() || null,
  });
  const err = shortError(m.error_code);
  const errTitle = errorWords(m.error_code) || null;
  const text = (m.text || "").slice(0, 80);
  const other = otherParty(m);
  tr.append(
    el("td", { class: "status-cell" }, statusBadge(m.status),
      inbound ? el("span", { class: "dir", title: "inbound: sent to your number", text: " ⬅ in" }) : null),
    // data-number lets inbound.js mark opted-out numbers.
    el("td", { class: "number", "data-number": digitsOf(other) },
      phone(other),
      phoneCountryCode(other) ? el("span", { class: "cc", text: phoneCountryCode(other) }) : null,
      // On phones the error and text columns are hidden: the error's words,
      // or what they wrote to us, go under the number.
      err ? el("span", { class: "sub narrow-only error-words", title: errTitle, text: err }) : null,
      inbound && text ? el("span", { class: "sub narrow-only", text }) : null),
    el("td", { class: "wide error-cell" }, err ? el("span", { class: "error-words", title: errTitle, text: err }) : null),
    el("td", { class: "wide text-cell", title: m.text || null },
      inbound ? el("span", { class: "inbound-text", text: m.text || "" }) : text),
    el("td", { class: "time-cell" }, relTime(m.last_seen || m.first_seen)),
    el("td", { class: "wide time-cell" }, relTime(m.first_seen)),
    el("td", { class: "wide", "data-number": digitsOf(ourNumber(m)) }, phone(ourNumber(m))),
  );
  if (m.message_uuid === state.detailUUID) tr.classList.add("selected"), tr.setAttribute("aria-current", "true");
  return tr;
}

// Day boundaries of the date filters, in the browser's zone.
function filterTimes(f) {
  const since = f.from ? new Date(f.from + "T00:00:00") : null;
  let until = null;
  if (f.to) { until = new Date(f.to + "T00:00:00"); until.setDate(until.getDate() + 1); }
  return { since: since && !isNaN(since) ? since : null, until: until && !isNaN(until) ? until : null };
}

function matchesFilters(m) {
  const f = state.filters;
  if (f.status) {
    const terminal = TERMINAL.includes(m.status);
    if (f.status === "pending" ? terminal : m.status !== f.status) return false;
  }
  if (f.direction && (isInbound(m) ? "inbound" : "outbound") !== f.direction) return false;
  const { since, until } = filterTimes(f);
  const first = new Date(m.first_seen);
  if (since && first < since) return false;
  if (until && first >= until) return false;
  if (f.err && !errHit(m, f.err)) return false;
  if (f.q) {
    const q = f.q.toLowerCase();
    if (isTextQuery(f.q)) return textHit(m, q);
    const digits = q.replace(/[^0-9]/g, "");
    const num = (s) => (s || "").replace(/[^0-9]/g, "");
    const uuidHit = m.message_uuid.toLowerCase().startsWith(q);
    const numHit = digits !== "" && /^[+0-9 ().-]+$/.test(q) && (num(m.to).includes(digits) || num(m.from).includes(digits));
    if (!uuidHit && !numHit) return false;
  }
  return true;
}

// The server searches numbers (any format) and UUID prefixes. Anything
// else is a text search, done here over the most recent messages in pages
// of TEXT_PAGE (the store has no text index): the message text, or a
// sender ID such as "ACME".
const TEXT_PAGE = 1000;
function isTextQuery(q) {
  q = q.trim();
  if (!q) return false;
  if (/^[+0-9 ().-]+$/.test(q) && /[0-9]/.test(q)) return false; // a number
  if (q.length >= 4 && q.length <= 36 && /^[0-9a-fA-F-]+$/.test(q) &&
      [...q].every((c, i) => c !== "-" || [8, 13, 18, 23].includes(i))) return false; // a UUID prefix
  return true;
}
function errHit(m, code) { return hasError(m.error_code) && Number(m.error_code) === Number(code); }
function textHit(m, q) {
  const norm = (s) => (s || "").toLowerCase();
  return norm(m.text).includes(q) || norm(m.to).includes(q) || norm(m.from).includes(q);
}

// upsert shows a message's new state: in place when listed, else at its
// place by first_seen (newest first). Returns the row or null.
function upsert(m, mark) {
  const tr = tbody.querySelector(`tr[data-uuid="${CSS.escape(m.message_uuid)}"]`);
  if (!matchesFilters(m)) {
    if (tr) tr.remove();
    return null;
  }
  const fresh = rowFor(m);
  if (tr) {
    const hadFocus = document.activeElement === tr;
    fresh.tabIndex = tr.tabIndex;
    tr.replaceWith(fresh);
    if (hadFocus) fresh.focus({ preventScroll: true });
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
  if (mark) fresh.classList.add("changed");
  ensureTabStop();
  showListState();
  return fresh;
}

function filtered() { return Object.values(state.filters).some(Boolean); }
function showListState(text) {
  $("#list-state").textContent = text ?? (tbody.rows.length ? "" : filtered() ? "No message matches these filters." : "No messages yet.");
  $("#filters-clear").hidden = !filtered();
}

async function loadPage(reset) {
  if (state.loading && !reset) return;
  if (!reset && !state.next) return;
  const seq = reset ? ++state.listSeq : state.listSeq;
  state.loading = true;
  // Rows of the previous filter stay, dimmed, until the new ones arrive.
  if (reset) { showListState("loading…"); $("#messages").ariaBusy = "true"; }
  try {
    const f = state.filters;
    const text = isTextQuery(f.q) || !!f.err;
    const p = new URLSearchParams({ limit: text ? String(TEXT_PAGE) : "50" });
    if (f.q && !isTextQuery(f.q)) p.set("q", f.q);
    if (f.status) p.set("status", f.status);
    if (f.direction) p.set("direction", f.direction);
    const { since, until } = filterTimes(f);
    if (since) p.set("since", since.toISOString());
    if (until) p.set("until", until.toISOString());
    if (!reset) p.set("cursor", state.next);
    const body = await api("/api/messages?" + p);
    if (seq !== state.listSeq) return; // the filters changed meanwhile
    if (reset) tbody.replaceChildren();
    for (const m of body.messages) {
      if (text && !matchesFilters(m)) continue;
      if (!tbody.querySelector(`tr[data-uuid="${CSS.escape(m.message_uuid)}"]`)) tbody.append(rowFor(m));
    }
    if (text) state.scanned = (reset ? 0 : state.scanned) + body.messages.length;
    state.textMode = text;
    state.next = body.next_cursor;
    const more = $("#more-btn");
    more.hidden = !state.next;
    more.textContent = text ? "Search older messages" : "Load more";
    ensureTabStop();
    showListState();
    if (text) {
      const note = `Searched in the ${nf.format(state.scanned)} most recent messages${state.next ? "" : " (all)"}.`;
      $("#list-state").textContent = (tbody.rows.length ? "" : "No message matches. ") + note;
    }
  } catch (e) {
    if (seq === state.listSeq) showListState("Could not load messages: " + e.message);
  } finally {
    if (seq === state.listSeq) { state.loading = false; $("#messages").ariaBusy = null; }
  }
}

function setFilterForm(f) {
  const form = $("#filters");
  for (const k of FILTER_KEYS) form.elements[k].value = f[k] || "";
  const chip = $("#err-chip");
  chip.hidden = !f.err;
  chip.firstChild.textContent = f.err ? `error ${shortError(f.err) || f.err}` : "";
}
// filterByError lists the messages that failed with code (from the top
// errors or a message's panel).
function filterByError(code) {
  const f = { ...state.filters, err: String(code) };
  setFilterForm(f);
  applyFilters(f);
}
function applyFilters(f) {
  const same = JSON.stringify(f) === JSON.stringify(state.filters);
  state.filters = f;
  writeURL(false, same);
  if (!same) loadPage(true);
}
$("#filters").addEventListener("submit", (e) => {
  e.preventDefault();
  const fd = new FormData(e.target);
  const f = Object.fromEntries(FILTER_KEYS.map((k) => [k, String(fd.get(k) || "")]));
  f.q = f.q.trim();
  applyFilters(f);
});
$("#filters").addEventListener("change", () => $("#filters").requestSubmit());
let searchTimer = null;
$("#filters").elements.q.addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => $("#filters").requestSubmit(), 300);
});
$("#filters-clear").addEventListener("click", () => {
  setFilterForm(noFilters());
  applyFilters(noFilters());
  $("#filters").elements.q.focus();
});
$("#err-chip button").addEventListener("click", () => {
  const f = { ...state.filters, err: "" };
  setFilterForm(f);
  applyFilters(f);
  $("#filters").elements.q.focus();
});
$("#more-btn").addEventListener("click", () => loadPage(false));
// Scrolling to the end loads the next page; a text search goes further
// back only when asked (each step reads TEXT_PAGE messages).
new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting) && !state.textMode) loadPage(false);
}).observe($("#more"));

// ---------- keyboard navigation ----------
// The list is one tab stop (roving tabindex): arrows move, Enter opens,
// Escape closes the panel and returns to the row.
function rows() { return [...tbody.rows]; }
function ensureTabStop() {
  const rs = rows();
  if (rs.length && !rs.some((r) => r.tabIndex === 0)) rs[0].tabIndex = 0;
}
function focusRow(tr) {
  if (!tr) return;
  for (const r of rows()) if (r !== tr && r.tabIndex === 0) r.tabIndex = -1;
  tr.tabIndex = 0;
  tr.focus();
}
tbody.addEventListener("keydown", (e) => {
  const tr = e.target.closest("tr[data-uuid]");
  if (!tr) return;
  const rs = rows();
  const i = rs.indexOf(tr);
  let to = null;
  switch (e.key) {
    case "ArrowDown": case "j": to = rs[Math.min(i + 1, rs.length - 1)]; break;
    case "ArrowUp": case "k": to = rs[Math.max(i - 1, 0)]; break;
    case "Home": to = rs[0]; break;
    case "End": to = rs[rs.length - 1]; break;
    case "Enter": case " ": e.preventDefault(); openDetail(tr.dataset.uuid, { push: true, focus: true }); return;
    default: return;
  }
  e.preventDefault();
  focusRow(to);
  // With the panel open, it follows the focused row (one history entry for
  // the panel, however far one moves).
  if ($("#detail").open && to && to.dataset.uuid !== state.detailUUID) openDetail(to.dataset.uuid, { push: false });
  // Near the end: fetch the next page so arrows can go on.
  if (rs.indexOf(to) >= rs.length - 3 && !state.textMode) loadPage(false);
});
tbody.addEventListener("click", (e) => {
  const tr = e.target.closest("tr[data-uuid]");
  if (!tr) return;
  focusRow(tr);
  openDetail(tr.dataset.uuid, { push: true, focus: false });
});
document.addEventListener("keydown", (e) => {
  // "/" goes to the search box, as on many sites, unless one is typing.
  if (e.key === "/" && !e.target.closest("input, textarea, select, [contenteditable]") && !$("#send-dialog").open) {
    e.preventDefault();
    $("#filters").elements.q.focus();
    return;
  }
  if (e.key !== "Escape") return;
  if ($("#detail").open && !$("#send-dialog").open) { e.preventDefault(); closeDetail(); }
});

// ---------- detail panel ----------
function markSelected() {
  for (const r of tbody.querySelectorAll("tr.selected")) r.classList.remove("selected"), r.removeAttribute("aria-current");
  if (!state.detailUUID) return;
  const tr = tbody.querySelector(`tr[data-uuid="${CSS.escape(state.detailUUID)}"]`);
  if (tr) tr.classList.add("selected"), tr.setAttribute("aria-current", "true");
}

async function openDetail(uuid, { push = false, focus = false } = {}) {
  const changed = state.detailUUID !== uuid;
  state.detailUUID = uuid;
  if (changed) { state.detail = null; writeURL(push); }
  markSelected();
  const dlg = $("#detail");
  if (!dlg.open) dlg.show();
  if (changed) $("#detail-body").replaceChildren(el("p", { class: "muted", text: "loading…" }));
  if (focus) $("#detail-title").focus();
  let body;
  try {
    body = await api("/api/messages/" + encodeURIComponent(uuid));
  } catch (e) {
    if (state.detailUUID === uuid) $("#detail-body").replaceChildren(el("p", { class: "error-words", text: "Could not load this message: " + e.message }));
    return;
  }
  if (state.detailUUID !== uuid) return;
  state.detail = body;
  renderDetail();
}

function closeDetail() {
  const uuid = state.detailUUID;
  if (!uuid) return;
  state.detailUUID = null;
  state.detail = null;
  $("#detail").close();
  markSelected();
  // Opened by this page: step back, so Back and Close agree. Opened by a
  // link: replace, so Back leaves as expected.
  if (history.state && history.state.pushed) history.back(); else writeURL(false);
  const tr = tbody.querySelector(`tr[data-uuid="${CSS.escape(uuid)}"]`);
  if (tr) focusRow(tr);
}
$("#detail .close").addEventListener("click", closeDetail);

window.addEventListener("popstate", () => {
  const u = readURL();
  if (JSON.stringify(u.filters) !== JSON.stringify(state.filters)) {
    setFilterForm(u.filters);
    state.filters = u.filters;
    loadPage(true);
  }
  if (u.m && u.m !== state.detailUUID) openDetail(u.m);
  if (!u.m && state.detailUUID) {
    state.detailUUID = null;
    state.detail = null;
    $("#detail").close();
    markSelected();
  }
});

function copyButton(value, label) {
  const b = el("button", { type: "button", class: "copy", "aria-label": `Copy ${label}`, text: "Copy" });
  b.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(value);
    } catch {
      // Clipboard API refused (no secure context): select-and-copy instead.
      const ta = el("textarea", { class: "sr-only" });
      ta.value = value;
      document.body.append(ta);
      ta.select();
      document.execCommand("copy");
      ta.remove();
    }
    b.textContent = "Copied";
    b.dataset.copied = value;
    setTimeout(() => { b.textContent = "Copy"; }, 1500);
  });
  return b;
}

// What to do about an error, by kind; the meaning itself comes from errors.js.
function errorAdvice(code) {
  const n = Number(code);
  if ([20, 80].includes(n)) return "Temporary: sending again later usually works.";
  if ([40, 50, 70, 90, 100, 201, 450].includes(n)) return "Permanent for this number or route: check the number, the source number and the account's geo permissions before retrying.";
  if (n === 30) return "Review the text and sending pattern; register the sender or use a toll-free or short code where carriers require it.";
  if (n === 200) return "The recipient opted out: do not send again unless they opt back in.";
  if (n === 900) return "Add credit to the Plivo account, then send again.";
  if (n === 110) return "Shorten the text or split it into several messages.";
  return "";
}

function errFilterButton(code) {
  const b = el("button", { type: "button", class: "link err-filter", text: `List messages with error ${code}` });
  b.addEventListener("click", () => filterByError(code));
  return b;
}

function renderDetail() {
  const body = state.detail;
  if (!body) return;
  const m = body.message;
  const z = state.zone;
  const out = [];

  // Headline: status and the error, the two things one opens a message for.
  const other = otherParty(m);
  const head = el("div", { class: "detail-status" }, statusBadge(m.status), " ",
    isInbound(m) ? el("span", { class: "muted", text: "from" }) : null,
    el("span", { class: "detail-number" }, phone(other)), " ",
    phoneCountry(other) ? el("span", { class: "muted", text: phoneCountry(other) }) : null);
  out.push(head);
  if (digitsOf(other)) {
    // The conversation view is inbound.js's; it listens for this event.
    const conv = el("button", { type: "button", class: "link open-conversation", "data-number": digitsOf(other), text: `Conversation with ${formatPhone(other)}` });
    conv.addEventListener("click", () => {
      closeDetail();
      document.dispatchEvent(new CustomEvent("plivo-dlr:open-conversation", { detail: { number: digitsOf(other) } }));
    });
    out.push(el("p", { class: "conv-link" }, conv));
  }
  if (hasError(m.error_code)) {
    const advice = errorAdvice(m.error_code);
    out.push(el("div", { class: "error-box", role: "note" },
      el("strong", { text: `Error ${m.error_code}` }), el("p", { text: describeError(m.error_code) || "Code not in the error table." }),
      advice ? el("p", { class: "advice", text: advice }) : null,
      errFilterButton(m.error_code)));
  }

  // Timeline from Plivo's own timestamps (UTC), with the time between steps.
  const steps = [["queued", m.queued_time], ["sent", m.sent_time], [TERMINAL.includes(m.status) ? m.status : "delivery report", m.delivery_report_time]]
    .filter(([, t]) => t);
  if (steps.length) {
    const ol = el("ol", { class: "steps", "aria-label": "Steps" });
    let prev = null;
    for (const [name, t] of steps) {
      const d = parsePlivoTime(t);
      ol.append(el("li", {}, el("span", { class: "step-name", text: name }),
        prev && d ? el("span", { class: "step-dt", text: " +" + duration((d - prev) / 1000) }) : null));
      prev = d || prev;
    }
    out.push(ol);
  }

  const dl = el("dl", { class: "fields" });
  const add = (k, v, ...extra) => {
    if (v === "" || v == null) return;
    dl.append(el("dt", { text: k }), el("dd", {}, typeof v === "string" ? v : v, ...extra));
  };
  add("Message UUID", el("code", { class: "uuid", text: m.message_uuid }), " ", copyButton(m.message_uuid, "message UUID"));
  add("To", phone(m.to), " ", copyButton(m.to, "to number"));
  add("From", m.from ? phone(m.from) : "", " ", m.from ? copyButton(m.from, "from number") : null);
  add("Direction", isInbound(m) ? "inbound (sent to your number)" : "outbound");
  add("Intent", m.intent || "");
  add("Type", m.type);
  if (m.text) add("Text", el("span", { class: "msg-text", text: m.text }));
  add("Units", m.units ? String(m.units) : "");
  add("Rate", m.total_rate); add("Amount", m.total_amount);
  add("Carrier (MCC / MNC)", [m.mcc, m.mnc].filter(Boolean).join(" / "));
  add("Parent", m.parent_message_uuid && m.parent_message_uuid !== m.message_uuid ? m.parent_message_uuid : "");
  add("Part", m.part_info);
  add("Message time", absTime(m.message_time, z, true)); add("Queued", absTime(m.queued_time, z, true));
  add("Sent", absTime(m.sent_time, z, true)); add("Delivery report", absTime(m.delivery_report_time, z, true));
  add("First seen", absTime(m.first_seen, z)); add("Last change", absTime(m.last_seen, z));
  if (state.config && state.config.callback_url) {
    add("Reports arrive at", el("code", { class: "url", text: state.config.callback_url }));
  }
  out.push(dl);

  // Every event as received, oldest first, with its time and the time since
  // the previous one.
  out.push(el("h3", { text: `Events (${body.events.length})` }));
  const ol = el("ol", { class: "events" });
  let prev = null;
  for (const ev of body.events) {
    const p = ev.payload || {};
    const got = new Date(ev.received_at);
    const dt = prev && !isNaN(got) ? duration((got - prev) / 1000) : "";
    prev = isNaN(got) ? prev : got;
    const plivoTimes = ["MessageTime", "QueuedTime", "SentTime", "DeliveryReportTime"]
      .filter((k) => p[k]).map((k) => `${k.replace("Time", "")} ${absTime(p[k], z, true)}`).join(" · ");
    ol.append(el("li", { "data-cursor": ev.cursor },
      el("div", { class: "event-head" }, statusBadge(ev.status), " ",
        el("time", { datetime: ev.received_at, text: absTime(ev.received_at, z, true) }),
        dt ? el("span", { class: "muted", text: ` (+${dt})` }) : null,
        el("span", { class: "muted", text: ` via ${ev.source}` + (ev.sequence ? ` · sequence ${ev.sequence}` : "") })),
      hasError(ev.error_code) ? el("div", { class: "event-error error-words", text: "Error " + errorWords(ev.error_code) }) : null,
      plivoTimes ? el("div", { class: "plivo-times muted", text: "Plivo: " + plivoTimes }) : null,
      el("details", {}, el("summary", { text: "Raw payload" }), el("pre", { text: JSON.stringify(p, null, 2) })),
    ));
  }
  out.push(ol);
  $("#detail-body").replaceChildren(...out);
}

function setZone(z) {
  state.zone = z;
  localStorage.setItem("plivo-dlr.zone", z);
  for (const b of document.querySelectorAll("#detail .tz button")) b.setAttribute("aria-pressed", String(b.dataset.tz === z));
  for (const e of document.querySelectorAll("time[data-rel]")) e.title = absTime(e.dateTime, z);
  renderDetail();
}
for (const b of document.querySelectorAll("#detail .tz button")) b.addEventListener("click", () => setZone(b.dataset.tz));

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

// ---------- figures ----------
function scheduleStats() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; loadStats(); }, 1000);
}

async function loadStats() {
  let st;
  try { st = await api("/api/stats?window=" + $("#window").value); } catch { return; }
  const ul = $("#counts");
  ul.replaceChildren(el("li", {}, "total", el("b", { text: nf.format(st.total ?? 0) })));
  const order = ["queued", "sent", "delivered", "read", "undelivered", "failed", "rejected"];
  const keys = Object.keys(st.counts).sort((a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99));
  for (const k of keys) ul.append(el("li", {}, statusBadge(k), el("b", { text: nf.format(st.counts[k]) })));
  // A rate is only meaningful once some message has a final status.
  const final = TERMINAL.reduce((n, k) => n + (st.counts[k] || 0), 0);
  $("#rate").textContent = final ? `${(st.delivery_rate * 100).toFixed(1)}% delivered` : "– delivered";
  const t = st.time_to_deliver;
  $("#ttd").textContent = t.p50_seconds != null ? `to deliver: p50 ${t.p50_seconds.toFixed(1)} s · p90 ${t.p90_seconds.toFixed(1)} s` : "";
  const top = $("#top-errors");
  top.replaceChildren(...st.top_error_codes.map((e) => {
    const b = el("button", { type: "button", class: "link", "data-err": e.code, "aria-label": `list messages with error ${e.code}`, text: "list messages" });
    b.addEventListener("click", () => filterByError(e.code));
    return el("li", {}, el("b", { text: `${e.code}` }), ` × ${nf.format(e.count)} – ${describeError(e.code) || "unknown code"} `, b);
  }));
  if (!st.top_error_codes.length) top.append(el("li", { class: "muted", text: "No errors in this window." }));
  state.series = st.series;
  if (!$("#analytics").hidden) drawChart(st.series);
}
$("#window").addEventListener("change", loadStats);
setInterval(loadStats, 30000);
$("#charts-toggle").addEventListener("click", (e) => {
  const sec = $("#analytics");
  sec.hidden = !sec.hidden;
  e.currentTarget.setAttribute("aria-expanded", String(!sec.hidden));
  e.currentTarget.textContent = sec.hidden ? "Charts" : "Hide charts";
  if (!sec.hidden) drawChart(state.series);
});

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
  ctx.strokeStyle = "#c9ced6"; ctx.fillStyle = "#4a5160"; ctx.font = "11px system-ui";
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
    ctx.fillStyle = ctx.strokeStyle;
    ctx.lineWidth = 2;
    ctx.beginPath();
    pts.forEach((p, i) => (i ? ctx.lineTo(x(i), y(p.counts[k] || 0)) : ctx.moveTo(x(i), y(p.counts[k] || 0))));
    ctx.stroke();
    // A single point is a dot, not nothing.
    if (pts.length === 1) { ctx.beginPath(); ctx.arc(x(0), y(pts[0].counts[k] || 0), 3, 0, 2 * Math.PI); ctx.fill(); }
  }
}

// ---------- sending ----------
async function setupSend() {
  const cfg = state.config;
  if (!cfg || !cfg.sending_enabled) return;
  const dlg = $("#send-dialog");
  const open = $("#send-open");
  open.hidden = false;
  open.addEventListener("click", () => { $("#send-result").textContent = ""; dlg.showModal(); });
  $("#send-cancel").addEventListener("click", () => dlg.close());
  dlg.addEventListener("close", () => open.focus());
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
      out.textContent = "Queued: " + body.message_uuids.join(", ");
      e.target.reset();
    } catch (err) {
      out.textContent = "Not sent: " + err.message;
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
  // A failing sink has its own banner with the sink's details (forwarding).
  h.problems = h.problems.filter((p) => p.kind !== "sink_failing");
  box.replaceChildren(...h.problems.map((p) => el("p", { class: "problem " + p.kind, "data-kind": p.kind },
    el("strong", { text: p.detail }), p.hint ? el("span", { class: "hint", text: " " + p.hint }) : null)));
  box.hidden = h.problems.length === 0;
}
setInterval(loadHealth, 10000);
loadHealth();

// ---------- forwarding ----------
// Each sink's health from GET /api/forward, every 10 s, as chips in the
// figures strip; a failing sink also puts a banner at the top (events wait
// in the log and are retried).
async function loadForwarding() {
  let body;
  try { body = await api("/api/forward"); } catch { return; }
  const sinks = body.sinks || [];
  const list = $("#sinks");
  list.hidden = sinks.length === 0;
  list.replaceChildren(...sinks.map((s) => {
    const age = s.oldest_pending_seconds > 0 ? `, oldest pending ${Math.round(s.oldest_pending_seconds)} s` : "";
    return el("li", {
      class: s.failing ? "sink failing" : "sink",
      title: `${s.kind}${age}, ${s.dead} dead-lettered` + (s.failing && s.last_error ? ` — ${s.last_error}` : ""),
      text: `→ ${s.name}: ${s.failing ? "failing" : "ok"}, ${s.lag} behind`,
    });
  }));
  const failing = sinks.filter((s) => s.failing);
  const banner = $("#forward-banner");
  banner.hidden = failing.length === 0;
  banner.textContent = failing.map((s) =>
    `Forwarding sink ${s.name} is failing since ${s.failing_since}: ${s.last_error}. Events are kept and retried.`).join(" ");
}

// ---------- start ----------
{
  const u = readURL();
  state.filters = u.filters;
  setFilterForm(u.filters);
  showListState("loading…");
  if (u.m) openDetail(u.m);
}
setZone(state.zone);
setConn("connecting", "connecting…");
api("/api/config").then((cfg) => { state.config = cfg; setupSend(); renderDetail(); }).catch(() => {});
loadForwarding();
setInterval(loadForwarding, 10000);
connect();
loadStats();
