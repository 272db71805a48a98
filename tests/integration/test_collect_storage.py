"""Collection storage against real PostgreSQL: sources, the frontier, duplicates, raw fetch files."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from jobs.collect.dedup import fingerprint
from jobs.collect.store import store_document
from storage.duplicates import DuplicateRepository
from storage.errors import SourceExists, SourceNotFound
from storage.frontier import FrontierRepository, NewURL, RunRepository, URLOutcome
from storage.raw_files import RawFileStore
from storage.sources import SourceRepository
from tests.conftest import SHARED_DATA

STORY = (SHARED_DATA / "news_html" / "expected_text_newspaper" / "cnn.txt").read_text(encoding="utf-8")


def test_sources_add_get_due_remove(session: Session) -> None:
    repo = SourceRepository(session)
    row = repo.add(name="feed-a", kind="feed", uri="http://a.example/feed", interval_s=600, category="world")
    assert row.category == "world" and row.last_collected_at is None
    with pytest.raises(SourceExists):
        repo.add(name="feed-a", kind="feed", uri="http://b.example/feed")
    repo.add(name="import", kind="file", uri="/tmp/x.jsonl")  # `pulse ingest` source: never collected
    assert [s.name for s in repo.due()] == ["feed-a"]
    assert repo.next_due_in_s() == 0.0
    repo.mark_collected([row.id])
    assert repo.due() == []
    assert [s.name for s in repo.due(force=True)] == ["feed-a"]
    assert 590 <= (repo.next_due_in_s() or 0) <= 600
    session.execute(text("UPDATE sources SET last_collected_at = now() - interval '601 seconds'"))
    assert [s.name for s in repo.due()] == ["feed-a"]
    repo.remove("feed-a")
    with pytest.raises(SourceNotFound):
        repo.get("feed-a")


def test_frontier_seed_add_record_and_retry(session: Session) -> None:
    sid = SourceRepository(session).add(name="s", kind="feed", uri="http://a.example/feed").id
    frontier = FrontierRepository(session)
    root = NewURL("http://a.example/feed", sid, "feed", "http://a.example:80", 0, {})
    assert frontier.seed([root]) == 1
    assert frontier.seed([root]) == 0  # already pending
    pages = [
        NewURL(f"http://a.example/{i}", sid, "page", "http://a.example:80", 1, {"title": "t"})
        for i in range(3)
    ]
    assert frontier.add(pages + pages[:1]) == 3
    assert frontier.add(pages) == 0
    run_id = RunRepository(session).start()
    frontier.record(URLOutcome("http://a.example/feed", "done", 200, etag='"v1"'), run_id=run_id)
    frontier.record(
        URLOutcome("http://a.example/0", "failed", None, "timeout", retry_after_s=1), run_id=run_id
    )
    frontier.record(URLOutcome("http://a.example/1", "failed", 404, "http_error"), run_id=run_id)
    assert {r.url for r in frontier.pending()} == {"http://a.example/2"}
    assert frontier.failures_by_reason(run_id=run_id) == {"timeout": 1, "http_error": 1}
    assert frontier.seed([root]) == 1  # a new cycle re-queues the root, keeping its validators
    feed = next(r for r in frontier.pending() if r.kind == "feed")
    assert feed.etag == '"v1"'
    session.execute(
        text("UPDATE crawl_urls SET retry_at = now() - interval '1 second' WHERE retry_at IS NOT NULL")
    )
    assert frontier.requeue_retries() == 1  # the timeout, not the 404


def test_collect_lock_is_exclusive(engine) -> None:  # type: ignore[no-untyped-def]
    with Session(engine) as first, Session(engine) as second:
        assert RunRepository(first).try_lock()
        assert not RunRepository(second).try_lock()
        RunRepository(first).unlock()
        assert RunRepository(second).try_lock()
        RunRepository(second).unlock()


def _doc(url: str, text_: str, title: str = "Storm") -> dict[str, object]:
    fp = fingerprint(text_)
    return {
        "canonical_url": url,
        "title": title,
        "text": text_,
        "language": "en",
        "published_at": "2013-11-27T00:00:00+00:00",
        "metadata": {},
        "signature": base64.b64encode(fp.signature).decode() if fp else None,
        "buckets": list(fp.buckets) if fp else [],
    }


def test_exact_and_near_duplicates_become_aliases(session: Session) -> None:
    sid = SourceRepository(session).add(name="s", kind="sitemap", uri="http://a.example/s.xml").id
    kw = {"source_id": sid, "near_duplicate_threshold": 0.8}
    first, outcome = store_document(session, _doc("http://a.example/storm", STORY), fetched_url=None, **kw)
    assert outcome == "new"
    again = store_document(session, _doc("http://a.example/storm", STORY), fetched_url=None, **kw)
    assert again == (first, "unchanged")
    same = store_document(session, _doc("http://b.example/copy", STORY), fetched_url=None, **kw)
    assert same == (first, "duplicates")
    wire = "Reporting by our wire partner. " + STORY + " Copyright 2013. All rights reserved."
    near = store_document(
        session, _doc("http://c.example/wire", wire), fetched_url="http://c.example/wire?ref=rss", **kw
    )
    assert near == (first, "duplicates")
    other = store_document(
        session, _doc("http://d.example/other", STORY[: len(STORY) // 3]), fetched_url=None, **kw
    )
    assert other[1] == "new" and other[0] != first
    aliases = DuplicateRepository(session).aliases(first)
    assert [(u, r) for u, r, _ in aliases] == [
        ("http://b.example/copy", "same_content"),
        ("http://c.example/wire", "near_duplicate"),
        ("http://c.example/wire?ref=rss", "near_duplicate"),
    ]
    assert 0.8 <= (aliases[1][2] or 0) < 1.0
    count = session.execute(text("SELECT count(*) FROM documents")).scalar_one()
    assert count == 2


def test_raw_fetch_records_are_partitioned_parquet(tmp_path: Path) -> None:
    store = RawFileStore(str(tmp_path))
    day = datetime(2026, 11, 23, tzinfo=UTC)
    path = store.write(
        [{"url": "http://a.example/", "status": 200, "body": b"<html>", "fetched_at": day, "source_id": 1}],
        run_id=7,
        day=day,
    )
    assert path is not None and path.startswith("raw/date=2026-11-23/run=7/")
    assert store.paths() == [path]
    table = store.read(path)
    assert table.column("body").to_pylist() == [b"<html>"]
    assert store.write([], run_id=7, day=day) is None


def test_a_record_postgresql_refuses_is_quarantined_not_fatal(clean_db: str) -> None:
    from jobs.collect.store import StoreBatch
    from storage.database import make_engine, make_session_factory, session_scope

    engine = make_engine(clean_db, pool_size=1)
    with session_scope(make_session_factory(engine)) as session:
        source = SourceRepository(session).add(name="s", kind="page", uri="http://a.example/p")
        FrontierRepository(session).seed(
            [NewURL("http://a.example/p", source.id, "page", "http://a.example:80", 0, {})]
        )
    store = StoreBatch(
        database_url=clean_db,
        run_id=1,
        sources={source.id: source},
        near_duplicate_threshold=0.8,
        max_depth=3,
    )
    bad = _doc("http://a.example/p", STORY) | {"language": "x" * 40}  # over the column's 16 characters
    record = {
        "url": "http://a.example/p",
        "source_id": source.id,
        "kind": "page",
        "depth": 0,
        "outcome": "document",
        "documents": json.dumps([bad]),
        "status": 200,
    }
    with session_scope(make_session_factory(engine)) as session:
        session.execute(text("INSERT INTO collect_runs (id) OVERRIDING SYSTEM VALUE VALUES (1)"))
    out = store.store_all([record])[0]
    assert out["failed"] == 1 and out["error"] == "store_error"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM documents")).scalar_one() == 0
        assert conn.execute(text("SELECT reason FROM quarantine")).scalar_one() == "store_error"
        assert conn.execute(text("SELECT status, error FROM crawl_urls")).one() == ("failed", "store_error")
    store.engine.dispose()
    engine.dispose()
