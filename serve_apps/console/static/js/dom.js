// Building the page without innerHTML: text from the APIs is always set as text, never parsed as HTML
// (the one exception, the CMS's sanitised body HTML, goes through `trustedHtml`).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// The CMS's body HTML is sanitised by the server (serve_apps.cms: bleach-style allow list); it is shown
// in a preview only, in an element of its own.
export function trustedHtml(html) {
  const box = h("div", { class: "preview" });
  box.innerHTML = html || "";
  return box;
}

// Arabic clitics a word may carry in front ("the", "and", "with"...): "مهرجان" is marked in "والمهرجان".
const ARABIC_PREFIX = "(?:وال|بال|فال|كال|لل|ال|و|ف|ب|ل|ك)?";

// `text` cut into [part, marked] pairs: each word that starts with one of the query's words (case-insensitive;
// after an Arabic clitic) is marked up to the query word's end, so "march" marks "marches" but "our" leaves
// "journalists" alone.
export function highlightParts(text, query) {
  const words = [...new Set((query || "").toLowerCase().split(/[^\p{L}\p{N}]+/u).filter((w) => w.length > 1))];
  if (!words.length || !text) return [[text || "", false]];
  const alternatives = words.sort((a, b) => b.length - a.length).map(escapeRegExp).join("|");
  const pattern = new RegExp(`(?<=(?:^|[^\\p{L}\\p{N}])${ARABIC_PREFIX})(${alternatives})`, "giu");
  return String(text)
    .split(pattern)
    .map((part, i) => [part, i % 2 === 1])
    .filter(([part]) => part !== "");
}

// `text` with every word that starts with one of the query's words wrapped in <mark>.
export function highlight(text, query) {
  return highlightParts(text, query).map(([part, marked]) => (marked ? h("mark", {}, part) : part));
}

function escapeRegExp(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

let fieldCount = 0;
// A labelled form control: returns [wrapper, control].
export function field(labelText, control, { hint } = {}) {
  const id = control.id || `f${++fieldCount}`;
  control.id = id;
  const wrapper = h("div", { class: "field" }, h("label", { for: id }, labelText), control);
  if (hint) {
    const hintId = `${id}-hint`;
    wrapper.append(h("div", { id: hintId, class: "muted" }, hint));
    control.setAttribute("aria-describedby", hintId);
  }
  return [wrapper, control];
}

export function select(options, value) {
  const el = h("select");
  for (const [optionValue, label] of options) {
    el.append(h("option", { value: optionValue, selected: optionValue === value }, label));
  }
  return el;
}

export function formatDate(value, lang) {
  if (!value) return "";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleDateString(lang === "ar" ? "ar" : "en-GB", { year: "numeric", month: "short", day: "numeric" });
}

export function formatDateTime(value, lang) {
  if (!value) return "";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString(lang === "ar" ? "ar" : "en-GB", { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZone: "UTC", timeZoneName: "short" });
}

export function formatNumber(value, lang, digits = 0) {
  if (value === null || value === undefined) return "";
  return Number(value).toLocaleString(lang === "ar" ? "ar" : "en-GB", { maximumFractionDigits: digits });
}

// Hash routes: "#/search?q=x" -> {path: ["search"], params: URLSearchParams}
export function parseHash(hash) {
  const raw = (hash || "").replace(/^#\/?/, "");
  const [pathPart, query = ""] = raw.split("?");
  return { path: pathPart.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query) };
}

export function hashOf(path, params) {
  const query = params ? new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v != null)).toString() : "";
  return `#/${path}${query ? `?${query}` : ""}`;
}
