// Formatting for humans: phone numbers, relative and absolute times.
// Plain functions without DOM access, so they are easy to reason about.

// Phone numbers are formatted by libphonenumber-js, the JavaScript port of
// Google's libphonenumber (vendored, see vendor/libphonenumber-js/README.md).
// Its browser bundle is a UMD script: imported for its side effect it sets
// globalThis.libphonenumber, and the import orders it before this module.
// Formatting in the page keeps the API unchanged and costs the server
// nothing; every number shown (list, detail, search, send dialog) goes
// through the same code.
import "./vendor/libphonenumber-js/libphonenumber-min.js";

const lib = globalThis.libphonenumber;
// Country names in English, as the rest of the page; null where the
// browser has no Intl.DisplayNames (the ISO code is shown instead).
const regionNames = typeof Intl.DisplayNames === "function" ? new Intl.DisplayNames(["en"], { type: "region" }) : null;

// A parse costs ~0.1 ms, and a page of rows names the same few numbers
// over and over (and re-renders on every live update): remember results,
// a bounded number of them.
const phoneCache = new Map();
const PHONE_CACHE_MAX = 5000;

// phoneInfo reads a number as Plivo sends it (E.164 digits, with or without
// "+") into { formatted, country, name }: the international format
// ("+44 20 7946 0958"), the ISO country ("GB", "" when libphonenumber does
// not find the number valid, e.g. the UK's fictional 07700 900xxx range or
// an unassigned +1 area code) and the country's English name. null when it
// is not a phone number in international format: an alphanumeric sender
// ID, a short code, an unknown calling code or an impossible length; those
// are shown as they are.
export function phoneInfo(s) {
  const raw = String(s || "").trim();
  if (!/^\+?[0-9][0-9 ().-]{6,}$/.test(raw)) return null;
  const digits = raw.replace(/[^0-9]/g, "");
  // Short codes have at most 6 digits; E.164 allows at most 15.
  if (digits.length < 8 || digits.length > 15) return null;
  if (phoneCache.has(digits)) return phoneCache.get(digits);
  let info = null;
  const p = lib && lib.parsePhoneNumberFromString("+" + digits);
  if (p && p.isPossible()) {
    const country = p.isValid() && p.country ? p.country : "";
    let name = country;
    try {
      if (country && regionNames) name = regionNames.of(country) || country;
    } catch {
      // A region this browser does not know: its ISO code stands in.
    }
    info = { formatted: p.formatInternational(), country, name };
  }
  if (phoneCache.size >= PHONE_CACHE_MAX) phoneCache.delete(phoneCache.keys().next().value);
  phoneCache.set(digits, info);
  return info;
}

// formatPhone returns a number in international format ("+44 7700 900123");
// anything else is returned unchanged.
export function formatPhone(s) {
  const p = phoneInfo(s);
  return p ? p.formatted : String(s || "");
}

// phoneCountry names the country of a number ("United Kingdom"), or "".
export function phoneCountry(s) {
  const p = phoneInfo(s);
  return p ? p.name : "";
}

// phoneCountryCode is the ISO country of a number ("GB"), or "".
export function phoneCountryCode(s) {
  const p = phoneInfo(s);
  return p ? p.country : "";
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
