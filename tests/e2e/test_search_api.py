"""The search application through Serve's HTTP proxy, with real clients."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import ray
from ray import serve

from cluster.ground.constants import PROFILE_ACTOR_NAME
from jobs.embed.pipeline import EmbedJobConfig, run_embed
from jobs.ingest.loader import ingest_file
from tests.integration.helpers import PROTEST_WORDS, sample_subset

#: Real sentences from SIB-200 (FLORES-200, CC BY-SA 4.0), ../shared/data/sib200_ar_en/arb_Arab/train.tsv.
ARABIC_SENTENCES = (
    "تركيا محاطة بالبحار من ثلاث جهات: بحر إيجه من الغرب ، والبحر الأسود من الشمال والبحر الأبيض المتوسط "
    "من الجنوب.",
    "ألقِ نظرة على الرحلات التي يقوم الوكيل بترويجها، سواءً كان ذلك على موقع إلكتروني أو في نافذة متجر.",
    "يبلغ عدد سكان مدينة الفاتيكان حوالي ٨٠٠. وهي أصغر دولة مستقلة في العالم وأقل تعدادٍ سكانيِّ.",
)

PORT = 8012
NAMESPACE = "pulse-e2e"
BASE = f"http://127.0.0.1:{PORT}"


STORAGE: dict[str, str] = {}


@pytest.fixture(scope="module")
def api(
    ray_session: None, database_url: str, engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:  # type: ignore[no-untyped-def]

    from cluster.ground.constants import SEARCH_APP_IMPORT_PATH
    from cluster.top.serve_config import load_builder
    from tests.conftest import TABLES, truncate

    truncate(engine, TABLES)
    tmp = tmp_path_factory.mktemp("search")
    # The protest stories, every Stormy Daniels and Stormi (Kylie Jenner's daughter) story, 300 others.
    corpus = sample_subset(
        tmp / "corpus.jsonl", n_other=300, must_contain=(*PROTEST_WORDS, "stormy", "stormi")
    )
    ingest_file(corpus, database_url=database_url, source_name="huffpost_2018")
    # Arabic sentences as a user writes them: no language field (Pulse identifies it).
    arabic = tmp / "sib200_ar.jsonl"
    arabic.write_text(
        "".join(json.dumps({"id": i, "title": "", "text": t}) + "\n" for i, t in enumerate(ARABIC_SENTENCES)),
        encoding="utf-8",
    )
    ingest_file(arabic, database_url=database_url, source_name="sib200_ar")
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
            # Two shards per index, small CPU reservations: several entries' actors fit on 2 CPUs.
            "index": {
                "poll_interval_s": 1,
                "snapshot_interval_s": 1,
                "shards": 2,
                "num_cpus": 0.1,
                "keyword_num_cpus": 0.1,
            },
            "search": {"deadline_ms": 2000},
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
    # More-like-this asked the profile actor for co-reads: stop it with the module.
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(PROFILE_ACTOR_NAME, namespace=NAMESPACE), no_restart=True)


def test_health_ready_and_docs(api: str) -> None:
    assert httpx.get(f"{api}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{api}/readyz").json()
    assert ready["status"] == "ready" and ready["vectors"] > 300
    assert [s["shard"] for s in ready["shards"]] == [0, 1] and all(s["ready"] for s in ready["shards"])
    assert sum(s["vectors"] for s in ready["shards"]) == ready["vectors"] == ready["keyword_documents"]
    assert all(s["index"] == "Flat" for s in ready["shards"])  # small shards search exactly
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
    assert set(results[0]) == {
        "id",
        "title",
        "url",
        "published_at",
        "language",
        "source",
        "category",
        "score",
        "story",  # the trend story it belongs to, or null
        "snippet",  # a passage of its text around the query's words
    }
    assert all(isinstance(r["snippet"], str) and r["snippet"] for r in results)
    assert body["mode"] == "hybrid" and body["partial"] is False and body["shards"]["total"] == 3
    assert {"embed", "vector", "keyword", "fuse", "db"} <= set(body["timings_ms"])
    assert "vector;dur=" in resp.headers["Server-Timing"]
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


def _search(api: str, **params: object) -> dict:  # type: ignore[type-arg]
    resp = httpx.get(f"{api}/v1/search", params=params, timeout=30)  # type: ignore[arg-type]
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def test_every_mode_answers_and_keyword_results_contain_the_terms(api: str) -> None:
    for mode in ("vector", "keyword", "hybrid"):
        body = _search(api, q="gun violence", k=10, mode=mode)
        assert body["mode"] == mode and len(body["results"]) == 10
    keyword = _search(api, q="gun violence", k=10, mode="keyword")["results"]
    for r in keyword:
        doc = httpx.get(f"{api}/v1/documents/{r['id']}").json()
        text = f"{doc['title']} {doc['text']}".lower()
        assert "gun" in text or "violen" in text, doc["title"]


def test_filters_never_return_documents_outside_them(api: str) -> None:
    body = _search(api, q="election news", k=20, category="POLITICS")
    assert body["results"] and all(r["category"] == "POLITICS" for r in body["results"])
    both = _search(api, q="election news", k=20, category="politics,crime", mode="vector")
    assert {r["category"] for r in both["results"]} <= {"POLITICS", "CRIME"}
    dated = _search(api, q="news", k=20, since="2018-05-01", until="2018-05-15T00:00:00Z")
    assert all("2018-05-01" <= r["published_at"][:10] < "2018-05-15" for r in dated["results"])
    assert dated["results"]
    english = _search(api, q="news", lang="en", k=5)["results"]
    assert english and all(r["language"] == "en" for r in english)
    assert {r["language"] for r in _search(api, q="news", lang="ar", mode="vector", k=5)["results"]} == {"ar"}
    assert _search(api, q="news", category="NO-SUCH-CATEGORY")["results"] == []
    assert _search(api, q="news", source="no-such-source", mode="keyword")["results"] == []


def test_the_quickstart_keyword_query_finds_stormy_daniels_not_stormi(api: str) -> None:
    # Ingested without a language, the sample was once analysed unstemmed while queries were stemmed:
    # "stormy daniels" then found only the stories about Stormi Webster.
    results = _search(api, q="stormy daniels", mode="keyword", k=10)["results"]
    assert len(results) == 10
    for r in results:
        doc = httpx.get(f"{api}/v1/documents/{r['id']}").json()
        assert "daniels" in f"{doc['title']} {doc['text']}".lower(), doc["title"]
        assert doc["language"] == "en"
    hybrid = _search(api, q="stormy daniels", k=5)["results"]
    assert all("daniels" in r["title"].lower() or "stormy" in r["title"].lower() for r in hybrid[:3])


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
def test_an_ingested_arabic_document_is_found_by_a_word_it_contains(api: str, mode: str) -> None:
    results = _search(api, q="تركيا", mode=mode, k=5)["results"]  # "Turkey"
    assert results, mode
    top = httpx.get(f"{api}/v1/documents/{results[0]['id']}").json()
    assert top["text"].startswith("تركيا") and top["language"] == "ar"
    # Another form of a word finds it through the Arabic stemmer: "رحلة" (a trip) -> "الرحلات" (the trips).
    trips = _search(api, q="رحلة", mode=mode, k=3)["results"]
    assert trips and trips[0]["source"] == "sib200_ar"


def test_bad_dates_cursors_and_ranges_are_422(api: str) -> None:
    for params in (
        {"q": "x", "since": "yesterday"},
        {"q": "x", "since": "2018-06-01", "until": "2018-05-01"},
        {"q": "x", "cursor": "not-a-cursor!"},
        {"q": "x", "mode": "fuzzy"},
    ):
        resp = httpx.get(f"{api}/v1/search", params=params)
        assert resp.status_code == 422, params
        assert resp.json()["error"]["code"] == "invalid_request"
    first = _search(api, q="wedding", k=3)
    other = httpx.get(f"{api}/v1/search", params={"q": "funeral", "k": 3, "cursor": first["next_cursor"]})
    assert other.status_code == 422 and "another query" in other.json()["error"]["message"]


def test_cursor_pages_continue_the_ranking(api: str) -> None:
    whole = [r["id"] for r in _search(api, q="wedding", k=12, mode="vector")["results"]]
    first = _search(api, q="wedding", k=6, mode="vector")
    second = _search(api, q="wedding", k=6, mode="vector", cursor=first["next_cursor"])
    assert [r["id"] for r in first["results"]] + [r["id"] for r in second["results"]] == whole


def test_document_and_similar_endpoints(api: str) -> None:
    hit = _search(api, q="students march against gun violence", k=1, mode="vector")["results"][0]
    doc = httpx.get(f"{api}/v1/documents/{hit['id']}").json()
    assert doc["id"] == hit["id"] and doc["title"] == hit["title"] and doc["text"]
    similar = httpx.get(f"{api}/v1/documents/{hit['id']}/similar", params={"k": 5}).json()
    ids = [r["id"] for r in similar["results"]]
    assert len(ids) == 5 and hit["id"] not in ids
    titles = " ".join(r["title"].lower() for r in similar["results"])
    assert any(w in titles for w in ("gun", "march", "student", "walkout", "shooting"))
    for path in ("/v1/documents/99999999", "/v1/documents/99999999/similar"):
        resp = httpx.get(f"{api}{path}")
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "document_not_found"
    assert httpx.get(f"{api}/v1/documents/0").status_code == 422


def test_a_stopped_shard_gives_partial_results_not_an_error(api: str) -> None:
    import os
    import signal

    import ray

    from cluster.ground.constants import index_actor_name

    entry_id = _search(api, q="anything", k=1)["model"]["id"]
    shard = ray.get_actor(index_actor_name(entry_id, 1, shards=2), namespace=NAMESPACE)
    pid = ray.get(shard.stats.remote()).pid
    os.kill(pid, signal.SIGSTOP)
    try:
        body = _search(api, q="students march against gun violence", k=5, mode="vector")
        assert body["partial"] is True and body["shards"] == {"answered": 1, "total": 2}
        assert len(body["results"]) == 5  # the other shard's documents still come back
    finally:
        os.kill(pid, signal.SIGCONT)
    assert _search(api, q="students march", k=5, mode="vector")["partial"] is False

    # No shard answering: vector search is a 503 with Retry-After, hybrid falls back to keyword results.
    pids = [
        stats.pid
        for stats in ray.get(
            [
                ray.get_actor(index_actor_name(entry_id, s, shards=2), namespace=NAMESPACE).stats.remote()
                for s in range(2)
            ]
        )
    ]
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    try:
        resp = httpx.get(f"{api}/v1/search", params={"q": "gun violence", "mode": "vector"}, timeout=30)
        assert resp.status_code == 503 and resp.headers["Retry-After"]
        assert resp.json()["error"]["code"] == "not_ready"
        body = _search(api, q="gun violence", k=5, mode="hybrid")
        assert body["partial"] is True and len(body["results"]) == 5
    finally:
        for p in pids:
            os.kill(p, signal.SIGCONT)


def test_model_switch_is_atomic_and_never_serves_a_half_built_index(  # type: ignore[no-untyped-def]
    api: str, database_url: str, engine
) -> None:
    """Runs last: it leaves the app on a new entry (titles only) of the same model."""
    import threading

    from sqlalchemy import text

    from cluster.top.activation import activate_entry
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
        # The entry embeds titles only: documents without one (the Arabic sentences) have nothing to embed.
        total = conn.execute(text("SELECT count(*) FROM documents WHERE title <> ''")).scalar_one()
    assert statuses[entry.id] == "active" and statuses[old.id] == "retired"
    import ray

    from cluster.ground.constants import index_actor_name

    shards = [
        ray.get(ray.get_actor(index_actor_name(entry.id, s, shards=2), namespace=NAMESPACE).stats.remote())
        for s in range(2)
    ]
    assert all(s.ready for s in shards) and sum(s.index.size for s in shards) == total
