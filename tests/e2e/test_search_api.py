"""The search application through Serve's HTTP proxy, with real clients."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from ray import serve

from jobs.embed.pipeline import EmbedJobConfig, run_embed
from jobs.ingest.loader import ingest_file
from tests.integration.helpers import PROTEST_WORDS, sample_subset

PORT = 8012
BASE = f"http://127.0.0.1:{PORT}"


@pytest.fixture(scope="module")
def api(
    ray_session: None, database_url: str, engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    from cluster.constants import SEARCH_APP_IMPORT_PATH
    from cluster.serve_config import load_builder
    from tests.conftest import TABLES

    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    tmp = tmp_path_factory.mktemp("search")
    corpus = sample_subset(tmp / "corpus.jsonl", n_other=300)
    ingest_file(corpus, database_url=database_url, source_name="huffpost_2018")
    storage = str(tmp / "storage")
    run_embed(
        EmbedJobConfig(database_url=database_url, storage_uri=storage, model_name="default", progress=False)
    )
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    app = load_builder(SEARCH_APP_IMPORT_PATH)(
        {
            "database_url": database_url,
            "storage_uri": storage,
            "namespace": "pulse-e2e",
            "index_poll_interval_s": 1,
        }
    )
    serve.run(app, name="search", route_prefix="/")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if httpx.get(f"{BASE}/readyz", timeout=10).status_code == 200:
            break
        time.sleep(0.5)
    yield BASE
    serve.delete("search")


def test_health_ready_and_docs(api: str) -> None:
    assert httpx.get(f"{api}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{api}/readyz").json()
    assert ready["status"] == "ready" and ready["vectors"] > 300
    assert httpx.get(f"{api}/docs").status_code == 200
    spec = httpx.get(f"{api}/openapi.json").json()
    assert "/v1/search" in spec["paths"]


def test_search_finds_the_2018_student_gun_violence_protests(api: str) -> None:
    resp = httpx.get(
        f"{api}/v1/search", params={"q": "students march against gun violence", "k": 5}, timeout=30
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["query"] == "students march against gun violence"
    results = body["results"]
    assert len(results) == 5
    assert set(results[0]) == {"id", "title", "url", "published_at", "score"}
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    on_topic = [
        r for r in results if any(w in r["title"].lower() for w in ("gun", "march", "walk", "student"))
    ]
    assert len(on_topic) >= 4, results
    assert all(r["published_at"].startswith("2018-0") for r in results)


def test_k_bounds_and_blank_queries_are_422_in_one_shape(api: str) -> None:
    cases = [
        {"q": ""},
        {"q": "   "},
        {},
        {"q": "x", "k": 0},
        {"q": "x", "k": 101},
        {"q": "x", "k": "ten"},
        {"q": "x" * 1001},
    ]
    for params in cases:
        resp = httpx.get(f"{api}/v1/search", params=params)
        assert resp.status_code == 422, params
        error = resp.json()["error"]
        assert error["code"] == "invalid_request" and error["message"], params
    assert len(httpx.get(f"{api}/v1/search", params={"q": "wedding", "k": 100}).json()["results"]) == 100
    assert httpx.get(f"{api}/nope").json()["error"]["code"] == "not_found"


def test_32_concurrent_clients_all_succeed(api: str) -> None:
    queries = [f"{w} news" for w in PROTEST_WORDS] * 20

    def one(q: str) -> int:
        return httpx.get(f"{api}/v1/search", params={"q": q, "k": 10}, timeout=60).status_code

    with ThreadPoolExecutor(max_workers=32) as pool:
        codes = list(pool.map(one, queries))
    assert codes == [200] * len(queries)
