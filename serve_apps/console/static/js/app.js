// The console's shell: hash routes, the navigation, the language switch and the signed-in user.
import { h, clear, parseHash } from "./dom.js";
import { t, lang, setLang, applyLang } from "./i18n.js";
import { session, onSession, logout } from "./api.js";
import { trendsView, storyView, topicView } from "./views/trends.js";
import { searchView, documentView } from "./views/search.js";
import { editorView } from "./views/editor.js";
import { opsView } from "./views/ops.js";
import { errorBox, setRerender } from "./ui.js";

const ROUTES = {
  trends: (path, params) => (path[1] ? storyView(path[1], params) : trendsView(params)),
  topics: (path, params) => topicView(path[1], params),
  search: (path, params) => searchView(params),
  documents: (path, params) => documentView(path[1], params),
  editor: (path, params) => editorView(path.slice(1), params),
  ops: () => opsView(),
};

let renderToken = 0;
let firstRender = true;

async function render() {
  const token = ++renderToken;
  const { path, params } = parseHash(window.location.hash);
  const section = ROUTES[path[0]] ? path[0] : "trends";
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const view = document.getElementById("view");
  view.setAttribute("aria-busy", "true");
  let content;
  try {
    content = await ROUTES[section](path, params);
  } catch (err) {
    content = errorBox(err, render);
  }
  if (token !== renderToken) return; // a later navigation won
  clear(view).append(content);
  view.dataset.route = window.location.hash || "#/trends";
  view.removeAttribute("aria-busy");
  const heading = view.querySelector("h1");
  document.title = `${heading ? heading.textContent + " · " : ""}Pulse`;
  // After a navigation, focus moves to the new content (screen readers announce it); on the first load it
  // stays at the start of the page, so the skip link is the first Tab stop.
  if (!firstRender && !view.contains(document.activeElement)) view.focus({ preventScroll: true });
  firstRender = false;
}

function showUser(user) {
  const who = clear(document.getElementById("who"));
  if (!user) return;
  who.append(`${user.email || ""} (${user.role}) `);
  who.append(
    h("button", { type: "button", class: "link", onclick: async () => { await logout(); window.location.hash = "#/editor"; } }, t("login.out")),
  );
}

function start() {
  applyLang();
  document.getElementById("lang").addEventListener("click", () => {
    setLang(lang() === "ar" ? "en" : "ar");
    showUser(session());
    render();
  });
  onSession((user) => showUser(user));
  showUser(session());
  setRerender(render);
  window.addEventListener("hashchange", render);
  render();
}

start();
