// Search (GET /v1/search), more like this (GET /v1/documents/{id}/similar) and one document
// (GET /v1/documents/{id}).
import { h, field, select, formatDate, formatNumber, highlight, hashOf } from "../dom.js";
import { t, lang } from "../i18n.js";
import { api } from "../api.js";
import { pager } from "../pager.js";

const MODES = ["hybrid", "keyword", "vector"];

function filters(params) {
  return {
    lang: params.get("lang") || undefined,
    category: params.get("category") || undefined,
    since: params.get("since") || undefined,
    until: params.get("until") || undefined,
  };
}

function searchForm(params) {
  const [qField, q] = field(t("search.query"), h("input", { type: "search", name: "q", value: params.get("q") || "", required: true, maxlength: 1000, size: 40, dir: "auto" }));
  const [modeField, mode] = field(t("search.mode"), select(MODES.map((m) => [m, t(`mode.${m}`)]), params.get("mode") || "hybrid"));
  const [langField, langInput] = field(t("trends.language"), h("input", { name: "lang", size: 4, value: params.get("lang") || "", placeholder: "en, ar" }));
  const [catField, cat] = field(t("trends.category"), h("input", { name: "category", value: params.get("category") || "" }));
  const [sinceField, since] = field(t("trends.since"), h("input", { type: "date", value: params.get("since") || "" }));
  const [untilField, until] = field(t("trends.until"), h("input", { type: "date", value: params.get("until") || "" }));
  const form = h("form", { class: "filters", role: "search" }, qField, modeField, langField, catField, sinceField, untilField, h("button", { type: "submit" }, t("search.submit")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    window.location.hash = hashOf("search", {
      q: q.value.trim(),
      mode: mode.value,
      lang: langInput.value.trim(),
      category: cat.value.trim(),
      since: since.value,
      until: until.value,
    });
  });
  return form;
}

function resultCard(result, query) {
  const l = lang();
  return h(
    "li",
    { class: "card result", "data-document-id": result.id },
    h("h2", {}, h("a", { href: `#/documents/${result.id}`, dir: "auto" }, highlight(result.title || result.url, query))),
    result.snippet ? h("p", { dir: "auto" }, highlight(result.snippet, query)) : null,
    h(
      "div",
      { class: "meta" },
      result.source ? h("span", {}, result.source) : null,
      result.category ? h("span", {}, result.category) : null,
      result.language ? h("span", {}, result.language) : null,
      result.published_at ? h("span", {}, formatDate(result.published_at, l)) : null,
      result.score !== undefined ? h("span", {}, `${t("score")} ${formatNumber(result.score, l, 3)}`) : null,
      result.story ? h("span", {}, `${t("search.story")}: `, h("a", { href: `#/trends/${result.story.id}` }, result.story.label)) : null,
    ),
    h("div", { class: "actions" }, h("a", { href: hashOf("search", { similar: result.id }) }, t("search.more"))),
  );
}

export async function searchView(params) {
  const similar = params.get("similar");
  const q = params.get("q") || "";
  const parts = [h("h1", {}, t("search.title")), searchForm(params)];
  if (similar) {
    const [doc, page] = await Promise.all([
      api.get(`/v1/documents/${encodeURIComponent(similar)}`),
      api.get(`/v1/documents/${encodeURIComponent(similar)}/similar`, { k: 10, ...filters(params) }),
    ]);
    parts.push(h("h2", {}, `${t("search.similarTo")} “`, h("a", { href: `#/documents/${doc.id}` }, doc.title), "”"));
    const items = page.results || page.items || [];
    parts.push(items.length ? h("ol", { class: "cards" }, items.map((r) => resultCard(r, ""))) : h("p", {}, t("none")));
    return h("section", {}, parts);
  }
  if (!q) return h("section", {}, parts);
  const page = await api.get("/v1/search", { q, mode: params.get("mode") || "hybrid", k: 10, cursor: params.get("cursor") || undefined, ...filters(params) });
  parts.push(h("h2", { class: "visually-hidden" }, t("search.results")));
  if (page.partial) parts.push(h("p", { class: "error", role: "note" }, t("search.partial")));
  parts.push(page.results.length ? h("ol", { class: "cards", "aria-label": t("search.results") }, page.results.map((r) => resultCard(r, q))) : h("p", {}, t("none")));
  parts.push(pager("search", params, page.next_cursor));
  return h("section", {}, parts);
}

export async function documentView(id) {
  const doc = await api.get(`/v1/documents/${encodeURIComponent(id)}`);
  const l = lang();
  return h(
    "article",
    { class: "document", lang: doc.language || null },
    h("h1", { dir: "auto" }, doc.title),
    h(
      "div",
      { class: "meta" },
      doc.source ? h("span", {}, doc.source) : null,
      doc.category ? h("span", {}, doc.category) : null,
      doc.published_at ? h("span", {}, formatDate(doc.published_at, l)) : null,
      doc.story ? h("span", {}, `${t("search.story")}: `, h("a", { href: `#/trends/${doc.story.id}` }, doc.story.label)) : null,
    ),
    h("p", { dir: "auto", class: "document-text" }, doc.text),
    h("div", { class: "actions" }, h("a", { href: doc.url, rel: "noopener noreferrer" }, t("doc.open")), h("a", { href: hashOf("search", { similar: doc.id }) }, t("search.more"))),
  );
}
