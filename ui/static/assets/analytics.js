// The Analytics view (#analytics=24h): outcomes per interval as stacked
// bars with the numbers on hover or keyboard focus, tables by country,
// carrier, sender and error code (sortable, the rate drawn as a bar) and
// spend per day, from GET /api/analytics. Beside app.js and without
// changing it: it shows its own section and hides the list while the hash
// names it; the list's hash (filters, open message) never starts with
// "analytics".
import { describeError } from "./errors.js";
import { formatPhone } from "./format.js";

const $ = (sel, root = document) => root.querySelector(sel);
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null) continue;
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}
function svg(tag, attrs = {}) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

document.head.append(el("link", { rel: "stylesheet", href: "/assets/analytics.css" }));

const WINDOWS = [["1h", "1 hour"], ["24h", "24 hours"], ["7d", "7 days"], ["30d", "30 days"]];
// Outcome groups, bottom to top of a bar.
const GROUPS = [
  { key: "delivered", label: "delivered", statuses: ["delivered", "read"] },
  { key: "failed", label: "failed", statuses: ["undelivered", "failed", "rejected"] },
  { key: "inflight", label: "in flight", statuses: ["queued", "sent", "other"] },
  { key: "inbound", label: "inbound", statuses: ["received"] },
];

const state = { window: "24h", data: null, sort: {}, focus: -1, timer: null };
const regions = typeof Intl.DisplayNames === "function" ? new Intl.DisplayNames(["en"], { type: "region" }) : null;

// ---------- view switching ----------
// The header links here; on phones, where the header has no room, a link
// in the figures strip does (analytics.css shows one or the other).
{
  const strip = $(".strip");
  if (strip) strip.append(el("a", { href: "#analytics", class: "an-strip-link", text: "Analytics" }));
}
const view = el("section", { id: "analytics-view", class: "an-view", "aria-labelledby": "an-title", hidden: "" });
$("main").prepend(view);

function wantedWindow() {
  const m = /^#analytics(?:=([0-9a-z]+))?$/.exec(location.hash);
  if (!m) return null;
  return WINDOWS.some(([w]) => w === m[1]) ? m[1] : "24h";
}
function route() {
  const w = wantedWindow();
  const on = w !== null;
  document.body.classList.toggle("view-analytics", on);
  view.hidden = !on;
  const link = $("#analytics-link");
  if (link) link.setAttribute("aria-current", on ? "page" : "false");
  clearInterval(state.timer);
  if (!on) return;
  state.window = w;
  render();
  load();
  // Counters change as callbacks arrive: refresh while the view is open.
  state.timer = setInterval(load, 30000);
}
window.addEventListener("hashchange", route);
window.addEventListener("popstate", route);

async function load() {
  const w = state.window;
  try {
    const res = await fetch(`/api/analytics?window=${encodeURIComponent(w)}`, { credentials: "same-origin" });
    if (res.status === 401) { location.href = "/login" + location.hash; return; }
    const body = await res.json();
    if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
    if (w !== state.window) return;
    state.data = body;
    $("#an-state", view).textContent = "";
    render();
  } catch (e) {
    $("#an-state", view).textContent = `Could not load analytics: ${e.message}`;
  }
}

// ---------- layout ----------
view.append(
  el("div", { class: "an-head" },
    el("a", { href: "#", class: "an-back" }, "← Messages"),
    el("h2", { id: "an-title", text: "Analytics" }),
    el("span", { class: "an-windows", role: "group", "aria-label": "Window" },
      ...WINDOWS.map(([w, label]) => el("a", { href: `#analytics=${w}`, "data-window": w, title: label }, w)))),
  el("p", { id: "an-state", class: "muted", role: "status" }),
  el("ul", { id: "an-totals", class: "an-totals", "aria-label": "Totals" }),
  el("figure", { class: "an-chart" },
    el("figcaption", { id: "an-readout", class: "an-readout", "aria-live": "polite" }),
    el("div", { id: "an-plot" }),
    el("div", { class: "an-legend" }, ...GROUPS.map((g) => el("span", { class: `an-key an-${g.key}`, text: g.label })))),
  el("div", { class: "an-tables" },
    table("countries", "By destination country", "Country"),
    table("carriers", "By carrier", "Carrier (MCC-MNC)"),
    table("senders", "By sender number", "Sender"),
    table("error_codes", "By error code", "Error"),
    table("spend", "Spend per day", "Day")),
);

function table(id, title, keyHead) {
  const cols = id === "error_codes" ? [["key", keyHead], ["failed", "Failed"], ["share", "Share of failures"]]
    : id === "spend" ? [["key", keyHead], ["amount", "Spend"]]
      : [["key", keyHead], ["sent", "Sent"], ["delivered", "Delivered"], ["failed", "Failed"], ["rate", "Delivery rate"]];
  const t = el("table", { id: `an-${id}`, class: "an-table" },
    el("caption", { text: title }),
    el("thead", {}, el("tr", {}, ...cols.map(([k, label]) =>
      el("th", { scope: "col", "data-col": k, "aria-sort": "none" },
        el("button", { type: "button", class: "an-sort", "data-table": id, "data-col": k }, label))))),
    el("tbody"));
  return el("div", { class: "an-table-wrap" }, t);
}

view.addEventListener("click", (e) => {
  const b = e.target.closest(".an-sort");
  if (!b) return;
  const { table: id, col } = b.dataset;
  const cur = state.sort[id];
  const numeric = col !== "key";
  // First click: numbers descending, names ascending; then toggle.
  state.sort[id] = { col, desc: cur && cur.col === col ? !cur.desc : numeric };
  renderTables();
});

// ---------- render ----------
const pct = (r) => (r == null ? "–" : `${(r * 100).toFixed(1)}%`);
const nf = new Intl.NumberFormat("en");
function groupCounts(counts) {
  return GROUPS.map((g) => g.statuses.reduce((n, s) => n + (counts[s] || 0), 0));
}
function stepLabel(t, step, full) {
  const d = new Date(t);
  const o = step >= 86400 ? { month: "short", day: "numeric", timeZone: "UTC" }
    : step >= 3600 ? { month: full ? "short" : undefined, day: full ? "numeric" : undefined, hour: "2-digit", minute: "2-digit", timeZone: "UTC" }
      : { hour: "2-digit", minute: "2-digit", timeZone: "UTC" };
  return d.toLocaleString("en-GB", o) + (step < 86400 ? " UTC" : "");
}

function render() {
  for (const a of view.querySelectorAll(".an-windows a")) a.setAttribute("aria-current", a.dataset.window === state.window ? "true" : "false");
  const d = state.data && state.data.window === state.window ? state.data : null;
  if (!d) { $("#an-state", view).textContent = "loading…"; }
  renderTotals(d);
  renderChart(d);
  renderTables();
}

function renderTotals(d) {
  const ul = $("#an-totals", view);
  ul.replaceChildren();
  if (!d) return;
  const t = d.totals;
  const items = [["Delivery rate", pct(t.delivery_rate)], ["Messages", nf.format(t.messages)], ["Delivered", nf.format(t.delivered)],
    ["Failed", nf.format(t.failed)], ["In flight", nf.format(t.in_flight)], ["Inbound", nf.format(t.inbound)], ["Spend", d.spend.total]];
  for (const [k, v] of items) ul.append(el("li", {}, el("span", { class: "muted", text: k + " " }), el("strong", { text: v })));
}

function renderChart(d) {
  const plot = $("#an-plot", view);
  plot.replaceChildren();
  if (!d) return;
  const pts = d.series.map((p) => ({ t: p.t, g: groupCounts(p.counts) }));
  const width = Math.max(240, Math.floor(plot.clientWidth || view.clientWidth - 32));
  const height = 180, left = 40, bottom = 22, top = 8;
  const max = Math.max(1, ...pts.map((p) => p.g.reduce((a, b) => a + b, 0)));
  const total = pts.reduce((n, p) => n + p.g.reduce((a, b) => a + b, 0), 0);
  const s = svg("svg", {
    width, height, viewBox: `0 0 ${width} ${height}`, class: "an-svg", tabindex: "0", role: "img",
    "aria-label": `${nf.format(total)} messages in ${pts.length} intervals; use the arrow keys to read each interval`,
  });
  const plotW = width - left - 4, plotH = height - top - bottom;
  const y = (v) => top + plotH - (v / max) * plotH;
  for (const v of [0, Math.round(max / 2), max]) {
    s.append(svg("line", { x1: left, x2: width - 4, y1: y(v), y2: y(v), class: "an-grid" }));
    const tx = svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", class: "an-axis" });
    tx.textContent = nf.format(v);
    s.append(tx);
  }
  const bw = plotW / pts.length;
  pts.forEach((p, i) => {
    const g = svg("g", { class: "an-bar", "data-i": i });
    let acc = 0;
    p.g.forEach((v, k) => {
      if (!v) return;
      g.append(svg("rect", { x: left + i * bw + bw * 0.1, width: Math.max(1, bw * 0.8), y: y(acc + v), height: y(acc) - y(acc + v), class: `an-${GROUPS[k].key}` }));
      acc += v;
    });
    // A full-height transparent target, so thin bars are easy to hover.
    g.append(svg("rect", { x: left + i * bw, width: bw, y: top, height: plotH, class: "an-hit" }));
    const title = svg("title");
    title.textContent = readout(p, d.step_seconds);
    g.append(title);
    s.append(g);
  });
  const labels = pts.length > 1 ? [0, Math.floor((pts.length - 1) / 2), pts.length - 1] : [0];
  for (const i of labels) {
    const tx = svg("text", { x: left + i * bw + bw / 2, y: height - 6, "text-anchor": i === 0 ? "start" : i === pts.length - 1 ? "end" : "middle", class: "an-axis" });
    tx.textContent = stepLabel(pts[i].t, d.step_seconds, false);
    s.append(tx);
  }
  const show = (i) => {
    state.focus = i;
    for (const b of s.querySelectorAll(".an-bar")) b.classList.toggle("is-on", Number(b.dataset.i) === i);
    $("#an-readout", view).textContent = i >= 0 ? readout(pts[i], d.step_seconds) : "";
  };
  s.addEventListener("mousemove", (e) => {
    const r = s.getBoundingClientRect();
    const i = Math.floor((e.clientX - r.left - left) / bw);
    if (i >= 0 && i < pts.length) show(i);
  });
  s.addEventListener("mouseleave", () => show(-1));
  s.addEventListener("keydown", (e) => {
    let i = state.focus < 0 ? pts.length - 1 : state.focus;
    if (e.key === "ArrowLeft") i = Math.max(0, i - 1);
    else if (e.key === "ArrowRight") i = Math.min(pts.length - 1, i + 1);
    else if (e.key === "Home") i = 0;
    else if (e.key === "End") i = pts.length - 1;
    else return;
    e.preventDefault();
    show(i);
  });
  s.addEventListener("focus", () => show(state.focus < 0 ? pts.length - 1 : state.focus));
  plot.append(s);
  $("#an-readout", view).textContent = total ? "Hover or focus the chart for the numbers of each interval." : "No messages in this window.";
}

function readout(p, step) {
  const parts = GROUPS.map((g, k) => `${nf.format(p.g[k])} ${g.label}`);
  return `${stepLabel(p.t, step, true)}: ${parts.join(", ")}`;
}

function keyLabel(id, key) {
  if (key === "other" || key === "unknown") return key;
  if (id === "countries" && regions && /^[A-Z]{2}$/.test(key)) {
    try { return `${regions.of(key)} (${key})`; } catch { return key; }
  }
  if (id === "senders") return formatPhone(key) || key;
  if (id === "error_codes") {
    const w = describeError(key);
    return w ? `${key} – ${w.split(/[:;]/)[0]}` : key;
  }
  return key;
}

function rows(id, d) {
  if (id === "spend") return d.spend.by_day.map((r) => ({ key: r.day, amount: r.micros, text: r.amount }));
  if (id === "error_codes") return d.error_codes.map((r) => ({ key: r.code, failed: r.failed, share: r.share }));
  return d[id].map((r) => ({ key: r.key, sent: r.sent, delivered: r.delivered, failed: r.failed, rate: r.delivery_rate }));
}

function rateBar(r, label) {
  const w = r == null ? 0 : Math.round(r * 100);
  // Set through the CSSOM: the page's CSP refuses inline style attributes.
  const fill = el("span");
  fill.style.width = `${w}%`;
  return el("span", { class: "an-rate" },
    el("span", { class: "an-rate-bar", "aria-hidden": "true" }, fill),
    el("span", { class: "an-rate-num", text: label }));
}

function renderTables() {
  const d = state.data && state.data.window === state.window ? state.data : null;
  for (const id of ["countries", "carriers", "senders", "error_codes", "spend"]) {
    const t = $(`#an-${id}`, view);
    const tbody = t.tBodies[0];
    tbody.replaceChildren();
    if (!d) continue;
    const list = rows(id, d);
    const sort = state.sort[id];
    if (sort) {
      list.sort((a, b) => {
        const x = a[sort.col] ?? -1, y = b[sort.col] ?? -1;
        const c = typeof x === "string" ? x.localeCompare(y) : x - y;
        return sort.desc ? -c : c;
      });
    }
    for (const th of t.tHead.rows[0].cells) {
      th.setAttribute("aria-sort", sort && sort.col === th.dataset.col ? (sort.desc ? "descending" : "ascending") : "none");
    }
    if (!list.length) {
      tbody.append(el("tr", {}, el("td", { colspan: String(t.tHead.rows[0].cells.length), class: "muted", text: "Nothing in this window." })));
      continue;
    }
    for (const r of list) {
      const tr = el("tr", {}, el("th", { scope: "row", text: keyLabel(id, r.key) }));
      if (id === "spend") tr.append(el("td", { class: "num", text: r.text }));
      else if (id === "error_codes") {
        tr.append(el("td", { class: "num", text: nf.format(r.failed) }), el("td", {}, rateBar(r.share, pct(r.share))));
      } else {
        tr.append(el("td", { class: "num", text: nf.format(r.sent) }), el("td", { class: "num", text: nf.format(r.delivered) }),
          el("td", { class: "num", text: nf.format(r.failed) }), el("td", {}, rateBar(r.rate, pct(r.rate))));
      }
      tbody.append(tr);
    }
  }
}

window.addEventListener("resize", () => { if (!view.hidden) renderChart(state.data && state.data.window === state.window ? state.data : null); });
route();
