// Shared bits of the views: the status line, the error box, re-rendering the current route.
import { h } from "./dom.js";
import { t } from "./i18n.js";

let rerenderFn = () => {};

export function setRerender(fn) {
  rerenderFn = fn;
}

export function rerender() {
  return rerenderFn();
}

export function status(message) {
  const box = document.getElementById("status");
  box.textContent = message || "";
  if (message) setTimeout(() => box.textContent === message && (box.textContent = ""), 4000);
}

export function errorBox(err, retry) {
  const box = h("div", { class: "card", role: "alert" }, h("p", { class: "error" }, `${t("error.generic")}: ${err.message}`));
  if (err.details && err.details.length) {
    box.append(h("ul", {}, err.details.map((d) => h("li", {}, `${d.field}: ${d.reason}`))));
  }
  if (retry) box.append(h("button", { type: "button", onclick: retry }, t("retry")));
  return box;
}

