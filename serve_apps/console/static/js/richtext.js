// A visual (what you see is what you get) editing surface over an item's HTML body: a contenteditable
// region kept in step with the HTML text area the form sends, and a switch between the two.
//
// What the surface holds is cleaned to what the CMS keeps (ALLOWED_TAGS mirrors serve_apps/cms/limits.py;
// the server sanitises every body again on output and is the authority): <b> and <i>, which the browser's
// editing commands make, become <strong> and <em>; <div> becomes <p>; any other element gives up its text
// (script, style, template and noscript their text too); only href (http, https, mailto or relative), an
// image's src (the same) and alt, lang anywhere and dir on blocks survive. HTML is parsed in an inert
// <template>, so nothing in it runs or loads while it is cleaned. Pasted HTML is cleaned the same way.
import { h } from "./dom.js";

export const ALLOWED_TAGS = ["p", "h2", "h3", "h4", "ul", "ol", "li", "a", "strong", "em", "blockquote", "img", "figure", "figcaption", "code", "pre", "br"];
const INLINE = new Set(["a", "strong", "em", "code", "br", "img"]);
const RENAMED = { b: "strong", i: "em", div: "p", h1: "h2" };
const SKIPPED = new Set(["script", "style", "template", "noscript"]);
const DIRECTIONS = new Set(["rtl", "ltr", "auto"]);

export const URL_SCHEMES = ["http", "https", "mailto"];

// A URL the CMS keeps: one of URL_SCHEMES, or relative (no scheme at all). Browsers ignore tabs, line
// breaks and leading controls in a URL ("java\nscript:"), so the scheme is read without them.
export function safeUrl(value) {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec((value || "").replace(/[\u0000-\u0020]/g, ""));
  return !scheme || URL_SCHEMES.includes(scheme[1].toLowerCase());
}

export function cleanHtml(html) {
  const source = document.createElement("template");
  source.innerHTML = html || "";
  const out = document.createElement("template");
  copyClean(source.content, out.content);
  return out.innerHTML.trim();
}

function copyClean(from, to) {
  const doc = to.ownerDocument; // the template's inert document: an <img> made here loads nothing
  for (const node of from.childNodes) {
    if (node.nodeType === 3) {
      to.append(doc.createTextNode(node.textContent));
      continue;
    }
    if (node.nodeType !== 1) continue; // comments and the rest
    const name = node.localName;
    const tag = RENAMED[name] || name;
    if (SKIPPED.has(name)) continue;
    if (!ALLOWED_TAGS.includes(tag)) {
      copyClean(node, to);
      continue;
    }
    const el = doc.createElement(tag);
    const attr = (key) => node.getAttribute(key);
    if (tag === "a" && attr("href") && safeUrl(attr("href"))) el.setAttribute("href", attr("href"));
    if (tag === "img") {
      if (!attr("src") || !safeUrl(attr("src"))) continue;
      el.setAttribute("src", attr("src"));
      if (attr("alt")) el.setAttribute("alt", attr("alt"));
    }
    if (attr("lang")) el.setAttribute("lang", attr("lang"));
    if (!INLINE.has(tag) && DIRECTIONS.has(attr("dir"))) el.setAttribute("dir", attr("dir"));
    copyClean(node, el);
    to.append(el);
  }
}

// The surface for `textarea` (the form's control, which keeps the HTML): `visual` says which of the two
// is shown; `run(command, value)` applies a formatting command to the visual surface.
export function richEditor(textarea, { dir, lang, label, htmlLabel }) {
  const surface = h("div", { class: "rich", contenteditable: "true", role: "textbox", "aria-multiline": "true", "aria-label": label, dir, lang, spellcheck: "true" });
  const store = () => {
    textarea.value = cleanHtml(surface.innerHTML);
  };
  const load = () => {
    surface.innerHTML = cleanHtml(textarea.value);
  };
  surface.addEventListener("input", store);
  surface.addEventListener("paste", (event) => {
    event.preventDefault();
    const html = event.clipboardData.getData("text/html");
    const text = event.clipboardData.getData("text/plain");
    document.execCommand("insertHTML", false, html ? cleanHtml(html) : h("p", {}, text).outerHTML);
  });
  const area = textarea.closest(".field") || textarea;
  const toggle = h("button", { type: "button", class: "secondary mode", "aria-pressed": "false" }, htmlLabel);
  const editor = {
    surface,
    toggle,
    get visual() {
      return !surface.hidden;
    },
    show(visual) {
      if (visual) load();
      else store();
      surface.hidden = !visual;
      area.hidden = visual;
      toggle.setAttribute("aria-pressed", String(!visual));
    },
    run(command, value) {
      surface.focus();
      document.execCommand(command, false, value);
      store();
    },
  };
  toggle.addEventListener("click", () => editor.show(!editor.visual));
  editor.show(true);
  return editor;
}
