// Cursor pages in the route: ``cursor`` is this page's cursor, ``prev`` the cursors of the pages before
// ("-" for the first), so Previous and the browser's Back both work.
import { h, hashOf } from "./dom.js";
import { t } from "./i18n.js";

export function pager(base, params, nextCursor) {
  const prev = (params.get("prev") || "").split(",").filter(Boolean);
  const cursor = params.get("cursor") || "";
  const others = Object.fromEntries([...params.entries()].filter(([k]) => k !== "cursor" && k !== "prev"));
  const bar = h("nav", { class: "pager", "aria-label": `${t("previous")} / ${t("next")}` });
  if (cursor) {
    const before = prev[prev.length - 1];
    bar.append(
      h("a", { class: "button", rel: "prev", href: hashOf(base, { ...others, cursor: before === "-" ? "" : before, prev: prev.slice(0, -1).join(",") }) }, t("previous")),
    );
  }
  if (nextCursor) {
    bar.append(h("a", { class: "button", rel: "next", href: hashOf(base, { ...others, cursor: nextCursor, prev: [...prev, cursor || "-"].join(",") }) }, t("next")));
  }
  return bar;
}
