// Opt-outs and conversations on the dashboard, beside app.js: app.js marks
// inbound rows (status "received", with their text) and puts data-number on
// a row's number cells; this file puts an "opted out" badge on listed
// numbers, adds the opt-out list with Remove, and a per-number
// conversation view (GET /api/conversations/{number}), opened from a
// message's panel (the "plivo-dlr:open-conversation" event) and kept live
// as rows arrive.

const $ = (sel, root = document) => root.querySelector(sel);
const digits = (s) => (s || "").replace(/[^0-9]/g, "");

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}

async function api(path, opts) {
  const res = await fetch(path, { credentials: "same-origin", ...opts });
  if (res.status === 401) { location.href = "/login" + location.hash; throw new Error("logged out"); }
  if (res.status === 204) return {};
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
  return body;
}

function fmtTime(s) {
  const d = new Date(s);
  return isNaN(d) ? s || "" : d.toLocaleString(undefined, { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

document.head.append(el("link", { rel: "stylesheet", href: "/assets/inbound.css" }));

const state = {
  optouts: new Map(), // digits -> opt-out
  convNumber: null,   // digits of the open conversation
};

// ---------- rows ----------
// app.js gives each number cell data-number (digits): badge the opted out.
function decorateRow(tr) {
  for (const cell of tr.querySelectorAll("td[data-number]")) {
    cell.querySelector(".optout-badge")?.remove();
    if (state.optouts.has(cell.dataset.number)) cell.append(el("span", { class: "optout-badge", text: "opted out" }));
  }
}

function decorateAll() {
  for (const tr of $("#messages tbody").rows) decorateRow(tr);
}

new MutationObserver((records) => {
  let convTouched = false;
  for (const r of records) {
    for (const n of r.addedNodes) {
      if (!(n instanceof HTMLTableRowElement)) continue;
      decorateRow(n);
      const nums = [...n.querySelectorAll("td[data-number]")].map((c) => c.dataset.number);
      if (state.convNumber && nums.includes(state.convNumber)) convTouched = true;
    }
  }
  if (convTouched) scheduleConversation();
}).observe($("#messages tbody"), { childList: true });

// ---------- opt-out list ----------
const section = el("section", { id: "optouts", class: "optouts", "aria-label": "Opt-outs" },
  el("h2", { text: "Opt-outs" }),
  el("p", { class: "hint", text: "Numbers that sent STOP (or whose reports said Plivo error 200): sends to them are refused. Remove one once the person agreed again." }),
  el("ul", { id: "optout-list" }),
  el("p", { id: "optout-state" }));
$("section.messages").after(section);

async function loadOptOuts() {
  let body;
  try { body = await api("/api/optouts"); } catch { return; }
  state.optouts = new Map(body.optouts.map((o) => [digits(o.number), o]));
  const how = { optout: "STOP", error_200: "Plivo error 200", api: "added by API" };
  $("#optout-list").replaceChildren(...body.optouts.map((o) => el("li", { "data-number": o.number },
    el("b", { text: o.number }), ` ${how[o.source] || o.source} · ${fmtTime(o.since)}` + (o.to ? ` · to ${o.to}` : "") + " ",
    el("button", { type: "button", class: "remove", "data-number": o.number, text: "Remove" }))));
  $("#optout-state").textContent = body.optouts.length ? "" : "Nobody has opted out.";
  decorateAll();
}

$("#optout-list").addEventListener("click", async (e) => {
  const b = e.target.closest("button.remove");
  if (!b) return;
  b.disabled = true;
  try {
    await api("/api/optouts/" + encodeURIComponent(b.dataset.number), { method: "DELETE" });
  } catch (err) {
    $("#optout-state").textContent = "Could not remove: " + err.message;
  }
  loadOptOuts();
});

// ---------- conversation ----------
const conv = el("dialog", { id: "conversation", class: "conversation" },
  el("form", { method: "dialog" }, el("button", { class: "close", "aria-label": "Close", text: "×" })),
  el("div", { id: "conversation-body" }));
document.body.append(conv);
conv.addEventListener("close", () => { state.convNumber = null; });

// app.js's message panel asks for the conversation with the other party.
document.addEventListener("plivo-dlr:open-conversation", (e) => openConversation(e.detail.number));

let convTimer = null;
function scheduleConversation() {
  if (convTimer) return;
  convTimer = setTimeout(() => { convTimer = null; if (state.convNumber) renderConversation(); }, 300);
}

async function openConversation(number) {
  state.convNumber = number;
  await renderConversation();
  if (!conv.open) conv.showModal();
}

async function renderConversation() {
  const number = state.convNumber;
  let body;
  try {
    body = await api("/api/conversations/" + encodeURIComponent("+" + number) + "?limit=200");
  } catch (e) {
    $("#conversation-body").replaceChildren(el("p", { text: "Could not load: " + e.message }));
    return;
  }
  if (state.convNumber !== number) return;
  const head = el("h2", { text: `Conversation with ${body.number}` });
  if (body.opted_out) head.append(" ", el("span", { class: "optout-badge", text: "opted out" }));
  const ol = el("ol", { class: "bubbles" });
  for (const m of body.messages) {
    const text = [m.text, ...(m.media_urls || [])].filter(Boolean).join(" ") || "(no text)";
    ol.append(el("li", { class: "bubble " + m.direction, "data-uuid": m.message_uuid },
      el("div", { class: "bubble-text", text }),
      el("div", { class: "bubble-meta", text: `${fmtTime(m.first_seen)} · ${m.status}` + (m.intent ? ` · ${m.intent}` : "") })));
  }
  $("#conversation-body").replaceChildren(head, body.messages.length ? ol : el("p", { text: "No messages." }));
  ol.lastElementChild?.scrollIntoView({ block: "nearest" });
}

// Opt-outs change with inbound STOPs and error-200 reports: refresh when
// such a row shows, and every 15 s.
new MutationObserver(() => scheduleOptOuts()).observe($("#messages tbody"), { childList: true });
let optTimer = null;
function scheduleOptOuts() {
  if (optTimer) return;
  optTimer = setTimeout(() => { optTimer = null; loadOptOuts(); }, 1000);
}
setInterval(loadOptOuts, 15000);
loadOptOuts();
