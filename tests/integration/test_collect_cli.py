"""`pulse sources ...` and the collect loop against real PostgreSQL (and Ray for the loop)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cluster.ground.settings import get_settings
from jobs.collect.schedule import collect_loop
from storage.database import make_engine, make_session_factory, session_scope
from storage.sources import SourceRepository
from tests.integration.helpers import cli_runner
from tests.integration.test_collect_job import config, query
from tests.support.web_site import LocalSite


@pytest.fixture
def pulse(clean_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PULSE_DATABASE__URL", clean_db)
    get_settings.cache_clear()
    yield cli_runner(capsys)
    get_settings.cache_clear()


def test_sources_add_list_show_remove(pulse, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = pulse(
        "sources", "add", "world", "feed", "https://News.Example.com/rss?utm_source=x",
        "--category", "world", "--interval", "900", "--pattern", "/world/", "--max-items", "50",
    )  # fmt: skip
    assert code == 0 and "added source world" in out
    assert pulse("sources", "add", "dump", "files", str(tmp_path))[0] == 0
    code, out, _ = pulse("sources", "list")
    assert code == 0 and "world" in out and "https://news.example.com/rss" in out and "never" in out
    code, out, _ = pulse("sources", "show", "world")
    shown = json.loads(out)
    assert shown["url_patterns"] == ["/world/"] and shown["interval_s"] == 900 and shown["documents"] == 0
    # Errors are one line with what to do, exit code 2, nothing stored.
    code, _, err = pulse("sources", "add", "world", "feed", "https://other.example.com/rss")
    assert code == 2 and err.startswith("error: a source named 'world' already exists")
    code, _, err = pulse("sources", "add", "bad", "feed", "ftp://example.com/rss")
    assert code == 2 and "needs an http(s) URL" in err and err.count("\n") == 1
    code, _, err = pulse("sources", "add", "bad", "files", str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in err
    code, _, err = pulse("sources", "show", "nope")
    assert code == 2 and "no source named 'nope'" in err
    with pytest.raises(SystemExit):
        pulse("sources", "add", "bad", "podcast", "https://example.com/")
    assert pulse("sources", "remove", "world")[0] == 0
    code, out, _ = pulse("sources", "list")
    assert "world" not in out and "dump" in out


def test_collect_loop_collects_what_is_due_then_waits(
    clean_db: str, ray_session: None, local_site: LocalSite, tmp_path: Path
) -> None:
    engine = make_engine(clean_db, pool_size=1)
    with session_scope(make_session_factory(engine)) as session:
        SourceRepository(session).add(
            name="feed", kind="feed", uri=local_site.url("/local_feed.rss"), interval_s=600
        )
    engine.dispose()
    sleeps: list[float] = []
    collect_loop(config(clean_db, tmp_path), max_sleep_s=300, sleep=sleeps.append, iterations=2)
    assert query(clean_db, "SELECT count(*) FROM documents")[0][0] == 5
    runs = query(clean_db, "SELECT summary->>'sources', summary->>'new' FROM collect_runs ORDER BY id")
    assert runs == [("1", "5")]  # the second pass found nothing due and recorded no run
    assert sleeps == [300]  # the source is due again in 600 s; the loop re-checks at least every 300 s
