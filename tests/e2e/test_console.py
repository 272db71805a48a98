"""The web console in a real browser (Debian's Chromium through Playwright), against a platform started
with `pulse up` as a user starts it: an author writes an Arabic article with its English translation and
submits it for review, an editor publishes it, the search page finds it, a story's chart renders; every
page passes axe-core (served from tests/browser/node_modules, injected from disk) with no serious or
critical violation, in English and in Arabic, and at phone width.

Runs before the session's in-process Ray (tests/e2e/conftest.py: BEFORE_RAY), since `pulse up` starts a
node of its own. Screenshots go to ``PULSE_TEST_ARTIFACTS`` (default var/test-artifacts)/console/.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from storage.database import drop_database, ensure_database
from tests.conftest import sibling_database
from tests.e2e.test_cli_lifecycle import pulse
from tests.integration.helpers import sample_subset
from tests.support.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]
PORT = 8013
BASE = f"http://127.0.0.1:{PORT}"
CONSOLE = f"{BASE}/console/"
ADMIN = ("admin@pulse.local", "console-admin-password")
AUTHOR = ("author@pulse.local", "author-password-1")
EDITOR = ("editor@pulse.local", "editor-password-1")
AXE = Path(
    os.environ.get("PULSE_AXE_JS", ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js")
)
CHROMIUM = os.environ.get("PULSE_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("PULSE_TEST_ARTIFACTS", ROOT / "var" / "test-artifacts")) / "console"

TITLE_AR = "مهرجان الربيع يجمع الفنانين في عمّان"
TITLE_EN = "Spring festival brings artists together in Amman"


def needs_browser() -> None:
    missing = [str(p) for p in (Path(CHROMIUM), AXE) if not p.exists()]
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("the playwright package")
    if missing:
        message = f"browser tests need {', '.join(missing)} (`make install`, apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def platform(
    pg_server_url: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    needs_browser()
    if ray.is_initialized():
        pytest.skip("a Ray instance already runs in this process; `pulse up` must start its own node")
    tmp = tmp_path_factory.mktemp("console")
    url = sibling_database(pg_server_url[0], "_console")
    ensure_database(url)
    env = {
        **os.environ,
        "PULSE_DATABASE__URL": url,
        "PULSE_VAR_DIR": str(tmp / "var"),
        "PULSE_STORAGE__URI": str(tmp / "storage"),
        "PULSE_SAMPLE_CORPUS": str(sample_subset(tmp / "corpus.jsonl", n_other=100)),
        "PULSE_SERVE__PORT": str(PORT),
        "PULSE_RAY__HEAD_PORT": "6392",
        "PULSE_RAY__INCLUDE_DASHBOARD": "false",
        "PULSE_RAY__NUM_CPUS": "2",
        "PULSE_CMS__ADMIN_EMAIL": ADMIN[0],
        "PULSE_CMS__ADMIN_PASSWORD": ADMIN[1],
        "PULSE_CONSOLE__GRAFANA_URL": "http://127.0.0.1:3000",
    }
    try:
        up = pulse(["up"], env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert CONSOLE in up.stdout, "the quickstart output names the console"
        token = httpx.post(f"{BASE}/v1/cms/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]}).json()
        admin = {"Authorization": f"Bearer {token['access_token']}"}
        for (email, password), role in ((AUTHOR, "author"), (EDITOR, "editor")):
            made = httpx.post(
                f"{BASE}/v1/cms/users",
                json={"email": email, "password": password, "display_name": role.title(), "role": role},
                headers=admin,
            )
            assert made.status_code == 201, made.text
        yield env
    finally:
        pulse(["down"], env, timeout=120)
        drop_database(url)


@pytest.fixture(scope="module")
def browser(platform: dict[str, str]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


ERRORS: dict[Any, list[str]] = {}
_loads = iter(range(1, 1_000_000))


def open_page(browser: Any, *, width: int = 1280, height: int = 900, lang: str = "en") -> Any:
    """A fresh tab whose interface language is ``lang``; its script errors are kept in ERRORS[page]
    (uncaught exceptions and console errors, less the browser's own line for each non-2xx response)."""
    context = browser.new_context(viewport={"width": width, "height": height}, locale="en-GB")
    context.add_init_script(
        f"localStorage.getItem('pulse.lang') || localStorage.setItem('pulse.lang', '{lang}')"
    )
    page = context.new_page()
    errors = ERRORS.setdefault(page, [])
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    return page


def go(page: Any, route: str, ready: str) -> None:
    """Load the console at ``#/route`` (a full page load) and wait until ``ready`` is in the rendered view."""
    page.goto(f"{CONSOLE}?load={next(_loads)}#/{route}")
    shown(page, ready, timeout_s=60, loaded=True)


def shown(page: Any, selector: str, timeout_s: float = 30, loaded: bool = False) -> None:
    """Wait for ``selector`` in the rendered view (``loaded``: of a page just loaded); on a timeout, fail
    saying what the page shows."""
    view = "#view[data-route]:not([aria-busy])" if loaded else "#view:not([aria-busy])"
    try:
        page.wait_for_selector(
            ", ".join(f"{view} {s}" for s in selector.split(", ")), timeout=timeout_s * 1000
        )
    except Exception as exc:
        page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
        text = page.inner_text("#view")[:1500]
        raise AssertionError(
            f"{selector} not shown at {page.url}: status {page.inner_text('#status')!r}; view: {text}; "
            f"errors {ERRORS.get(page)}"
        ) from exc


def axe_violations(page: Any) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in result
        if v["impact"] in ("serious", "critical")
    ]


#: Select ``phrase`` in the visual editor of the locale ``code`` (what a user does with the mouse).
SELECT_TEXT = """([code, phrase]) => {
  const surface = document.querySelector(`fieldset[data-locale='${code}'] .rich`);
  const walker = document.createTreeWalker(surface, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const at = node.textContent.indexOf(phrase);
    if (at < 0) continue;
    const range = document.createRange();
    range.setStart(node, at);
    range.setEnd(node, at + phrase.length);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    return true;
  }
  return false;
}"""


def sign_in(page: Any, who: tuple[str, str]) -> None:
    go(page, "editor", "form.login")
    page.get_by_label("Email").fill(who[0])
    page.get_by_label("Password").fill(who[1])
    page.get_by_role("button", name="Sign in").click()
    shown(page, "h1:has-text('Items')")


def test_an_arabic_article_from_writing_to_search_and_a_story_chart(browser: Any) -> None:
    page = open_page(browser)
    # The author writes the article in Arabic with its English translation, side by side.
    sign_in(page, AUTHOR)
    page.get_by_role("link", name="New item").click()
    page.wait_for_selector("form.item-form")
    arabic = page.locator("fieldset[data-locale='ar']")
    assert (
        arabic.get_attribute("dir") == "rtl"
        and page.locator("fieldset[data-locale='en']").get_attribute("dir") == "ltr"
    )
    arabic.get_by_label("Title").fill(TITLE_AR)
    assert TITLE_AR.split()[0] in arabic.locator(".slug").inner_text()  # the slug preview follows the title
    arabic.get_by_label("Summary").fill("يلتقي رسامون وموسيقيون من المنطقة في مهرجان الربيع.")
    # The Arabic body as HTML source (the HTML switch), with a script the server must drop.
    arabic.get_by_role("button", name="HTML").click()
    arabic.get_by_label("Body (HTML)").fill(
        "<p>افتتح <strong>مهرجان الربيع</strong> أبوابه في عمّان.<script>x()</script></p>"
    )
    english = page.locator("fieldset[data-locale='en']")
    english.get_by_label("Title").fill(TITLE_EN)
    english.get_by_label("Summary").fill(
        "Painters and musicians from the region meet at the spring festival."
    )
    # The English body in the visual editor: typed, then two words made bold with the toolbar.
    english.get_by_role("textbox", name="Body", exact=True).click()
    page.keyboard.type("The spring festival opened in Amman.")
    assert page.evaluate(SELECT_TEXT, ["en", "spring festival"])
    english.get_by_role("button", name="Bold").click()
    english.get_by_role("button", name="HTML").click()  # the source the form sends
    assert "<strong>spring festival</strong>" in english.get_by_label("Body (HTML)").input_value()
    english.get_by_role("button", name="HTML").click()  # back to the visual editor
    page.get_by_role("button", name="Create the item").click()
    shown(page, "button[data-transition='in_review']")
    item_id = page.url.rsplit("/", 1)[-1]
    # The previews show the server's sanitised HTML: the emphasis kept, the script gone.
    preview = page.locator("fieldset[data-locale='en'] .preview")
    assert preview.locator("strong").inner_text() == "spring festival"
    assert english.locator(".rich strong").inner_text() == "spring festival"  # the saved body, visual
    assert page.locator("fieldset[data-locale='ar'] .preview strong").inner_text() == "مهرجان الربيع"
    assert page.locator(".preview script").count() == 0
    assert page.locator("button[data-transition='published']").count() == 0  # an author cannot publish
    page.locator("button[data-transition='in_review']").click()
    shown(page, ".badge.status-in_review")
    page.screenshot(path=str(ARTIFACTS / "editor.png"), full_page=True)

    # The editor publishes it.
    page.get_by_role("button", name="Sign out").click()
    shown(page, "form.login")  # signed out: the tokens are gone before the next page loads
    sign_in(page, EDITOR)
    page.get_by_role("button", name="In review").click()
    page.wait_for_selector(f"tr[data-item-id='{item_id}']")
    page.locator(f"tr[data-item-id='{item_id}'] a").click()
    page.locator("button[data-transition='published']").click()
    shown(page, ".badge.status-published")

    # Published means searchable (the CMS scheduler syncs and embeds it; the vector and keyword indexes
    # catch up): then found through the search page.
    def found(mode: str) -> bool:
        params = {"q": "spring festival Amman", "k": 5, "mode": mode}
        results = httpx.get(f"{BASE}/v1/search", params=params, timeout=30).json()["results"]
        return any(r["title"] == TITLE_EN for r in results)

    wait_for(
        lambda: found("vector") and found("keyword"), 180, "the published item was not found by /v1/search"
    )
    go(page, "search", "form[role=search]")
    page.get_by_label("Search for").fill("spring festival Amman")
    page.get_by_role("button", name="Search").click()
    shown(page, "li.result")
    first = page.locator("li.result h2 a").first
    assert first.inner_text() == TITLE_EN
    assert first.locator("mark").count() >= 2  # the query's words are highlighted
    page.screenshot(path=str(ARTIFACTS / "search.png"), full_page=True)
    page.locator("li.result").first.get_by_role("link", name="More like this").click()
    shown(page, "h2:has-text('Documents like')")

    # A story of the sample corpus: its chart renders, with its points and burst markers.
    wait_for(lambda: httpx.get(f"{BASE}/v1/trends", params={"limit": 1}).json()["items"], 300, "no story")
    go(page, "trends?sort=volume", "li.story")
    page.screenshot(path=str(ARTIFACTS / "trends-list.png"), full_page=False)
    page.locator("li.story h2 a").first.click()
    shown(page, "svg.chart")
    chart = page.locator("svg.chart")
    points = int(chart.get_attribute("data-points"))
    assert points > 0 and chart.locator("rect").count() == points
    # Red bars are the API's burst buckets; days without documents are drawn as empty bars.
    series = httpx.get(f"{BASE}/v1/trends/{page.url.rsplit('/', 1)[-1]}").json()["series"]
    assert chart.locator("rect.burst").count() == sum(b["burst"] for b in series)
    assert points >= len(series) and sum(b["count"] for b in series) == sum(
        int(r.split(": ")[-1]) for r in chart.locator("rect title").all_text_contents()
    )
    page.screenshot(path=str(ARTIFACTS / "trends.png"), full_page=True)
    assert ERRORS[page] == [], ERRORS[page]


PAGES = [
    ("trends", "li.story"),
    ("search?q=students+march", "li.result"),
    ("ops", "[data-ready]"),
    ("editor", "form.login"),
]


@pytest.mark.parametrize("lang", ["en", "ar"])
def test_every_page_passes_axe_in_both_languages(browser: Any, platform: dict[str, str], lang: str) -> None:
    page = open_page(browser, lang=lang)
    found: dict[str, Any] = {}
    for route, ready in PAGES:
        go(page, route, ready)
        assert page.evaluate("document.documentElement.dir") == ("rtl" if lang == "ar" else "ltr")
        found[route] = axe_violations(page)
    story = httpx.get(f"{BASE}/v1/trends", params={"limit": 1}).json()["items"][0]["id"]
    go(page, f"trends/{story}", "svg.chart")
    found["story"] = axe_violations(page)
    sign_in_lang = {
        "en": ("Email", "Password", "Sign in"),
        "ar": ("البريد الإلكتروني", "كلمة المرور", "دخول"),
    }[lang]
    go(page, "editor", "form.login")
    page.get_by_label(sign_in_lang[0]).fill(EDITOR[0])
    page.get_by_label(sign_in_lang[1]).fill(EDITOR[1])
    page.get_by_role("button", name=sign_in_lang[2]).click()
    shown(page, "table, .tabs")
    found["items"] = axe_violations(page)
    go(page, "editor/new", "form.item-form")
    found["new item"] = axe_violations(page)
    seed_schedule_runs(platform["PULSE_DATABASE__URL"])
    go(page, "ops", "table.schedules")  # staff see the job schedules
    found["ops (editor)"] = axe_violations(page)
    assert {k: v for k, v in found.items() if v} == {}
    assert ERRORS[page] == [], ERRORS[page]


def test_ops_shows_the_schedules_and_their_runs_and_an_admin_pauses_one(
    browser: Any, platform: dict[str, str]
) -> None:
    seed_schedule_runs(platform["PULSE_DATABASE__URL"])
    page = open_page(browser)
    go(page, "ops", "[data-ready]")
    assert page.locator("table.schedules").count() == 0  # signed out: a link to sign in instead
    sign_in(page, ADMIN)
    go(page, "ops", "table.schedules tr[data-schedule='collect']")
    row = page.locator("tr[data-schedule='collect']")
    assert "every 900 s" in row.inner_text() and row.locator(".badge.run-failed").count() == 1
    assert page.locator("table.runs tr[data-run]").count() == 2
    assert "disabled" in page.locator("tr[data-schedule='backup']").inner_text()
    page.screenshot(path=str(ARTIFACTS / "ops.png"), full_page=True)
    row.get_by_role("button", name="Pause: collect").click()
    shown(page, "tr[data-schedule='collect'] button[aria-label='Resume: collect']")
    assert "paused" in page.locator("tr[data-schedule='collect']").inner_text()
    page.locator("tr[data-schedule='collect']").get_by_role("button", name="Resume: collect").click()
    shown(page, "tr[data-schedule='collect'] button[aria-label='Pause: collect']")
    assert ERRORS[page] == [], ERRORS[page]


def seed_schedule_runs(url: str) -> None:
    """Schedules as the job scheduler seeds them, with a success and a failure. `pulse up` here runs
    without the Ray dashboard, hence without a job server, so its scheduler does not start (and its
    collect jobs would compete with the browser for the two cores)."""
    from datetime import UTC, datetime, timedelta

    from storage.database import make_engine, make_session_factory, session_scope
    from storage.schedules import ScheduleRepository, ScheduleSpec

    now = datetime.now(UTC)
    engine = make_engine(url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as db:
            repo = ScheduleRepository(db)
            if any(s.name == "collect" for s in repo.all()):
                return
            repo.seed(
                ScheduleSpec(name="collect", kind="collect", args=("--embed",), every_s=900),
                first_run_at=now + timedelta(minutes=15),
                now=now,
            )
            note = "set PULSE_SCHEDULES__BACKUP_DEST to a folder or URI to enable it"
            spec = ScheduleSpec(name="backup", kind="backup", every_s=86400, enabled=False, note=note)
            repo.seed(spec, first_run_at=None, now=now)
            for n, state in enumerate(("succeeded", "failed")):
                started = now - timedelta(minutes=30 - 15 * n)
                run = repo.start_run(
                    schedule="collect",
                    kind="collect",
                    submission_id=f"console-{n}",
                    reason="due",
                    now=started,
                )
                assert run is not None
                message = (
                    "collected 120 pages from 3 sources" if n == 0 else "feed.example: HTTP 503 after 3 tries"
                )
                repo.finish_run(run.id, state=state, message=message, now=started + timedelta(seconds=40))
    finally:
        engine.dispose()


def test_phone_width_and_keyboard(browser: Any) -> None:
    page = open_page(browser, width=375, height=740)
    go(page, "trends", "li.story")
    # Nothing wider than the screen: no sideways scrolling at phone width.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.screenshot(path=str(ARTIFACTS / "trends-phone.png"), full_page=False)
    # The skip link comes first, and the navigation is reachable by keyboard.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    for _ in range(6):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.nav") == "search":
            break
    assert page.evaluate("document.activeElement.dataset.nav") == "search"
    page.keyboard.press("Enter")
    shown(page, "form[role=search]")
    # The interface switches to Arabic and right to left.
    page.locator("#lang").click()
    page.wait_for_selector("html[dir=rtl]")
    assert page.locator("[data-nav=search]").inner_text() == "البحث"
