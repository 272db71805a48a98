// The bilingual editor over the CMS API (/v1/cms): sign in, items by status with bulk actions, and an item
// with its English (left to right) and Arabic (right to left) fields side by side, the workflow buttons the
// server allows this caller (allowed_transitions), scheduling, revisions with a field diff and restore.
// Every write names the version it saw (If-Match); a 412 reloads the item and says so.
import { h, clear, field, select, formatDate, trustedHtml, hashOf } from "../dom.js";
import { t, lang } from "../i18n.js";
import { api, login, session, ApiError } from "../api.js";
import { status, errorBox, rerender } from "../ui.js";
import { richEditor } from "../richtext.js";

const STATUSES = ["draft", "in_review", "published", "archived"];
const LOCALES = [
  ["en", "ltr", "editor.english"],
  ["ar", "rtl", "editor.arabic"],
];

export async function editorView(path, params) {
  if (!session()) return loginForm();
  if (path[0] === "new") return itemForm(null);
  if (path[0] === "items" && path[1]) return itemPage(path[1], params);
  return itemList(params);
}

function loginForm() {
  const [emailField, email] = field(t("login.email"), h("input", { type: "email", autocomplete: "username", required: true }));
  const [passField, password] = field(t("login.password"), h("input", { type: "password", autocomplete: "current-password", required: true }));
  const message = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "login" }, emailField, passField, message, h("button", { type: "submit" }, t("login.submit")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.textContent = "";
    try {
      await login(email.value.trim(), password.value);
      rerender();
    } catch (err) {
      message.textContent = err.message;
    }
  });
  return h("section", {}, h("h1", {}, t("login.title")), form);
}

// ------------------------------------------------------------------------------------------ the list
async function itemList(params) {
  const current = STATUSES.includes(params.get("status")) ? params.get("status") : "draft";
  const page = await api.get("/v1/cms/items", { status: current, limit: 50, locale: lang(), cursor: params.get("cursor") || undefined }, { auth: true });
  const tabs = h(
    "div",
    { class: "tabs", role: "group", "aria-label": t("editor.status") },
    STATUSES.map((s) => h("button", { type: "button", "aria-pressed": String(s === current), onclick: () => (window.location.hash = hashOf("editor", { status: s })) }, t(`status.${s}`))),
  );
  const boxes = [];
  const rows = page.items.map((item) => {
    const box = h("input", { type: "checkbox", value: item.id, "data-version": item.version, "aria-label": `${t("editor.select")} ${item.en.title || item.ar.title || item.id}` });
    boxes.push(box);
    const title = (item.localized && item.localized.title) || item.en.title || item.ar.title || `#${item.id}`;
    return h(
      "tr",
      { "data-item-id": item.id },
      h("td", {}, box),
      h("td", { dir: "auto" }, h("a", { href: `#/editor/items/${item.id}` }, title)),
      h("td", {}, h("span", { class: `badge status-${item.status}` }, t(`status.${item.status}`))),
      h("td", {}, formatDate(item.updated_at, lang())),
    );
  });
  const all = h("input", { type: "checkbox", "aria-label": t("editor.selectAll"), onchange: () => boxes.forEach((b) => (b.checked = all.checked)) });
  const bulk = async (action) => {
    const chosen = boxes.filter((b) => b.checked).map((b) => ({ id: Number(b.value), version: Number(b.dataset.version) }));
    if (!chosen.length) return;
    try {
      const out = await api.send("POST", "/v1/cms/bulk", { action, items: chosen }, { auth: true });
      const failed = out.results.filter((r) => !r.ok);
      status(failed.length ? failed.map((r) => `#${r.id}: ${r.error}`).join("; ") : `${t(`bulk.${action}`)}: ${out.count}`);
    } catch (err) {
      status(err.message);
    }
    rerender();
  };
  return h(
    "section",
    {},
    h("h1", {}, t("editor.title")),
    h("div", { class: "actions" }, h("a", { class: "button", href: "#/editor/new" }, t("editor.new"))),
    tabs,
    page.items.length
      ? [
          h(
            "table",
            {},
            h("thead", {}, h("tr", {}, h("th", { scope: "col" }, all), h("th", { scope: "col" }, t("field.title")), h("th", { scope: "col" }, t("editor.status")), h("th", { scope: "col" }, "⟳"))),
            h("tbody", {}, rows),
          ),
          h(
            "div",
            { class: "actions", role: "group", "aria-label": t("editor.bulk") },
            h("span", {}, `${t("editor.bulk")}:`),
            h("button", { type: "button", class: "secondary", onclick: () => bulk("publish") }, t("bulk.publish")),
            h("button", { type: "button", class: "secondary", onclick: () => bulk("archive") }, t("bulk.archive")),
          ),
        ]
      : h("p", {}, t("none")),
  );
}

// ------------------------------------------------------------------------------------------ an item
// A client-side preview of the slug the server generates from a title when none is given (storage.cms_content
// make_slug: Arabic harakat dropped, lower case, letters and digits of any script, hyphens); the saved item
// shows the server's own.
export function slugPreview(title) {
  return (title || "")
    .normalize("NFKC")
    .replace(/[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e8\u06ea-\u06ed\u0640]/g, "") // harakat, tatweel
    .toLowerCase()
    .replace(/[^\p{L}\p{N}]+/gu, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 100);
}

// Formatting buttons: on the visual surface they run the browser's editing commands; on the HTML text they
// wrap the selection in tags.
function toolbar(textarea, editor) {
  const wrap = (before, after) => {
    const { selectionStart: a, selectionEnd: b, value } = textarea;
    textarea.value = value.slice(0, a) + before + value.slice(a, b) + after + value.slice(b);
    textarea.focus();
    textarea.setSelectionRange(a + before.length, b + before.length);
  };
  const act = (command, before, after) => () => (editor.visual ? editor.run(command) : wrap(before, after));
  const link = () => {
    const url = window.prompt("https://");
    if (!url) return;
    if (editor.visual) editor.run("createLink", url);
    else wrap(`<a href="${url.replace(/"/g, "&quot;")}">`, "</a>");
  };
  return h(
    "div",
    { class: "toolbar", role: "toolbar", "aria-label": t("tool.bar") },
    h("button", { type: "button", class: "secondary", onclick: () => (editor.visual ? editor.run("formatBlock", "p") : wrap("<p>", "</p>")) }, t("tool.paragraph")),
    h("button", { type: "button", class: "secondary", onclick: act("bold", "<strong>", "</strong>") }, t("tool.bold")),
    h("button", { type: "button", class: "secondary", onclick: act("italic", "<em>", "</em>") }, t("tool.italic")),
    h("button", { type: "button", class: "secondary", onclick: link }, t("tool.link")),
    h("button", { type: "button", class: "secondary", onclick: act("insertUnorderedList", "<ul><li>", "</li></ul>") }, t("tool.list")),
    editor.toggle,
  );
}

function localeFields(code, dir, labelKey, item, controls) {
  const view = item ? item[code] : {};
  const attrs = { dir, lang: code };
  const [titleField, title] = field(t("field.title"), h("input", { ...attrs, name: `title_${code}`, value: view.title || "", maxlength: 300, size: 30 }));
  const [slugField, slug] = field(t("field.slug"), h("input", { ...attrs, name: `slug_${code}`, value: view.slug || "", maxlength: 100, size: 30 }));
  // The sentence in the interface's direction, the address left to right (an Arabic slug inside a URL path).
  const preview = h("div", { class: "slug", "aria-live": "polite", dir: lang() === "ar" ? "rtl" : "ltr", lang: lang() });
  const updatePreview = () => {
    clear(preview);
    preview.append(`${t("field.slugPreview")}: `, h("bdi", { dir: "ltr" }, `/${code}/${slug.value.trim() || slugPreview(title.value) || "…"}`));
  };
  title.addEventListener("input", updatePreview);
  slug.addEventListener("input", updatePreview);
  updatePreview();
  const [summaryField, summary] = field(t("field.summary"), h("textarea", { ...attrs, name: `summary_${code}`, rows: 3, maxlength: 2000 }));
  summary.value = view.summary || "";
  const [bodyField, body] = field(t("field.body"), h("textarea", { ...attrs, name: `body_${code}`, rows: 10 }));
  body.value = view.body || "";
  const rich = richEditor(body, { dir, lang: code, label: t("field.bodyVisual"), htmlLabel: t("tool.html") });
  Object.assign(controls, { [`title_${code}`]: title, [`slug_${code}`]: slug, [`summary_${code}`]: summary, [`body_${code}`]: body });
  const fallback = item && item.localized && item.localized.locale === code && item.localized.fallbacks.length
    ? h("p", { class: "fallback" }, `${item.localized.fallbacks.join(", ")}: ${t("editor.fallback")}`)
    : null;
  return h(
    "fieldset",
    { class: "locale", dir, lang: code, "data-locale": code },
    h("legend", {}, t(labelKey)),
    titleField,
    slugField,
    preview,
    summaryField,
    h("p", { class: "label", "aria-hidden": "true" }, t("field.bodyVisual")),
    toolbar(body, rich),
    rich.surface,
    bodyField,
    item ? [h("h3", {}, t("editor.preview")), fallback, trustedHtml((item.localized && item.localized.locale === code ? item.localized.body : view.body) || "")] : null,
  );
}

function toInput(value) {
  if (!value) return "";
  const d = new Date(value);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function fieldsOf(controls, item) {
  const out = {};
  for (const [name, control] of Object.entries(controls)) {
    if (name === "tags") {
      out.tags = control.value.split(",").map((s) => s.trim()).filter(Boolean);
    } else if (name === "publish_at" || name === "unpublish_at") {
      out[name] = control.value ? new Date(control.value).toISOString() : null;
    } else if (name === "category") {
      out.category = control.value.trim() || null;
    } else if (name === "type") {
      out.type = control.value;
    } else {
      out[name] = control.value.trim() === "" && name.startsWith("slug_") ? null : control.value;
    }
  }
  if (item) {
    // Only what changed: a PATCH of unchanged fields would still make a revision.
    for (const key of Object.keys(out)) {
      const [field_, code] = key.split(/_(?=en$|ar$)/);
      const before = code ? (item[code] || {})[field_] : key === "category" ? item.category : key === "tags" ? item.tags : key === "type" ? item.type : item[key];
      const same = JSON.stringify(before ?? null) === JSON.stringify(out[key] ?? null) || (key.startsWith("publish") || key.startsWith("unpublish") ? toInput(before) === toInput(out[key]) : false);
      if (same || (code && field_ === "body" && (before || "") === out[key])) delete out[key];
    }
  }
  return out;
}

async function itemForm(item) {
  const controls = {};
  const [typeField, type] = field(t("field.type"), select([["article", "article"], ["page", "page"]], item ? item.type : "article"));
  const [catField, category] = field(t("field.category"), h("input", { name: "category", value: item ? item.category || "" : "" }));
  const [tagField, tags] = field(t("field.tags"), h("input", { name: "tags", value: item ? (item.tags || []).join(", ") : "" }));
  const [pubField, publishAt] = field(t("field.publishAt"), h("input", { type: "datetime-local", value: toInput(item && item.publish_at) }));
  const [unpubField, unpublishAt] = field(t("field.unpublishAt"), h("input", { type: "datetime-local", value: toInput(item && item.unpublish_at) }));
  Object.assign(controls, { type, category, tags, publish_at: publishAt, unpublish_at: unpublishAt });
  const locales = h("div", { class: "locales" }, LOCALES.map(([code, dir, key]) => localeFields(code, dir, key, item, controls)));
  const message = h("p", { role: "alert", class: "error" });
  const form = h(
    "form",
    { class: "item-form" },
    locales,
    h("fieldset", {}, h("legend", {}, t("field.category")), h("div", { class: "filters" }, typeField, catField, tagField)),
    h("fieldset", {}, h("legend", {}, t("editor.schedule")), h("div", { class: "filters" }, pubField, unpubField)),
    message,
    h("div", { class: "actions" }, h("button", { type: "submit" }, item ? t("editor.save") : t("editor.create"))),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.textContent = "";
    try {
      if (!item) {
        const body = fieldsOf(controls, null);
        for (const key of Object.keys(body)) if (body[key] === null || body[key] === "") delete body[key];
        const created = await api.send("POST", "/v1/cms/items", body, { auth: true });
        window.location.hash = `#/editor/items/${created.id}`;
        return;
      }
      const changes = fieldsOf(controls, item);
      if (!Object.keys(changes).length) return;
      await api.send("PATCH", `/v1/cms/items/${item.id}`, changes, { auth: true, headers: { "If-Match": `"${item.version}"` } });
      status(t("editor.saved"));
      rerender();
    } catch (err) {
      if (err instanceof ApiError && err.status === 412) {
        status(t("editor.conflict"));
        rerender();
        return;
      }
      message.textContent = err.message;
      if (err.details && err.details.length) message.append(h("ul", {}, err.details.map((d) => h("li", {}, `${d.field}: ${d.reason}`))));
    }
  });
  return h("section", {}, h("h1", {}, item ? `${t("editor.edit")} #${item.id}` : t("editor.new")), form);
}

function workflow(item) {
  const moves = item.allowed_transitions || [];
  const go = async (to) => {
    try {
      await api.send("POST", `/v1/cms/items/${item.id}/transition`, { to }, { auth: true, headers: { "If-Match": `"${item.version}"` } });
      status(t(`status.${to}`));
    } catch (err) {
      status(err.status === 412 ? t("editor.conflict") : err.message);
    }
    rerender();
  };
  return h(
    "section",
    { "aria-labelledby": "workflow-h" },
    h("h2", { id: "workflow-h" }, t("editor.workflow")),
    h("p", {}, h("span", { class: `badge status-${item.status}` }, t(`status.${item.status}`))),
    moves.length ? h("div", { class: "actions" }, moves.map((to) => h("button", { type: "button", "data-transition": to, onclick: () => go(to) }, t(`to.${to}`)))) : null,
  );
}

async function revisions(item) {
  let list;
  try {
    list = await api.get(`/v1/cms/items/${item.id}/revisions`, {}, { auth: true });
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) return null; // this role may not see the history
    throw err;
  }
  const diffBox = h("div", { "aria-live": "polite" });
  const showDiff = async (version) => {
    const diff = await api.get(`/v1/cms/items/${item.id}/diff`, { from: version, to: item.version }, { auth: true });
    clear(diffBox).append(
      h("h3", {}, `${t("editor.diff")}: ${t("editor.version")} ${diff.from_version} → ${diff.to_version}`),
      diff.changes.length
        ? h(
            "table",
            {},
            h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("editor.field")), h("th", { scope: "col" }, t("editor.before")), h("th", { scope: "col" }, t("editor.after")))),
            h("tbody", {}, diff.changes.map((c) => h("tr", {}, h("th", { scope: "row" }, c.field), h("td", { class: "diff-before", dir: "auto" }, JSON.stringify(c.before)), h("td", { class: "diff-after", dir: "auto" }, JSON.stringify(c.after))))),
          )
        : h("p", {}, t("none")),
      h("button", { type: "button", class: "secondary", onclick: () => restore(version) }, `${t("editor.restore")} (${version})`),
    );
  };
  const restore = async (version) => {
    try {
      await api.send("POST", `/v1/cms/items/${item.id}/revisions/${version}/restore`, undefined, { auth: true, headers: { "If-Match": `"${item.version}"` } });
      status(`${t("editor.restore")}: ${version}`);
    } catch (err) {
      status(err.status === 412 ? t("editor.conflict") : err.message);
    }
    rerender();
  };
  const rows = list.map((r) =>
    h(
      "li",
      {},
      `${t("editor.version")} ${r.version} · ${formatDate(r.created_at, lang())} · ${t("editor.by")} ${r.actor}${r.note ? ` · ${r.note}` : ""} `,
      r.version !== item.version ? h("button", { type: "button", class: "link", onclick: () => showDiff(r.version) }, t("editor.diff")) : null,
    ),
  );
  return h("section", { "aria-labelledby": "rev-h" }, h("h2", { id: "rev-h" }, t("editor.revisions")), h("ol", { reversed: true }, rows), diffBox);
}

async function itemPage(id) {
  let item;
  try {
    item = await api.get(`/v1/cms/items/${encodeURIComponent(id)}`, { locale: lang() }, { auth: true });
  } catch (err) {
    return errorBox(err, rerender);
  }
  const [form, history] = await Promise.all([itemForm(item), revisions(item)]);
  return h("div", {}, form, workflow(item), history);
}
