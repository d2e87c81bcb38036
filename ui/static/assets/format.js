// Formatting for humans: phone numbers, relative and absolute times.
// Plain functions without DOM access, so they are easy to reason about.

// Countries by calling code, with how their national numbers are usually
// grouped. A group list applies to the digits after the calling code; the
// last group takes whatever is left. Codes not listed fall back to
// "+digits" (never a wrong grouping). Calling codes are prefix-free, so the
// first match by length (1, 2, then 3 digits) is the only one.
const countries = {
  "1": { cc: "US/CA", name: "United States / Canada", groups: [3, 3, 4] },
  "7": { cc: "RU", name: "Russia / Kazakhstan", groups: [3, 3, 2, 2] },
  "20": { cc: "EG", name: "Egypt", groups: [2, 4, 4] },
  "27": { cc: "ZA", name: "South Africa", groups: [2, 3, 4] },
  "30": { cc: "GR", name: "Greece", groups: [3, 3, 4] },
  "31": { cc: "NL", name: "Netherlands", groups: [1, 8], when: /^6/, other: [2, 7] },
  "32": { cc: "BE", name: "Belgium", groups: [3, 2, 2, 2] },
  "33": { cc: "FR", name: "France", groups: [1, 2, 2, 2, 2] },
  "34": { cc: "ES", name: "Spain", groups: [3, 2, 2, 2] },
  "39": { cc: "IT", name: "Italy", groups: [3, 3, 4] },
  "41": { cc: "CH", name: "Switzerland", groups: [2, 3, 2, 2] },
  "43": { cc: "AT", name: "Austria", groups: [3, 7] },
  "44": { cc: "GB", name: "United Kingdom", groups: [4, 6], when: /^7/, other: [2, 4, 4] },
  "45": { cc: "DK", name: "Denmark", groups: [2, 2, 2, 2] },
  "46": { cc: "SE", name: "Sweden", groups: [2, 3, 2, 2] },
  "47": { cc: "NO", name: "Norway", groups: [3, 2, 3] },
  "48": { cc: "PL", name: "Poland", groups: [3, 3, 3] },
  "49": { cc: "DE", name: "Germany", groups: [4, 8] },
  "52": { cc: "MX", name: "Mexico", groups: [2, 4, 4] },
  "54": { cc: "AR", name: "Argentina", groups: [1, 2, 4, 4] },
  "55": { cc: "BR", name: "Brazil", groups: [2, 5, 4] },
  "57": { cc: "CO", name: "Colombia", groups: [3, 3, 4] },
  "60": { cc: "MY", name: "Malaysia", groups: [2, 3, 4] },
  "61": { cc: "AU", name: "Australia", groups: [3, 3, 3] },
  "62": { cc: "ID", name: "Indonesia", groups: [3, 4, 5] },
  "63": { cc: "PH", name: "Philippines", groups: [3, 3, 4] },
  "64": { cc: "NZ", name: "New Zealand", groups: [2, 3, 4] },
  "65": { cc: "SG", name: "Singapore", groups: [4, 4] },
  "66": { cc: "TH", name: "Thailand", groups: [2, 3, 4] },
  "81": { cc: "JP", name: "Japan", groups: [2, 4, 4] },
  "82": { cc: "KR", name: "South Korea", groups: [2, 4, 4] },
  "84": { cc: "VN", name: "Vietnam", groups: [3, 3, 4] },
  "86": { cc: "CN", name: "China", groups: [3, 4, 4] },
  "90": { cc: "TR", name: "Turkey", groups: [3, 3, 4] },
  "91": { cc: "IN", name: "India", groups: [5, 5] },
  "92": { cc: "PK", name: "Pakistan", groups: [3, 7] },
  "234": { cc: "NG", name: "Nigeria", groups: [3, 3, 4] },
  "254": { cc: "KE", name: "Kenya", groups: [3, 6] },
  "351": { cc: "PT", name: "Portugal", groups: [3, 3, 3] },
  "353": { cc: "IE", name: "Ireland", groups: [2, 3, 4] },
  "358": { cc: "FI", name: "Finland", groups: [2, 3, 4] },
  "971": { cc: "AE", name: "United Arab Emirates", groups: [2, 3, 4] },
  "972": { cc: "IL", name: "Israel", groups: [2, 3, 4] },
};

// parsePhone splits an E.164 number (with or without "+") into calling
// code, country and national digits; null when it is not a phone number
// (an alphanumeric sender ID, a short code).
export function parsePhone(s) {
  const raw = String(s || "").trim();
  if (!/^\+?[0-9][0-9 ()-]{6,}$/.test(raw)) return null;
  const digits = raw.replace(/[^0-9]/g, "");
  if (digits.length < 8 || digits.length > 15) return null;
  for (const n of [1, 2, 3]) {
    const c = countries[digits.slice(0, n)];
    if (c) return { code: digits.slice(0, n), country: c, national: digits.slice(n) };
  }
  return { code: "", country: null, national: digits };
}

// formatPhone returns a number in grouped international format
// ("+44 7700 900123"); anything else is returned unchanged, and an unknown
// calling code gives "+digits".
export function formatPhone(s) {
  const p = parsePhone(s);
  if (!p) return String(s || "");
  if (!p.country) return "+" + p.national;
  const c = p.country;
  const groups = c.when && !c.when.test(p.national) ? c.other : c.groups;
  const want = groups.reduce((a, b) => a + b, 0);
  // A number of an unexpected length would be grouped wrongly: keep it whole.
  if (Math.abs(p.national.length - want) > 1) return `+${p.code} ${p.national}`;
  const out = [];
  let i = 0;
  groups.forEach((g, k) => {
    const take = k === groups.length - 1 ? p.national.length - i : g;
    if (take > 0) out.push(p.national.slice(i, i + take));
    i += take;
  });
  return `+${p.code} ${out.join(" ")}`;
}

// phoneCountry names the country of a number, or "".
export function phoneCountry(s) {
  const p = parsePhone(s);
  return p && p.country ? p.country.name : "";
}

// phoneCountryCode is the short country label ("GB"), or "".
export function phoneCountryCode(s) {
  const p = parsePhone(s);
  return p && p.country ? p.country.cc : "";
}

// relativeTime says how long ago t was ("3 min ago"), from now (ms).
export function relativeTime(t, now = Date.now()) {
  const d = t instanceof Date ? t : new Date(t);
  if (isNaN(d)) return "";
  const s = Math.round((now - d.getTime()) / 1000);
  if (s < -60) return "in the future";
  if (s < 10) return "just now";
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ago`;
  const days = Math.floor(h / 24);
  if (days < 30) return days === 1 ? "yesterday" : `${days} days ago`;
  return d.toISOString().slice(0, 10);
}

// Plivo's own timestamps ("2024-05-01 10:00:00.234567") are UTC without a
// zone; parsePlivoTime reads them (and RFC 3339 strings) as such.
export function parsePlivoTime(s) {
  if (!s) return null;
  if (s instanceof Date) return s;
  const m = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(\.\d+)?$/.exec(String(s).trim());
  const d = m ? new Date(`${m[1]}T${m[2]}${m[3] ? m[3].slice(0, 4) : ""}Z`) : new Date(s);
  return isNaN(d) ? null : d;
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

// absTime formats a time in one zone, always naming it: "2024-05-01
// 10:00:00.234 UTC" or the same in local time with its offset.
export function absTime(t, zone = "utc", ms = false) {
  const d = parsePlivoTime(t);
  if (!d) return t ? String(t) : "";
  const utc = zone === "utc";
  const Y = utc ? d.getUTCFullYear() : d.getFullYear();
  const M = (utc ? d.getUTCMonth() : d.getMonth()) + 1;
  const D = utc ? d.getUTCDate() : d.getDate();
  const h = utc ? d.getUTCHours() : d.getHours();
  const mi = utc ? d.getUTCMinutes() : d.getMinutes();
  const se = utc ? d.getUTCSeconds() : d.getSeconds();
  const frac = ms ? "." + pad(utc ? d.getUTCMilliseconds() : d.getMilliseconds(), 3) : "";
  let label = "UTC";
  if (!utc) {
    const off = -d.getTimezoneOffset();
    label = off === 0 ? "UTC" : `UTC${off > 0 ? "+" : "−"}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
  }
  return `${Y}-${pad(M)}-${pad(D)} ${pad(h)}:${pad(mi)}:${pad(se)}${frac} ${label}`;
}

// duration formats seconds between steps: "850 ms", "1.1 s", "4 min 5 s".
export function duration(sec) {
  if (sec == null || !isFinite(sec)) return "";
  if (sec < 0) sec = 0;
  if (sec < 1) return `${Math.round(sec * 1000)} ms`;
  if (sec < 60) return `${sec.toFixed(1)} s`;
  const m = Math.floor(sec / 60);
  if (m < 60) return `${m} min ${Math.round(sec % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}
