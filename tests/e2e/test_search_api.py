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
NAMESPACE = "pulse-e2e"
BASE = f"http://127.0.0.1:{PORT}"


STORAGE: dict[str, str] = {}


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
    STORAGE["uri"] = storage
    run_embed(
        EmbedJobConfig(database_url=database_url, storage_uri=storage, model_name="default", progress=False)
    )
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    app = load_builder(SEARCH_APP_IMPORT_PATH)(
        {
            "database_url": database_url,
            "storage_uri": storage,
            "namespace": NAMESPACE,
            "index_poll_interval_s": 1,
            "model_refresh_s": 1,
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
    assert body["level"] == "document" and body["model"]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
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


def test_chunk_level_search_ranks_documents_by_their_best_chunk(api: str) -> None:
    params = {"q": "students march against gun violence", "k": 5, "level": "chunk"}
    deadline = time.monotonic() + 60
    while (resp := httpx.get(f"{api}/v1/search", params=params, timeout=30)).status_code == 503:
        assert resp.headers["Retry-After"] and time.monotonic() < deadline  # the chunk index loads
        time.sleep(0.5)
    body = resp.json()
    assert resp.status_code == 200 and body["level"] == "chunk"
    ids = [r["id"] for r in body["results"]]
    assert len(ids) == 5 and len(set(ids)) == 5
    assert httpx.get(f"{api}/v1/search", params={**params, "level": "page"}).status_code == 422


def test_model_switch_is_atomic_and_never_serves_a_half_built_index(  # type: ignore[no-untyped-def]
    api: str, database_url: str, engine
) -> None:
    """Runs last: it leaves the app on a new entry (titles only) of the same model."""
    import threading

    from sqlalchemy import text

    from jobs.embed.activation import activate_entry
    from jobs.embed.registry import entry_spec
    from storage.database import make_session_factory, session_scope
    from storage.model_registry import ModelRegistry

    _, spec = entry_spec("default", recipe={"fields": ["title"]})
    with session_scope(make_session_factory(engine)) as session:
        entry = ModelRegistry(session).register(spec)
        old = ModelRegistry(session).active()
    assert old is not None and entry.status == "building"
    stop = threading.Event()
    seen: list[tuple[int, int, int]] = []  # (client, status, entry id serving)

    def client(n: int) -> None:
        while not stop.is_set():
            r = httpx.get(f"{api}/v1/search", params={"q": "royal wedding", "k": 5}, timeout=60)
            body = r.json()
            assert r.status_code == 200 and len(body["results"]) == 5, body
            seen.append((n, r.status_code, body["model"]["id"]))

    clients = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in clients:
        t.start()
    try:
        result = activate_entry(
            EmbedJobConfig(
                database_url=database_url,
                storage_uri=STORAGE["uri"],
                model_name="default",
                model_id=entry.id,
                max_actors=1,
                progress=False,
            ),
            namespace=NAMESPACE,
        )
        assert result.replaced == old.id
        before = len(seen)
        deadline = time.monotonic() + 120
        while not any(e == entry.id for _, _, e in seen[before:]) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
    finally:
        stop.set()
        for t in clients:
            t.join()
    served = [e for _, _, e in seen]
    assert entry.id in served, "search never moved to the new entry"
    for n in range(4):  # each client sees the old entry, then the new one, never back
        mine = [e for c, _, e in seen if c == n]
        switch = mine.index(entry.id) if entry.id in mine else len(mine)
        assert set(mine[:switch]) <= {old.id} and set(mine[switch:]) <= {entry.id}
    with engine.connect() as conn:
        statuses = dict(conn.execute(text("SELECT id, status FROM embedding_models")).all())
        total = conn.execute(text("SELECT count(*) FROM documents")).scalar_one()
    assert statuses[entry.id] == "active" and statuses[old.id] == "retired"
    import ray

    from cluster.constants import index_actor_name

    stats = ray.get(ray.get_actor(index_actor_name(entry.id), namespace=NAMESPACE).stats.remote())
    assert stats["ready"] and stats["size"] == total
