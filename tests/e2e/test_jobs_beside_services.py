"""The smallest machine (ARCHITECTURE.md principle 5): on a Ray node declaring 2 CPUs with the platform
deployed (search and CMS apps, index and keyword actors, the CMS scheduler), the collect job is placed and
finishes, and the embedding job beside the idle services runs one encoder per core.

The node runs in a subprocess (``tests.support.services_probe``): the test session may hold its own Ray
already, and one process holds one Ray.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from jobs.ingest.loader import ingest_file
from storage.database import make_session_factory, session_scope
from storage.sources import SourceRepository
from tests.conftest import SHARED_DATA
from tests.integration.helpers import sample_subset
from tests.support.probe_run import run_probe
from tests.support.web_site import LocalSite

PROBE_TIMEOUT_S = 480


@pytest.fixture
def site() -> Iterator[LocalSite]:
    with LocalSite() as local:
        yield local


def test_collect_and_embed_run_beside_the_deployed_platform_on_2_cpus(
    clean_db: str,
    engine: Engine,
    site: LocalSite,
    tmp_path: Path,
) -> None:
    ingest_file(sample_subset(tmp_path / "subset.jsonl", n_other=30), database_url=clean_db, source_name="hp")
    with session_scope(make_session_factory(engine)) as session:
        SourceRepository(session).add(name="news", kind="sitemap", uri=site.url("/sitemap.xml"))

    result = run_probe(
        "tests.support.services_probe",
        clean_db,
        str(tmp_path / "var"),
        timeout_s=PROBE_TIMEOUT_S,
        clear_pulse_env=True,
    )
    print("resources beside the platform:", json.dumps(result))  # the measurement, shown with -s

    assert result["total_cpus"] == 2.0, result
    # Idle services reserve a small share of the node; jobs get the rest.
    assert result["services_cpus"] <= 0.3, result
    assert result["free_cpus"] >= 1.7, result
    collect = result["collect"]
    news = sorted(p.name for p in (SHARED_DATA / "news_html" / "html").glob("*.html"))
    assert collect["run_id"] is not None and collect["pending_left"] == 0, collect
    assert collect["new"] >= len(news), collect
    # Extraction runs on both cores beside the services (fractional CPUs), not one whole CPU or none.
    assert collect["extract_tasks"] == 2, collect
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT count(*) FROM documents WHERE canonical_url LIKE :site"),
            {"site": site.url("/news/") + "%"},
        ).scalar_one()
    assert stored >= len(news)
    embed = result["embed"]
    assert embed["pending"] == collect["new"] and embed["embedded"] >= len(news), embed
    assert embed["actors"] == 2, embed  # one encoder per core beside the idle services
