"""Hostile text (issue 20, part 4): Unicode edge cases and SQL- and script-looking text, through the
entry points users use: `pulse ingest` (a JSONL file), the CMS API and the trends APIs (both built as each
Serve replica builds them, served by uvicorn over real HTTP, on real PostgreSQL).

* **Unicode** (Arabic and English): bidi controls (U+202E), zero-width joiners and non-joiners, combining
  marks, 20,000-letter words, astral and private-use characters, line separators. Stored and read back
  identical (ingest: in the documented normal form, ``storage.documents.normalize_text``: NFC, whitespace
  collapsed, NUL dropped; the CMS: byte for byte). NUL and unpaired surrogates (the JSON escape
  ``"\\ud800"``): PostgreSQL text cannot hold NUL, and a lone surrogate is not Unicode text. Decision:
  `pulse ingest` drops NUL (as the collector does) and quarantines a record holding a lone surrogate with
  its reason; the HTTP APIs answer 422 in the one error shape for either (``serve_apps/inputs.py``).
* **Injection-looking text** (``'; DROP TABLE documents;--``, ``<script>``, ``{{7*7}}``, ``%00``,
  ``../../etc/passwd``...): in every query parameter of every GET route the apps' OpenAPI documents, in
  path parameters and in every CMS text field: filters answer 200 or 4xx in the one shape, never 5xx;
  CMS text comes back intact, its HTML bodies sanitised (no ``<script>``), and every table still exists.

Each test reports the ``hostile`` figure. Takes about 20-40 s on 2 cores (no Ray); the ``long`` search and
recommend variant deploys the search application on Serve as ``tests/e2e/test_search_api.py`` does
(minutes).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import text

from cluster.ground.settings import get_settings
from storage.documents import normalize_text
from tests.e2e.test_search_api import api as api  # the deployed search application (a fixture)
from tests.integration.helpers import cli_runner
from tests.security.hostile_servers import AppServer
from tests.security.hostile_servers import cms_server as cms_server

pytestmark = [pytest.mark.security]

#: Unicode edge cases, Arabic and English: each must come back as it went in.
UNICODE: dict[str, str] = {
    "bidi_ar": "تقرير \u202eالميزانية\u202c الجديدة \u2067معزول\u2069",  # noqa: RUF001
    "bidi_en": "invoice \u202egpj.exe\u202c and \u200fmarks\u200e",
    "zwj_ar": "لا\u200dإله \u200cمثال \u200bفاصل",  # noqa: RUF001
    "zwj_emoji": "family \U0001f468\u200d\U0001f469\u200d\U0001f467 and flags \U0001f1ef\U0001f1f4",
    "combining_ar": "مُحَمَّدٌ وَالْقُرْآنُ الكَرِيمُ",
    "combining_en": "Zalgo Z\u0335\u0321a\u0336\u0317l\u0334g\u0338o and cafe\u0301",
    "long_word_ar": "ب" * 20_000,
    "long_word_en": "a" * 20_000,
    "astral_private": "\U0001d518\U0001d52b\U0001d526 \U0001f600 \ue000 \ufffd \ufeff",
    "line_separators": "one\u2028two\u2029three",
}
#: SQL-, template-, path- and script-looking text.
INJECTION: list[str] = [
    "'; DROP TABLE documents;--",
    "'; DROP TABLE cms_items;--",
    "' OR '1'='1",
    "1) OR (1=1",
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "{{7*7}}",
    "${7*7}",
    "%00",
    "%",
    "_",
    "\\",
    "../../etc/passwd",
    "مرحبا'; DROP TABLE documents;--",
]
TABLES = ("documents", "sources", "quarantine", "cms_items", "cms_users", "stories", "topics")


def one_shape(resp: httpx.Response) -> bool:
    """A 4xx body in the one error shape ``{"error": {"code", "message"}}``."""
    try:
        body = resp.json()
    except ValueError:
        return False
    return isinstance(body, dict) and set(body) == {"error"} and {"code", "message"} <= set(body["error"])


def tables_left(engine: Any) -> set[str]:
    with engine.connect() as conn:
        return {
            name
            for name in TABLES
            if conn.execute(text("SELECT to_regclass(:n)"), {"n": f"public.{name}"}).scalar() is not None
        }


# --------------------------------------------------------------------------- Unicode through `pulse ingest`


@pytest.fixture
def pulse(clean_db: str, monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PULSE_DATABASE__URL", clean_db)
    monkeypatch.setenv("PULSE_VAR_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield cli_runner(capsys)
    get_settings.cache_clear()


def test_unicode_edge_cases_through_pulse_ingest(
    pulse: Any, clean_db: str, engine: Any, tmp_path: Path, figure: Any
) -> None:
    lines = [
        json.dumps({"id": name, "title": value[:300], "text": f"{value} {value}", "language": "und"})
        for name, value in UNICODE.items()
    ]
    # NUL: dropped when stored. Lone surrogates, written as JSON escapes: quarantined with the field.
    lines.append(json.dumps({"id": "nul", "title": "Bridge\x00 budget", "text": "الميزانية\x00 الجديدة"}))
    surrogates = {
        "surrogate_title": {"id": "s1", "title": "Lone \ud800 high", "text": "text"},
        "surrogate_text": {"id": "s2", "title": "ok", "text": "low \udfff surrogate"},
        "surrogate_url": {"url": "https://example.com/\ud83d", "title": "ok", "text": "x"},
        "surrogate_metadata": {"id": "s4", "title": "ok", "text": "x", "metadata": {"k\udc00": "v"}},
    }
    lines += [json.dumps(record) for record in surrogates.values()]  # ensure_ascii: "\ud800" escapes
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    code, _, err = pulse("ingest", str(path))
    assert code == 0, err

    with engine.connect() as conn:
        rows = {
            r.external_id: (r.title, r.text)
            for r in conn.execute(text("SELECT external_id, title, text FROM documents"))
        }
        quarantined = conn.execute(
            text("SELECT source_ref, reason FROM quarantine WHERE job = 'ingest'")
        ).all()
    intact = 0
    for name, value in UNICODE.items():
        title, body = rows[name]
        assert title == normalize_text(value[:300]) and body == normalize_text(f"{value} {value}"), name
        intact += 1
    # The controls, joiners and marks survive normalisation (NFC keeps them; only whitespace collapses).
    assert "\u202e" in rows["bidi_ar"][0] and "\u2067" in rows["bidi_ar"][0]
    assert (
        "\u200d" in rows["zwj_ar"][0] and "\u200c" in rows["zwj_ar"][0] and "\u200d" in rows["zwj_emoji"][0]
    )
    assert "\u0651" in rows["combining_ar"][0] and "\u0335" in rows["combining_en"][0]
    assert len(rows["long_word_ar"][1]) == 2 * 20_000 + 1
    assert rows["nul"] == ("Bridge budget", "الميزانية الجديدة")
    assert len(quarantined) == len(surrogates)
    assert all("lone surrogate" in reason for _, reason in quarantined)
    assert {"ok", "Lone \ud800 high"}.isdisjoint(t for t, _ in rows.values())
    figure(
        "hostile",
        group="unicode",
        entry="pulse ingest",
        inputs=len(UNICODE) + 1 + len(surrogates),
        refused=len(quarantined),
        stored_intact=intact + 1,
        server_errors=0,
        fetched_private=0,
    )


# --------------------------------------------------------------------------- Unicode through the CMS API


def _create(cms: dict[str, Any], body: dict[str, Any], who: str = "author") -> httpx.Response:
    return httpx.post(f"{cms['base']}/items", json=body, headers=cms["headers"][who], timeout=30)


def test_unicode_edge_cases_through_the_cms_api(cms_server: dict[str, Any], figure: Any) -> None:
    base, admin = cms_server["base"], cms_server["headers"]["admin"]
    intact = 0
    for name, value in UNICODE.items():
        arabic = name.endswith("_ar")
        short = value[:300]
        body = {
            ("title_ar" if arabic else "title_en"): short,
            ("summary_ar" if arabic else "summary_en"): value[:2000],
            ("body_ar" if arabic else "body_en"): f"<p>{value}</p>",
        }
        created = _create(cms_server, body)
        assert created.status_code == 201, (name, created.text)
        item = httpx.get(f"{base}/items/{created.json()['id']}", headers=admin).json()
        view = item["ar" if arabic else "en"]
        assert view["title"] == short and view["summary"] == value[:2000], name
        assert value in view["body"], name
        intact += 1
    # NUL and lone surrogates: 422 in the one shape, wherever they are (title, nested field, field name,
    # query parameter); nothing stored.
    before = httpx.get(f"{base}/items", headers=admin).json()
    refused = 0
    raw_bodies = [
        json.dumps({"title_en": "NUL\x00 title"}),
        json.dumps({"title_en": "ok", "body_ar": "نص \ud800"}),
        json.dumps({"title_en": "ok", "seo": {"title_en": "\udfff"}}),
        '{"title_en": "ok", "tags": ["a\\u0000b"]}',
        '{"title_en\\ud800": "x"}',
    ]
    for raw in raw_bodies:
        resp = httpx.post(
            f"{base}/items",
            content=raw.encode(),
            headers={**cms_server["headers"]["author"], "Content-Type": "application/json"},
        )
        assert resp.status_code == 422 and one_shape(resp), (raw, resp.status_code, resp.text)
        refused += 1
    for query in ("q=%00", "q=a%00b", "q=%ED%A0%80", "q=%FF%FE", "status=%00"):
        resp = httpx.get(f"{base}/items?{query}", headers=admin)
        assert resp.status_code in (200, 422), (query, resp.status_code, resp.text)
        assert resp.status_code == 200 or one_shape(resp), (query, resp.text)
        refused += resp.status_code == 422
    assert httpx.get(f"{base}/items", headers=admin).json() == before
    figure(
        "hostile",
        group="unicode",
        entry="cms api",
        inputs=len(UNICODE) + len(raw_bodies) + 5,
        refused=refused,
        stored_intact=intact,
        server_errors=0,
        fetched_private=0,
    )


# --------------------------------------------------------------------------- injection-looking text


def query_cases(spec: dict[str, Any], values: list[str]) -> Iterator[tuple[str, str]]:
    """``(path, description)`` for every GET route in ``spec``: each query parameter set to each value,
    and each path parameter set to each value (the others filled with 1)."""
    for path, operations in spec["paths"].items():
        op = operations.get("get")
        if op is None:
            continue
        params = op.get("parameters", [])
        path_params = [p["name"] for p in params if p["in"] == "path"]
        filled = path
        for name in path_params:
            filled = filled.replace("{" + name + "}", "1")
        for param in params:
            for value in values:
                if param["in"] == "query":
                    yield f"{filled}?{param['name']}={quote(value, safe='')}", f"{path} {param['name']}"
                elif param["in"] == "path":
                    other = path
                    for name in path_params:
                        other = other.replace(
                            "{" + name + "}", quote(value, safe="") if name == param["name"] else "1"
                        )
                    yield other, f"{path} {param['name']}"


def probe(base: str, cases: Iterator[tuple[str, str]], headers: dict[str, str]) -> tuple[int, int, list[str]]:
    """Send every case; returns how many were sent, how many got a 4xx, and the failures (5xx, or a 4xx
    not in the one shape)."""
    failures = []
    sent = rejected = 0
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for url, what in cases:
            sent += 1
            resp = client.get(url)
            rejected += 400 <= resp.status_code < 500
            if resp.status_code >= 500 or (resp.status_code >= 400 and not one_shape(resp)):
                failures.append(f"{resp.status_code} {what}: {url} -> {resp.text[:200]}")
    return sent, rejected, failures


def test_injection_looking_text_in_cms_fields_is_stored_intact_and_inert(
    cms_server: dict[str, Any], engine: Any, figure: Any
) -> None:
    base, admin = cms_server["base"], cms_server["headers"]["admin"]
    intact = refused = 0
    for i, value in enumerate(INJECTION):
        taxonomy = httpx.post(f"{base}/categories", json={"name_en": value, "name_ar": value}, headers=admin)
        assert taxonomy.status_code in (201, 409, 422), (value, taxonomy.text)
        if taxonomy.status_code == 201:
            assert taxonomy.json()["name_en"] == value
        fields = {
            "title_en": f"{value} {i}",
            "title_ar": value,
            "summary_en": value,
            "summary_ar": value,
            "body_en": f"<p>{value}</p><script>alert('{i}')</script>",
            "body_ar": f'<p onclick="alert(1)">{value}</p>',
            "slug_en": f"{value}-{i}",
            "seo": {"title_en": value, "description_en": value, "keywords": [value]},
        }
        created = _create(cms_server, fields)
        if created.status_code == 422:  # the slug: only letters, digits and dashes (the one shape)
            assert one_shape(created), created.text
            refused += 1
            created = _create(cms_server, {k: v for k, v in fields.items() if k != "slug_en"})
        assert created.status_code == 201, (value, created.text)
        item = httpx.get(f"{base}/items/{created.json()['id']}", headers=admin).json()
        assert item["en"]["title"] == f"{value} {i}" and item["ar"]["title"] == value, value
        assert item["en"]["summary"] == value and item["seo"]["title_en"] == value, value
        for locale in ("en", "ar"):  # sanitised HTML: no script, no event handler
            assert "<script" not in item[locale]["body"] and "onclick" not in item[locale]["body"], value
        intact += 1
    spec = httpx.get(f"{base}/openapi.json").json()
    values = INJECTION + [v[:500] for v in UNICODE.values()]
    sent, rejected, failures = probe(base, query_cases(spec, values), admin)
    assert not failures, "\n".join(failures[:20])
    # Full-text search over the hostile items finds them by their words, and the tables are all there.
    found = httpx.get(f"{base}/items", params={"q": "DROP TABLE"}, headers=admin)
    assert found.status_code == 200 and found.json()["items"], found.text
    assert tables_left(engine) == set(TABLES)
    figure(
        "hostile",
        group="injection",
        entry="cms api",
        inputs=len(INJECTION) + sent,
        refused=refused + rejected,
        stored_intact=intact,
        server_errors=sum(1 for f in failures if f.startswith("5")),
        fetched_private=0,
    )


@pytest.fixture(scope="module")
def trends_servers(database_url: str) -> Iterator[dict[str, str]]:
    from serve_apps.trends.app import build_api
    from serve_apps.trends.args import TrendsArgs
    from serve_apps.trends.context import TrendsContext

    args = TrendsArgs(database_url=database_url)
    with (
        AppServer(build_api(TrendsContext(args), "trends")) as stories,
        AppServer(build_api(TrendsContext(args), "topics")) as topics,
    ):
        yield {"trends": stories.base, "topics": topics.base}


def test_injection_and_unicode_in_every_trends_filter_never_5xx(
    trends_servers: dict[str, str], engine: Any, figure: Any
) -> None:
    values = INJECTION + [v[:500] for v in UNICODE.values()] + ["2026-13-45", "-1", "9" * 30, "a\u0000b"]
    total = refused = 0
    failures: list[str] = []
    for base in trends_servers.values():
        spec = httpx.get(f"{base}/openapi.json").json()
        sent, rejected, found = probe(base, query_cases(spec, values), {})
        total += sent
        refused += rejected
        failures += found
    assert not failures, "\n".join(failures[:20])
    assert tables_left(engine) == set(TABLES)
    figure(
        "hostile",
        group="injection",
        entry="trends api",
        inputs=total,
        refused=refused,
        stored_intact=0,
        server_errors=0,
        fetched_private=0,
    )


@pytest.mark.long
def test_injection_and_unicode_in_every_search_and_recommend_filter_never_5xx(
    api: str, engine: Any, figure: Any
) -> None:
    """The search application (search, similar, recommend routes) as the search e2e module deploys it on
    Serve (its corpus ingested and embedded): every query and path parameter of every GET route gets each
    hostile value. Long: the deployment takes minutes on 2 cores."""
    values = INJECTION + [v[:500] for v in UNICODE.values()] + ["a\u0000b", "9" * 30, "-1"]
    spec = httpx.get(f"{api}/openapi.json", timeout=30).json()
    sent, rejected, failures = probe(api, query_cases(spec, values), {})
    assert not failures, "\n".join(failures[:20])
    # The search itself still answers, and finds nothing it should not.
    resp = httpx.get(f"{api}/v1/search", params={"q": "'; DROP TABLE documents;--", "k": 5}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert tables_left(engine) == set(TABLES)
    figure(
        "hostile",
        group="injection",
        entry="search api",
        inputs=sent,
        refused=rejected,
        stored_intact=0,
        server_errors=0,
        fetched_private=0,
    )
