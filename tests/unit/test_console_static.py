"""The console's routes and files (serve_apps.console), in process: every file the pages reference
exists, nothing comes from another origin, ETags revalidate, and errors keep the one shape."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serve_apps.console import ASSETS, STATIC, router
from serve_apps.errors import install_error_handlers


def client(console: dict[str, object] | None) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    if console is not None:
        app.state.console = console
    return TestClient(app)


ON = {"enabled": True, "dashboard_url": "http://127.0.0.1:8265", "grafana_url": None}


def test_every_reference_of_the_pages_is_a_console_file() -> None:
    html = ASSETS["index.html"].body.decode()
    refs = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert refs and all(ref in ASSETS for ref in refs), refs
    for name, asset in ASSETS.items():
        if not name.endswith(".js"):
            continue
        folder = name.rsplit("/", 1)[0]
        for target in re.findall(r'^import .* from "([^"]+)";$', asset.body.decode(), flags=re.M):
            parts = f"{folder}/{target}".split("/")
            resolved: list[str] = []
            for part in parts:
                if part == "..":
                    resolved.pop()
                elif part not in (".", ""):
                    resolved.append(part)
            assert "/".join(resolved) in ASSETS, f"{name} imports {target}, which is not a console file"


def test_nothing_is_loaded_from_another_origin() -> None:
    external = re.compile(r'(?:src|href)="(?:https?:)?//|from "(?:https?:)?//|url\((?:https?:)?//|@import')
    for name, asset in ASSETS.items():
        if asset.content_type.startswith(("text/", "image/svg")):
            assert not external.search(asset.body.decode()), name


def test_both_interface_languages_have_every_string() -> None:
    source = (STATIC / "js" / "i18n.js").read_text(encoding="utf-8")
    english, arabic = source.split("\n  ar: {")
    keys = lambda block: set(re.findall(r'^\s+"?([\w.]+)"?: "', block, flags=re.M))  # noqa: E731
    assert keys(english) == keys(arabic)
    used = set()
    for asset_name, asset in ASSETS.items():
        if asset_name.endswith(".js"):
            used |= set(re.findall(r'\bt\("([\w.]+)"\)', asset.body.decode()))
        if asset_name.endswith(".html"):
            used |= set(re.findall(r'data-i18n(?:-label)?="([\w.]+)"', asset.body.decode()))
    assert used <= keys(english), sorted(used - keys(english))


def test_the_visual_editor_keeps_the_tags_the_cms_keeps() -> None:
    from serve_apps.cms.limits import ALLOWED_TAGS, URL_SCHEMES

    source = (STATIC / "js" / "richtext.js").read_text(encoding="utf-8")
    listed = re.search(r"export const ALLOWED_TAGS = \[([^\]]*)\]", source)
    assert listed is not None
    assert set(re.findall(r'"([a-z0-9]+)"', listed.group(1))) == set(ALLOWED_TAGS)
    schemes = re.search(r"export const URL_SCHEMES = \[([^\]]*)\]", source)
    assert schemes is not None
    assert set(re.findall(r'"([a-z]+)"', schemes.group(1))) == set(URL_SCHEMES)


def test_pages_are_served_with_etags_and_revalidated() -> None:
    http = client(ON)
    page = http.get("/console/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache" and page.headers["x-content-type-options"] == "nosniff"
    assert http.get("/console/", headers={"If-None-Match": page.headers["etag"]}).status_code == 304
    script = http.get("/console/js/app.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    redirect = http.get("/console", follow_redirects=False)
    assert redirect.status_code == 308 and redirect.headers["location"] == "/console/"
    assert http.get("/console/config.json").json() == {
        "dashboard_url": "http://127.0.0.1:8265",
        "grafana_url": None,
    }


@pytest.mark.parametrize(
    "path", ["/console/nope.js", "/console/../serve_apps/console/__init__.py", "/console/js"]
)
def test_unknown_files_are_404_in_the_error_shape(path: str) -> None:
    resp = client(ON).get(path)
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"


def test_a_disabled_console_is_404_saying_which_setting() -> None:
    for console in (None, {**ON, "enabled": False}):
        resp = client(console).get("/console/")
        assert resp.status_code == 404
        assert "PULSE_CONSOLE__ENABLED" in resp.json()["error"]["message"]
