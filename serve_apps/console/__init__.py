"""The web console (``/console/``): trends, search and the bilingual editor, as static pages that talk to
Pulse's own HTTP APIs from the browser.

Served by the search application's ingress (route prefix ``/``), so it costs no replica of its own: the
routes here only hand out the files under ``static/`` (plain HTML, CSS and JavaScript modules, written by
hand, with no build step, no framework and no external CDN: every script, style and icon comes from this
folder) and ``config.json``, the links the Ops page shows (``PULSE_CONSOLE__*``). Everything the pages show
comes from the public APIs (``/v1/trends``, ``/v1/topics``, ``/v1/search``, ``/v1/documents``,
``/v1/cms``) with the caller's own CMS tokens, so the console can do nothing its user could not do with
curl. The files are read once, at import; each answer carries an ``ETag`` (``If-None-Match`` is answered
304) and ``Cache-Control: no-cache``, so a browser revalidates and a new release is seen at once.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from serve_apps.errors import NotFound

STATIC = Path(__file__).parent / "static"
PREFIX = "/console"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets(folder: Path = STATIC) -> dict[str, Asset]:
    """Every file under ``folder`` by its path relative to it (``index.html``, ``js/app.js``)."""
    assets: dict[str, Asset] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        body = path.read_bytes()
        kind = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        assets[path.relative_to(folder).as_posix()] = Asset(
            body, kind, '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        )
    return assets


ASSETS = load_assets()

router = APIRouter(include_in_schema=False)


def _settings(request: Request) -> dict[str, Any]:
    console: dict[str, Any] | None = getattr(request.app.state, "console", None)
    if not console or not console.get("enabled", True):
        raise NotFound("the console is not enabled on this deployment (PULSE_CONSOLE__ENABLED)")
    return console


def _asset(name: str, if_none_match: str | None) -> Response:
    asset = ASSETS.get(name)
    if asset is None:
        raise NotFound(f"no console file {name!r}")
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if if_none_match and asset.etag in (tag.strip() for tag in if_none_match.split(",")):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.content_type, headers=headers)


@router.get(PREFIX)
async def console_root(request: Request) -> Response:
    _settings(request)
    return RedirectResponse(f"{PREFIX}/", status_code=308)


@router.get(f"{PREFIX}/config.json")
async def console_config(request: Request) -> Response:
    """The links of the Ops page; the console's API calls go to this same origin."""
    console = _settings(request)
    return JSONResponse(
        {"dashboard_url": console.get("dashboard_url"), "grafana_url": console.get("grafana_url")},
        headers={"Cache-Control": "no-cache"},
    )


@router.get(PREFIX + "/{name:path}")
async def console_file(
    request: Request, name: str, if_none_match: Annotated[str | None, Header()] = None
) -> Response:
    _settings(request)
    return _asset(name or "index.html", if_none_match)
