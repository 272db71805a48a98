"""The backup / restore drill: a platform with documents, vectors, CMS items and trends is backed up while
its search application serves, restored into a new empty database and a new empty storage folder, and the
search application brought up on the restored pair answers exactly as the original did.

Compared: row counts of every table; document, CMS item, story and topic ids; the top 10 of five searches
(hybrid, keyword, vector) over HTTP.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
from ray import serve
from sqlalchemy import text

from cluster.ground.settings import get_settings
from jobs.embed.pipeline import EmbedJobConfig, run_embed
from jobs.ingest.loader import ingest_file
from storage.backup_layout import list_backups, read_manifest
from storage.database import drop_database
from tests.conftest import CMS_TABLES, sibling_database, truncate
from tests.integration.helpers import PROTEST_WORDS, cli_runner, sample_subset
from tests.integration.test_trend_queries import seed_trends
from tests.support.platform_compare import ids, table_counts

PORT = 8012  # the session's Serve proxy (the other e2e modules use the same one)
BASE = f"http://127.0.0.1:{PORT}"
#: (query, mode): the searches compared before and after the restore.
SEARCHES = (
    ("students march against gun violence", "hybrid"),
    ("gun violence", "keyword"),
    ("royal wedding", "vector"),
    ("stormy daniels lawsuit", "hybrid"),
    ("school shooting survivors", "vector"),
)


def deploy_search(database_url: str, storage: str, namespace: str) -> None:
    from cluster.ground.constants import SEARCH_APP_IMPORT_PATH
    from cluster.top.serve_config import load_builder

    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    args = {
        "database_url": database_url,
        "storage_uri": storage,
        "namespace": namespace,
        "index": {
            "poll_interval_s": 1,
            "snapshot_interval_s": 1,
            "shards": 2,
            "num_cpus": 0.1,
            "keyword_num_cpus": 0.1,
        },
        "search": {"deadline_ms": 5000},
        "model_refresh_s": 1,
    }
    serve.run(load_builder(SEARCH_APP_IMPORT_PATH)(args), name="search", route_prefix="/")


def wait_ready(vectors: int | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        resp = httpx.get(f"{BASE}/readyz", timeout=10)
        if resp.status_code == 200 and (vectors is None or resp.json()["vectors"] == vectors):
            return resp.json()  # type: ignore[no-any-return]
        time.sleep(0.5)
    raise AssertionError(f"the search application was not ready in 120 s: {resp.status_code} {resp.text}")


def top10() -> dict[tuple[str, str], list[int]]:
    found = {}
    for q, mode in SEARCHES:
        resp = httpx.get(f"{BASE}/v1/search", params={"q": q, "k": 10, "mode": mode}, timeout=30)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["partial"] is False and len(body["results"]) == 10, body
        found[(q, mode)] = [r["id"] for r in body["results"]]
    return found


def stop_search(namespace: str) -> None:
    """Delete the application and the detached actors it started (index shards, profile actor)."""
    serve.delete("search")
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["namespace"] == namespace:
            with contextlib.suppress(ValueError):
                ray.kill(ray.get_actor(actor["name"], namespace=namespace), no_restart=True)


@pytest.fixture(scope="module")
def original(  # type: ignore[no-untyped-def]
    ray_session: None, database_url: str, engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """The platform to back up: trends (seeded rows), CMS items, ~160 documents embedded."""
    seeded = seed_trends(engine)  # empties the document tables, then writes stories and topics
    assert seeded
    truncate(engine, CMS_TABLES)
    with engine.begin() as conn:
        for n in range(3):
            conn.execute(
                text(
                    "INSERT INTO cms_items (type, title_en, body_en, status) "
                    "VALUES ('article', :t, '<p>x</p>', 'draft')"
                ),
                {"t": f"Item {n}"},
            )
    tmp = tmp_path_factory.mktemp("drill")
    corpus = sample_subset(
        tmp / "corpus.jsonl", n_other=120, must_contain=(*PROTEST_WORDS, "stormy", "royal wedding")
    )
    ingest_file(corpus, database_url=database_url, source_name="huffpost_2018")
    storage = str(tmp / "storage")
    run_embed(
        EmbedJobConfig(database_url=database_url, storage_uri=storage, model_name="default", progress=False)
    )
    yield database_url, storage


def test_a_restored_platform_answers_the_same_searches(  # type: ignore[no-untyped-def]
    original: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, storage = original
    deploy_search(url, storage, "pulse-e2e-drill")
    before_ready = wait_ready()
    before = top10()
    counts = table_counts(url)
    assert counts["documents"] >= 150 and counts["cms_items"] == 3 and counts["stories"] > 0
    assert counts["vector_files"] > 0 and counts["topics"] > 0

    # Through the front door: `pulse backup` while the search application serves (its shards snapshot every
    # second meanwhile), then `pulse restore` into a new empty database and storage folder.
    pulse = cli_runner(capsys)
    monkeypatch.setenv("PULSE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("PULSE_DATABASE__URL", url)
    monkeypatch.setenv("PULSE_STORAGE__URI", storage)
    get_settings.cache_clear()
    dest = tmp_path / "backups"
    code, out, err = pulse("backup", str(dest), "--no-progress")
    assert code == 0, err
    ((name, complete),) = list_backups(str(dest))
    location = str(dest / name)
    assert complete and out.startswith(f"backup {location}")
    assert read_manifest(location).consistency.vector_files == counts["vector_files"]
    stop_search("pulse-e2e-drill")

    restored_url = sibling_database(url, "_drill")
    restored_storage = tmp_path / "restored-storage"
    try:
        monkeypatch.setenv("PULSE_DATABASE__URL", restored_url)
        monkeypatch.setenv("PULSE_STORAGE__URI", str(restored_storage))
        get_settings.cache_clear()
        code, out, err = pulse("restore", location, "--no-progress")
        assert code == 0, err
        assert table_counts(restored_url) == counts
        for table in ("documents", "cms_items", "stories", "topics", "vector_files", "embedding_models"):
            assert ids(restored_url, table) == ids(url, table), table

        deploy_search(restored_url, str(restored_storage), "pulse-e2e-drill-restored")
        after_ready = wait_ready(before_ready["vectors"])
        assert after_ready["keyword_documents"] == before_ready["keyword_documents"]
        after = top10()
        assert after == before, json.dumps({"before": list(before.values()), "after": list(after.values())})
        stop_search("pulse-e2e-drill-restored")
    finally:
        get_settings.cache_clear()
        drop_database(restored_url)
