// Ops: links to the Ray dashboard and Grafana (PULSE_CONSOLE__*), search readiness (GET /readyz).
import { h } from "../dom.js";
import { t } from "../i18n.js";
import { api } from "../api.js";

export async function opsView() {
  const config = await api.get("/console/config.json");
  let ready;
  try {
    ready = await api.get("/readyz");
  } catch (err) {
    ready = { status: "not_ready", reason: err.message };
  }
  const link = (url, label) => (url ? h("a", { href: url, rel: "noopener" }, label) : h("span", {}, `${label}: ${t("ops.noLink")}`));
  const shards = (ready.shards || []).map((s) =>
    h("tr", {}, h("th", { scope: "row" }, `#${s.shard}`), h("td", {}, s.ready ? t("ops.ready") : t("ops.notReady")), h("td", {}, s.vectors), h("td", {}, s.index || "")),
  );
  return h(
    "section",
    {},
    h("h1", {}, t("ops.title")),
    h("ul", {}, h("li", {}, link(config.dashboard_url, t("ops.dashboard"))), h("li", {}, link(config.grafana_url, t("ops.grafana"))), h("li", {}, h("a", { href: "/docs" }, t("ops.api")))),
    h("h2", {}, t("ops.readiness")),
    h("p", { "data-ready": ready.status }, ready.status === "ready" ? t("ops.ready") : `${t("ops.notReady")}${ready.reason ? `: ${ready.reason}` : ""}`),
    ready.model ? h("p", {}, `${ready.model} · ${ready.vectors} vectors · ${ready.keyword_documents} keyword documents`) : null,
    shards.length ? h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "shard"), h("th", { scope: "col" }, t("ops.readiness")), h("th", { scope: "col" }, "vectors"), h("th", { scope: "col" }, "index"))), h("tbody", {}, shards)) : null,
  );
}
