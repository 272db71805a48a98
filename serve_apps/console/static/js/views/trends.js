// Trends: the dashboard of current stories (GET /v1/trends), a story (GET /v1/trends/{id} and its
// documents) and a topic (GET /v1/topics/{id}).
import { h, field, select, formatDate, formatNumber, hashOf } from "../dom.js";
import { pager } from "../pager.js";
import { t, lang } from "../i18n.js";
import { api } from "../api.js";
import { seriesChart } from "../chart.js";

const STATES = ["emerging", "growing", "peaking", "fading", "dormant"];

function stateBadge(state) {
  return h("span", { class: `badge state-${state}` }, t(`state.${state}`) || state);
}

function keywordList(words, label) {
  return h("ul", { class: "keywords", "aria-label": label || t("story.keywords") }, (words || []).slice(0, 10).map((w) => h("li", {}, w)));
}

function storyCard(story) {
  const l = lang();
  return h(
    "li",
    { class: "card story", "data-story-id": story.id },
    h("h2", {}, h("a", { href: `#/trends/${story.id}` }, story.label || `#${story.id}`)),
    h(
      "div",
      { class: "meta" },
      stateBadge(story.state),
      story.burst ? h("span", { class: "badge state-peaking" }, t("burst")) : null,
      h("span", {}, `${t("score")} ${formatNumber(story.score, l, 2)}`),
      h("span", {}, `${t("volume")} ${formatNumber(story.volume, l)}`),
      h("span", {}, `${t("velocity")} ${formatNumber(story.velocity, l, 2)}`),
      h("span", {}, `${formatNumber(story.size, l)} ${t("size")}`),
      story.language ? h("span", {}, story.language) : null,
      story.last_seen ? h("span", {}, formatDate(story.last_seen, l)) : null,
    ),
    keywordList(story.keywords),
    story.summary_text ? h("p", { class: "summary", dir: "auto" }, story.summary_text) : null,
  );
}

function filterForm(params) {
  const [stateField, stateSel] = field(t("trends.state"), select([["", t("trends.any")], ...STATES.map((s) => [s, t(`state.${s}`)])], params.get("state") || ""));
  const [langField, langInput] = field(t("trends.language"), h("input", { name: "language", size: 4, value: params.get("language") || "", placeholder: "en, ar" }));
  const [catField, catInput] = field(t("trends.category"), h("input", { name: "category", value: params.get("category") || "" }));
  const [sinceField, sinceInput] = field(t("trends.since"), h("input", { type: "date", value: params.get("since") || "" }));
  const [untilField, untilInput] = field(t("trends.until"), h("input", { type: "date", value: params.get("until") || "" }));
  const [sortField, sortSel] = field(
    t("trends.sort"),
    select(["score", "volume", "velocity", "recency"].map((s) => [s, t(`sort.${s}`)]), params.get("sort") || "score"),
  );
  const form = h("form", { class: "filters", role: "search" }, stateField, langField, catField, sinceField, untilField, sortField, h("button", { type: "submit" }, t("apply")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    window.location.hash = hashOf("trends", {
      state: stateSel.value,
      language: langInput.value.trim(),
      category: catInput.value.trim(),
      since: sinceInput.value,
      until: untilInput.value,
      sort: sortSel.value,
    });
  });
  return form;
}

export async function trendsView(params) {
  const query = {
    state: params.get("state") || undefined,
    language: params.get("language") || undefined,
    category: params.get("category") || undefined,
    since: params.get("since") || undefined,
    until: params.get("until") || undefined,
    sort: params.get("sort") || "score",
    cursor: params.get("cursor") || undefined,
    limit: 20,
  };
  const page = await api.get("/v1/trends", query);
  return h(
    "section",
    {},
    h("h1", {}, t("trends.title")),
    filterForm(params),
    page.items.length ? h("ul", { class: "cards", "aria-label": t("trends.title") }, page.items.map(storyCard)) : h("p", {}, t("none")),
    pager("trends", params, page.next_cursor),
  );
}

function lineageList(events) {
  if (!events || !events.length) return null;
  return h(
    "section",
    {},
    h("h2", {}, t("story.lineage")),
    h(
      "ol",
      { class: "lineage" },
      events.map((e) =>
        h(
          "li",
          {},
          `${formatDate(e.at, lang())}: ${t(`lineage.${e.kind}`)} (${formatNumber(e.documents, lang())} ${t("size")})`,
          e.related_ids && e.related_ids.length ? [" · ", t("story.related"), ": ", e.related_ids.map((id, i) => [i ? ", " : "", h("a", { href: `#/trends/${id}` }, `#${id}`)])] : null,
        ),
      ),
    ),
  );
}

function documentList(items) {
  return h(
    "ul",
    { class: "cards" },
    items.map((d) =>
      h(
        "li",
        { class: "card" },
        h("h3", {}, h("a", { href: `#/documents/${d.id}` }, d.title || d.url)),
        h("div", { class: "meta" }, d.source ? h("span", {}, d.source) : null, d.category ? h("span", {}, d.category) : null, h("span", {}, formatDate(d.published_at || d.document_time, lang()))),
      ),
    ),
  );
}

export async function storyView(id, params) {
  const granularity = params.get("granularity") === "hour" ? "hour" : "day";
  const [story, docs] = await Promise.all([
    api.get(`/v1/trends/${encodeURIComponent(id)}`, { granularity }),
    api.get(`/v1/trends/${encodeURIComponent(id)}/documents`, { limit: 20, cursor: params.get("cursor") || undefined }),
  ]);
  const l = lang();
  const title = granularity === "hour" ? t("story.chartHour") : t("story.chart");
  return h(
    "article",
    { class: "story-detail", "data-story-id": story.id },
    h("h1", {}, story.label || `#${story.id}`),
    h(
      "div",
      { class: "meta" },
      stateBadge(story.state),
      story.burst ? h("span", { class: "badge state-peaking" }, t("burst")) : null,
      h("span", {}, `${t("score")} ${formatNumber(story.score, l, 2)}`),
      h("span", {}, `${formatNumber(story.size, l)} ${t("size")}`),
      story.topic ? h("span", {}, `${t("story.topic")}: `, h("a", { href: `#/topics/${story.topic.id}` }, story.topic.label)) : null,
    ),
    keywordList(story.keywords),
    story.summary ? h("section", {}, h("h2", {}, t("story.summary")), h("p", { dir: "auto" }, story.summary.text)) : null,
    h(
      "section",
      {},
      h("h2", {}, title),
      h(
        "div",
        { class: "tabs" },
        ["day", "hour"].map((g) =>
          h("a", { class: "button", href: hashOf(`trends/${story.id}`, { granularity: g }), "aria-current": g === granularity ? "true" : null }, t(`story.${g}`)),
        ),
      ),
      seriesChart(story.series || [], { title, lang: l, hourly: granularity === "hour" }),
      h("p", { class: "muted" }, t("story.bursts")),
    ),
    lineageList(story.lineage),
    story.representatives && story.representatives.length ? h("section", {}, h("h2", {}, t("story.representatives")), documentList(story.representatives)) : null,
    h("section", {}, h("h2", {}, t("story.documents")), documentList(docs.items), pager(`trends/${story.id}`, params, docs.next_cursor)),
  );
}

export async function topicView(id) {
  const topic = await api.get(`/v1/topics/${encodeURIComponent(id)}`);
  const l = lang();
  return h(
    "article",
    { class: "topic-detail" },
    h("h1", {}, topic.label || `#${topic.id}`),
    h("div", { class: "meta" }, h("span", {}, `${formatNumber(topic.size, l)} ${t("size")}`), topic.language ? h("span", {}, topic.language) : null),
    keywordList(topic.keywords),
    topic.series ? h("section", {}, h("h2", {}, t("topic.chart")), seriesChart(topic.series, { title: t("topic.chart"), lang: l })) : null,
    h("section", {}, h("h2", {}, t("topic.stories")), h("ul", { class: "cards" }, (topic.stories || []).map(storyCard))),
  );
}
