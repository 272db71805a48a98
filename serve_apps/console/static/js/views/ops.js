// Ops: links to the Ray dashboard and Grafana (PULSE_CONSOLE__*), search readiness (GET /readyz), and the
// job scheduler's schedules with their recent runs (GET /v1/cms/schedules, /v1/cms/schedule-runs: staff
// only); admins pause, resume and run a schedule now.
import { h, formatDateTime } from "../dom.js";
import { t, lang } from "../i18n.js";
import { api, session } from "../api.js";
import { status, errorBox, rerender } from "../ui.js";

const STAFF = ["admin", "editor"];

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
    await schedulesSection(),
  );
}

async function schedulesSection() {
  const me = session();
  const title = h("h2", { id: "schedules" }, t("ops.schedules"));
  if (!me || !STAFF.includes(me.role)) {
    return h("section", { "aria-labelledby": "schedules" }, title, h("p", {}, `${t("ops.signIn")} `, h("a", { href: "#/editor" }, t("ops.signInLink"))));
  }
  let schedules;
  let runs;
  try {
    [schedules, runs] = await Promise.all([api.get("/v1/cms/schedules", {}, { auth: true }), api.get("/v1/cms/schedule-runs", { limit: 15 }, { auth: true })]);
  } catch (err) {
    return h("section", { "aria-labelledby": "schedules" }, title, errorBox(err, rerender));
  }
  if (!schedules.length) return h("section", { "aria-labelledby": "schedules" }, title, h("p", {}, t("ops.noSchedules")));
  const admin = me.role === "admin";
  const col = (key) => h("th", { scope: "col" }, t(key));
  const rows = schedules.map((sc) =>
    h(
      "tr",
      { "data-schedule": sc.name },
      h("th", { scope: "row" }, sc.name),
      h("td", {}, sc.kind, sc.args.length ? h("code", {}, ` ${sc.args.join(" ")}`) : null),
      h("td", {}, sc.timing),
      h("td", {}, scheduleState(sc)),
      h("td", {}, formatDateTime(sc.next_run_at, lang())),
      h("td", {}, sc.last_run ? runBadge(sc.last_run) : ""),
      admin ? h("td", {}, actions(sc)) : null,
    ),
  );
  const head = h("tr", {}, col("ops.name"), col("ops.job"), col("ops.timing"), col("ops.state"), col("ops.nextRun"), col("ops.lastRun"), admin ? col("ops.actions") : null);
  return h(
    "section",
    { "aria-labelledby": "schedules" },
    title,
    h("div", { class: "scroll" }, h("table", { class: "schedules" }, h("thead", {}, head), h("tbody", {}, rows))),
    h("h3", { id: "runs" }, t("ops.runs")),
    runs.length ? runsTable(runs) : h("p", {}, t("none")),
  );
}

function scheduleState(sc) {
  const words = [sc.enabled ? (sc.paused ? t("ops.paused") : t("ops.active")) : t("ops.disabled")];
  if (sc.run_requested_at) words.push(t("ops.requested"));
  return h("span", { title: sc.note || "" }, words.join(" · "), sc.note ? h("small", { class: "meta" }, ` ${sc.note}`) : null);
}

function runBadge(run) {
  return h("span", {}, h("span", { class: `badge run-${run.state}` }, t(`run.${run.state}`)), ` ${formatDateTime(run.finished_at || run.created_at, lang())}`);
}

function actions(sc) {
  const act = (label, verb) =>
    h(
      "button",
      {
        type: "button",
        "aria-label": `${t(label)}: ${sc.name}`,
        onclick: async (event) => {
          event.currentTarget.disabled = true;
          try {
            await api.send("POST", `/v1/cms/schedules/${encodeURIComponent(sc.name)}/${verb}`, undefined, { auth: true });
            status(`${sc.name}: ${t("ops.done")}`);
          } catch (err) {
            status(`${sc.name}: ${err.message}`);
          }
          rerender();
        },
      },
      t(label),
    );
  if (!sc.enabled) return "";
  return h("div", { class: "actions" }, sc.paused ? act("ops.resume", "resume") : act("ops.pause", "pause"), act("ops.runNow", "run-now"));
}

function runsTable(runs) {
  const col = (key) => h("th", { scope: "col" }, t(key));
  return h(
    "div",
    { class: "scroll" },
    h(
      "table",
      { class: "runs" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "#"), col("ops.name"), col("ops.state"), col("ops.reason"), col("ops.started"), col("ops.finished"), col("ops.message"))),
      h(
        "tbody",
        {},
        runs.map((r) =>
          h(
            "tr",
            { "data-run": r.id },
            h("td", {}, String(r.id)),
            h("th", { scope: "row" }, r.schedule),
            h("td", {}, h("span", { class: `badge run-${r.state}` }, t(`run.${r.state}`))),
            h("td", {}, r.reason),
            h("td", {}, formatDateTime(r.created_at, lang())),
            h("td", {}, formatDateTime(r.finished_at, lang())),
            h("td", { class: "message", dir: "auto" }, r.message ? r.message.split("\n")[0].slice(0, 200) : ""),
          ),
        ),
      ),
    ),
  );
}
