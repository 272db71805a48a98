"""The collect job end to end: real local Ray, real PostgreSQL, a real local web site with hostile routes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from sqlalchemy import text

from jobs.collect.errors import CollectBusy
from jobs.collect.fetch import FetchPolicy
from jobs.collect.pipeline import CollectJobConfig, run_collect
from storage.database import drop_database, ensure_database, make_engine, make_session_factory, session_scope
from storage.frontier import RunRepository
from storage.migrate import upgrade
from storage.raw_files import RawFileStore
from storage.sources import SourceRepository
from tests.conftest import ROOT, SHARED_DATA, sibling_database
from tests.support.web_site import LocalSite

LOCAL_ONLY = (r"^http://127\.0\.0\.\d+:\d+/",)

#: Hostile pages: route -> the quarantine reason the job must record.
HOSTILE = {
    "/slow?seconds=30": "timeout",
    "/loop/a": "redirect_loop",
    "/huge": "too_large",
    "/huge-declared": "too_large",
    "/image.png": "bad_content_type",
    "/page-as-json": "bad_content_type",
    "/ratelimited-long": "rate_limited",
    "/private/secret.html": "robots_disallowed",
    "/redirect-metadata": "blocked_address",
    "/redirect-internal": "blocked_address",
    "/redirect-file": "blocked_scheme",
    "/status/404": "http_error",
}


def policy(**overrides: Any) -> FetchPolicy:
    values: dict[str, Any] = {
        "per_host_delay_s": 0.02,
        "connect_timeout_s": 2.0,
        "total_timeout_s": 3.0,
        "max_retries": 2,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
        "max_retry_after_s": 5.0,
        "allow_networks": ("127.0.0.0/8",),
    }
    values.update(overrides)
    return FetchPolicy(**values)


def config(database_url: str, storage: Path, **overrides: Any) -> CollectJobConfig:
    values: dict[str, Any] = {
        "database_url": database_url,
        "storage_uri": str(storage),
        "policy": policy(),
        "fetch_partitions": 2,
        "progress": False,
    }
    values.update(overrides)
    return CollectJobConfig(**values)


def add_sources(database_url: str, specs: list[dict[str, Any]]) -> None:
    engine = make_engine(database_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            repo = SourceRepository(session)
            for spec in specs:
                repo.add(**spec)
    finally:
        engine.dispose()


def query(database_url: str, sql: str) -> list[Any]:
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql)).all())
    finally:
        engine.dispose()


@pytest.fixture
def site(local_site: LocalSite) -> Iterator[LocalSite]:
    local_site.reset()
    local_site.latency_s = 0.0
    yield local_site
    local_site.latency_s = 0.0


def test_collect_sources_of_every_kind_and_hostile_pages(
    clean_db: str, ray_session: None, site: LocalSite, tmp_path: Path
) -> None:
    imports = tmp_path / "imports"
    imports.mkdir()
    (imports / "page.html").write_bytes(
        (SHARED_DATA / "trafilatura_eval" / "pages" / "bmjv.de.konsum.html").read_bytes()
    )
    (imports / "docs.jsonl").write_text(
        json.dumps({"url": "https://example.org/a", "title": "Imported", "text": "An imported document."})
        + "\n{not json\n",
        encoding="utf-8",
    )
    other = site.start("127.0.0.2")
    specs: list[dict[str, Any]] = [
        {"name": "index", "kind": "sitemap", "uri": site.url("/sitemap_index.xml"), "category": "news"},
        {"name": "home", "kind": "site", "uri": other + "/", "url_patterns": LOCAL_ONLY},
        {
            "name": "techcrunch",
            "kind": "feed",
            "uri": site.url("/feeds/TechCrunch.xml"),
            "url_patterns": LOCAL_ONLY,
        },
        {"name": "broken-feed", "kind": "feed", "uri": site.url("/malformed.xml")},
        {"name": "local-feed", "kind": "feed", "uri": site.url("/local_feed.rss"), "category": "bbc"},
        {"name": "etag", "kind": "page", "uri": site.url("/etag/page.html")},
        {"name": "flaky", "kind": "page", "uri": site.url("/flaky")},
        {"name": "ratelimited", "kind": "page", "uri": site.url("/ratelimited")},
        {"name": "latin1", "kind": "page", "uri": site.url("/latin1.html")},
        {"name": "broken-html", "kind": "page", "uri": site.url("/malformed.html")},
        {"name": "nul", "kind": "page", "uri": site.url("/nul.html")},
        {"name": "imports", "kind": "files", "uri": str(imports), "language": "de"},
    ]
    specs += [
        {"name": f"hostile-{i}", "kind": "page", "uri": site.url(route)} for i, route in enumerate(HOSTILE)
    ]
    add_sources(clean_db, specs)
    storage = tmp_path / "storage"

    started = time.monotonic()
    summary = run_collect(config(clean_db, storage))
    elapsed = time.monotonic() - started

    news = sorted(p.name for p in (SHARED_DATA / "news_html" / "html").glob("*.html"))
    stored = {url for (url,) in query(clean_db, "SELECT canonical_url FROM documents")}
    assert {site.url(f"/news/{n}") for n in news} <= stored
    # Broken markup is parsed leniently; NUL characters (which PostgreSQL refuses) are dropped.
    for route in (
        "/etag/page.html",
        "/flaky",
        "/ratelimited",
        "/latin1.html",
        "/malformed.html",
        "/nul.html",
    ):
        assert site.url(route) in stored
    assert "https://example.org/a" in stored
    assert {site.url(f"/articles/{i}.html") for i in range(5)} <= stored
    # Hostile pages: each quarantined with its reason, none stored, nothing crashed.
    reasons = {ref: reason for ref, reason in query(clean_db, "SELECT source_ref, reason FROM quarantine")}
    for route, reason in HOSTILE.items():
        assert reasons.get(site.url(route)) == reason, route
        assert site.url(route) not in stored
    assert reasons[site.url("/malformed.xml")] == "malformed_feed"
    assert any(reason.startswith("invalid JSON") or "JSON" in reason for reason in reasons.values())
    assert not site.requests_for("/private/secret.html")  # robots.txt honoured: never requested
    # Metadata from the pages and the listings.
    rows = query(
        clean_db,
        "SELECT canonical_url, language, published_at, metadata->>'category', title FROM documents",
    )
    by_url = {r[0]: r for r in rows}
    arabic = by_url[site.url("/news/arabic_article.html")]
    assert arabic[1] == "ar" and arabic[2] is not None and arabic[3] == "news"
    assert by_url[site.url("/news/cnn_article.html")][4].startswith("After storm")
    assert (
        "Crème brûlée"
        in query(clean_db, f"SELECT text FROM documents WHERE canonical_url = '{site.url('/latin1.html')}'")[
            0
        ][0]
    )
    nul_title, nul_text = query(
        clean_db, f"SELECT title, text FROM documents WHERE canonical_url = '{site.url('/nul.html')}'"
    )[0]
    assert "\x00" not in nul_title + nul_text and "Bridge budget" in nul_title
    # The summary adds up and the run is recorded.
    assert summary.counts["new"] == len(stored)
    assert summary.counts["failed"] == len(HOSTILE) + 2  # + the broken feed + the bad JSONL line
    assert summary.failed_by_reason["blocked_address"] == 2
    assert summary.counts["filtered"] >= 20 + 2  # TechCrunch's items and the home page feeds' items
    assert summary.pending_left == 0
    runs = query(clean_db, "SELECT status, summary FROM collect_runs")
    assert runs[0][0] == "finished" and runs[0][1]["new"] == len(stored)
    assert query(clean_db, "SELECT count(*) FROM crawl_urls WHERE status = 'pending'")[0][0] == 0
    # Raw fetch records: Parquet partitioned by date, one row per fetched web URL.
    raw = RawFileStore(str(storage))
    fetched_urls = {url for path in raw.paths() for url in raw.read(path).column("url").to_pylist()}
    assert site.url("/news/cnn_article.html") in fetched_urls and site.url("/huge") in fetched_urls
    assert all(p.startswith("raw/date=") for p in raw.paths())
    assert elapsed < 120

    # A second run: listings are re-read, known pages are not fetched again, the validator page costs a 304.
    site.reset()
    again = run_collect(config(clean_db, storage, force=True))
    assert again.counts["new"] == 0 and again.counts["updated"] == 0
    assert {u for (u,) in query(clean_db, "SELECT canonical_url FROM documents")} == stored
    etag_requests = site.requests_for("/etag/page.html")
    assert etag_requests and "If-None-Match" in etag_requests[-1].headers
    assert not site.requests_for("/news/cnn_article.html")
    assert again.counts["unchanged"] >= 1


def test_same_story_on_several_hosts_is_stored_once_with_aliases(
    clean_db: str, ray_session: None, site: LocalSite, tmp_path: Path
) -> None:
    hosts = [site.start(f"127.0.0.{i}") for i in (3, 4, 5)]
    add_sources(
        clean_db,
        [
            {"name": f"copy-{i}", "kind": "page", "uri": f"{base}/wire/{i}.html"}
            for i, base in enumerate(hosts)
        ]
        + [{"name": "exact", "kind": "page", "uri": hosts[0] + "/news/reuters.com2.html"}]
        + [{"name": "other", "kind": "page", "uri": hosts[1] + "/news/reuters.com3.html"}],
    )
    summary = run_collect(config(clean_db, tmp_path / "storage"))
    docs = query(clean_db, "SELECT id, canonical_url FROM documents ORDER BY id")
    assert len(docs) == 2, docs  # the wire story once, the different AirAsia story once
    aliases = query(clean_db, "SELECT url, reason, document_id FROM document_aliases")
    assert len(aliases) == 3
    assert {reason for _, reason, _ in aliases} <= {"near_duplicate", "same_content"}
    assert len({doc_id for _, _, doc_id in aliases}) == 1
    assert summary.counts["duplicates"] == 3 and summary.counts["new"] == 2


def test_a_second_concurrent_run_is_refused(clean_db: str, ray_session: None, tmp_path: Path) -> None:
    engine = make_engine(clean_db, pool_size=1)
    try:
        with make_session_factory(engine)() as holder:
            assert RunRepository(holder).try_lock()
            with pytest.raises(CollectBusy, match="another collect run"):
                run_collect(config(clean_db, tmp_path / "storage"))
            RunRepository(holder).unlock()
    finally:
        engine.dispose()


def _documents(url: str) -> set[tuple[str, str]]:
    return {(u, h) for u, h in query(url, "SELECT canonical_url, content_hash FROM documents")}


def test_killed_midway_then_rerun_equals_one_clean_run(
    database_url: str, ray_session: None, site: LocalSite, tmp_path: Path
) -> None:
    hosts = [site.start(f"127.0.0.{i}") for i in (6, 7, 8)]
    # Distinct real pages per host (the first 48 trafilatura evaluation pages): dedup cannot make the
    # outcome depend on which copy came first.
    specs = [
        {"name": f"map-{i}", "kind": "sitemap", "uri": f"{base}/eval_sitemap.xml?count=16&start={16 * i}"}
        for i, base in enumerate(hosts)
    ]
    clean, killed = sibling_database(database_url, "_clean"), sibling_database(database_url, "_killed")
    for url in (clean, killed):
        ensure_database(url)
        upgrade(url)
        add_sources(url, specs)
    try:
        site.latency_s = 0.25  # 16 pages per host one after another: several seconds per host
        env = {
            **os.environ,
            "PULSE_DATABASE__URL": killed,
            "PULSE_STORAGE__URI": str(tmp_path / "killed"),
            "PULSE_COLLECT__ALLOW_NETWORKS": '["127.0.0.0/8"]',
            "PULSE_COLLECT__PER_HOST_DELAY_S": "0.02",
            "PULSE_COLLECT__FETCH_PARTITIONS": "3",
            "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
            "RAY_AUTH_MODE": "token",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobs.collect", "--no-progress"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            if query(killed, "SELECT count(*) FROM documents")[0][0] >= 5:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[0].decode()[-3000:]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        partial = _documents(killed)
        assert 5 <= len(partial) < 48
        assert query(killed, "SELECT count(*) FROM crawl_urls WHERE status = 'pending'")[0][0] > 0

        site.latency_s = 0.0
        resumed = run_collect(config(killed, tmp_path / "killed"))
        run_collect(config(clean, tmp_path / "clean"))
        assert resumed.pending_left == 0
        assert _documents(killed) == _documents(clean)
        assert len(_documents(clean)) == 48
        assert query(killed, "SELECT status FROM collect_runs ORDER BY id") == [
            ("interrupted",),
            ("finished",),
        ]
        assert query(killed, "SELECT count(*) FROM crawl_urls WHERE status <> 'done'")[0][0] == 0
    finally:
        site.latency_s = 0.0
        for url in (clean, killed):
            drop_database(url)
