"""Recommendations through Serve's HTTP proxy: events (idempotent, validated, access-checked), personal and
cold-start lists, examples, more-like-this with co-reads, experiments; with real HuffPost headlines
ingested and embedded, the real profile actor, and real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import ray
from ray import serve
from sqlalchemy import text

from jobs.embed.pipeline import EmbedJobConfig, run_embed
from jobs.ingest.loader import ingest_file
from tests.integration.helpers import sample_subset

PORT = 8012  # the session's Serve proxy (the other e2e modules use the same one)
NAMESPACE = "pulse-e2e-recommend"
BASE = f"http://127.0.0.1:{PORT}"
SECRET = "e2e-recommend-secret-" + "z" * 40


@dataclass(frozen=True)
class World:
    key: str  # an editor's API key
    viewer_key: str
    docs: dict[int, tuple[str, str]]  # id -> (category, title)
    vectors: dict[int, np.ndarray]

    def of(self, category: str) -> list[int]:
        return sorted(d for d, (c, _) in self.docs.items() if c == category)


async def _keys(database_url: str) -> tuple[str, str]:
    from storage.cms_users import ApiKeyRepository
    from storage.database import make_async_engine

    engine = make_async_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            from sqlalchemy.ext.asyncio import AsyncSession

            session = AsyncSession(bind=conn)
            _, editor = await ApiKeyRepository(session).create("e2e app", "editor", None)
            _, viewer = await ApiKeyRepository(session).create("e2e viewer", "viewer", None)
            await session.flush()
        return editor, viewer
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def world(  # type: ignore[no-untyped-def]
    ray_session: None, database_url: str, engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    from cluster.ground.constants import PROFILE_ACTOR_NAME, SEARCH_APP_IMPORT_PATH
    from cluster.top.serve_config import load_builder
    from tests.conftest import REC_TABLES, TABLES, truncate

    truncate(engine, (*TABLES, *REC_TABLES, "cms_api_keys"))
    tmp = tmp_path_factory.mktemp("recommend")
    corpus = sample_subset(tmp / "corpus.jsonl", n_other=250)
    ingest_file(corpus, database_url=database_url, source_name="huffpost_2018")
    storage = str(tmp / "storage")
    run_embed(
        EmbedJobConfig(database_url=database_url, storage_uri=storage, model_name="default", progress=False)
    )
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, metadata->>'category', title FROM documents")).all()
    docs = {int(i): (str(c), str(t)) for i, c, t in rows}
    key, viewer = asyncio.run(_keys(database_url))
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    app = load_builder(SEARCH_APP_IMPORT_PATH)(
        {
            "database_url": database_url,
            "storage_uri": storage,
            "namespace": NAMESPACE,
            "index": {"poll_interval_s": 1, "shards": 1, "num_cpus": 0.1, "keyword_num_cpus": 0.1},
            "model_refresh_s": 1,
            "jwt_secret": SECRET,
            "recommend": {"poll_interval_s": 1, "snapshot_interval_s": 0, "num_cpus": 0.05},
        }
    )
    serve.run(app, name="search", route_prefix="/")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if httpx.get(f"{BASE}/readyz", timeout=10).status_code == 200:
            break
        time.sleep(0.5)
    vectors = _vectors(storage)
    yield World(key, viewer, docs, vectors)
    serve.delete("search")
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(PROFILE_ACTOR_NAME, namespace=NAMESPACE), no_restart=True)


def _vectors(storage: str) -> dict[int, np.ndarray]:
    """Every document's stored vector (its document row, else its only chunk), from the embed job's files."""
    import pyarrow.parquet as pq

    from storage.vector_files import COL_CHUNK, COL_DOCUMENT_ID, COL_VECTOR, DOCUMENT_ROW

    out: dict[int, np.ndarray] = {}
    for path in sorted(Path(storage).rglob("*.parquet")):
        table = pq.read_table(path, columns=[COL_DOCUMENT_ID, COL_VECTOR, COL_CHUNK])
        for doc, vec, chunk in zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True):
            if chunk == DOCUMENT_ROW or (chunk == 0 and int(doc) not in out):
                out[int(doc)] = np.asarray(vec, np.float32)
    return out


def event(doc: int, type_: str = "click", *, user: str | None = "u1", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": extra.pop("event_id", uuid.uuid4().hex),
        "document_id": doc,
        "type": type_,
        "timestamp": extra.pop("timestamp", datetime.now(UTC).isoformat()),
        **extra,
    }
    if user is not None:
        body["user_id"] = user
    return body


def post_events(
    world: World, events: list[dict[str, Any]], *, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.post(
        f"{BASE}/v1/events",
        json={"events": events},
        headers={"X-API-Key": world.key} if headers is None else headers,
        timeout=30,
    )


def recommend(world: World, **params: Any) -> dict[str, Any]:
    resp = httpx.get(f"{BASE}/v1/recommend", params=params, headers={"X-API-Key": world.key}, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def stored(engine: Any, where: str = "true") -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM rec_events WHERE {where}")).scalar_one())


def test_events_are_stored_once_by_event_id(world: World, engine: Any) -> None:
    doc = world.of("POLITICS")[0]
    batch = [event(doc, user="dup", event_id="dup-1"), event(doc, "like", user="dup", event_id="dup-2")]
    first = post_events(world, batch)
    assert first.status_code == 200, first.text
    assert first.json() == {"stored": 2, "duplicates": []}
    again = post_events(world, [*batch, event(doc, "share", user="dup", event_id="dup-3")])
    assert again.json() == {"stored": 1, "duplicates": ["dup-1", "dup-2"]}
    assert stored(engine, "subject = 'user:dup'") == 3


def test_a_bad_event_refuses_the_whole_batch_with_a_reason_per_event(world: World, engine: Any) -> None:
    doc = world.of("POLITICS")[0]
    before = stored(engine)
    future = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    batch = [
        event(doc, user="bad"),  # valid: not stored either
        event(doc, "teleport", user="bad"),
        event(doc, user="bad", timestamp=future),
        event(10**12, user="bad"),
        event(doc, "dwell", user="bad"),  # no seconds
        event(doc, user=None),  # neither user nor session
    ]
    resp = post_events(world, batch)
    assert resp.status_code == 422
    error = resp.json()["error"]
    fields = {d["field"] for d in error["details"]}
    assert "events.1.type" in fields  # pydantic refuses the type first: one reason for the batch
    assert stored(engine) == before
    resp = post_events(world, [batch[0], *batch[2:]])
    assert resp.status_code == 422
    fields = {d["field"]: d["reason"] for d in resp.json()["error"]["details"]}
    assert set(fields) == {"events.1.timestamp", "events.2.document_id", "events.3.value", "events.4.user_id"}
    assert "ahead of the server" in fields["events.1.timestamp"]
    assert stored(engine) == before
    oversized = post_events(world, [event(doc, user="bad") for _ in range(1001)])
    assert oversized.status_code == 422 and oversized.json()["error"]["code"] == "invalid_request"
    assert stored(engine) == before


async def _reader(database_url: str) -> int:
    """A CMS user (an author) whose access token the recommendation routes take."""
    from storage.cms_users import UserRepository
    from storage.database import make_async_engine

    engine = make_async_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            from sqlalchemy.ext.asyncio import AsyncSession

            users = UserRepository(AsyncSession(bind=conn))
            found = await users.by_email("reader@pulse.test")
            made = found or await users.create("reader@pulse.test", "Reader", "not-a-password-hash", "author")
            return made.id
    finally:
        await engine.dispose()


def test_who_may_post_and_read_whose_events(world: World, database_url: str) -> None:
    from serve_apps.cms.security import TokenIssuer

    doc = world.of("POLITICS")[0]
    me = asyncio.run(_reader(database_url))
    mine_id, other_id = str(me), str(me + 1000)
    token = TokenIssuer(SECRET).access_token(me, "author")
    as_user = {"Authorization": f"Bearer {token}"}
    assert post_events(world, [event(doc, user=mine_id)], headers={}).status_code == 401
    assert post_events(world, [event(doc, user=other_id)], headers=as_user).status_code == 403
    assert post_events(world, [event(doc, user=mine_id)], headers=as_user).status_code == 200
    assert httpx.get(f"{BASE}/v1/recommend", params={"user_id": mine_id}).status_code == 401
    assert httpx.get(f"{BASE}/v1/recommend", params={"user_id": other_id}, headers=as_user).status_code == 403
    mine = httpx.get(f"{BASE}/v1/recommend", params={"user_id": mine_id}, headers=as_user, timeout=30)
    assert mine.status_code == 200 and mine.json()["strategy"] == "personal"
    anonymous_session = httpx.get(f"{BASE}/v1/recommend", params={"session_id": "s-unknown"}, timeout=30)
    assert anonymous_session.status_code == 200
    assert (
        httpx.post(
            f"{BASE}/v1/events", json={"events": [event(doc)]}, headers={"X-API-Key": "pk_nope"}
        ).status_code
        == 401
    )


def test_a_new_event_changes_the_next_list_within_a_second(world: World) -> None:
    sport, politics = world.of("SPORTS"), world.of("POLITICS")
    assert len(sport) >= 4 and len(politics) >= 4
    assert post_events(world, [event(d, user="reader") for d in politics[:3]]).status_code == 200
    first = recommend(world, user_id="reader", k=10)
    assert first["strategy"] == "personal"
    t0 = time.monotonic()
    assert post_events(world, [event(d, "like", user="reader") for d in sport[:3]]).status_code == 200
    second = recommend(world, user_id="reader", k=10)
    elapsed = time.monotonic() - t0
    assert [r["id"] for r in second["results"]] != [r["id"] for r in first["results"]]
    assert elapsed < 5  # generous on a loaded CI machine; the route applies the events before answering
    sports_share = lambda body: sum(r["category"] == "SPORTS" for r in body["results"])  # noqa: E731
    assert sports_share(second) > sports_share(first)


def test_seen_documents_are_excluded_and_reasons_name_what_was_read(world: World) -> None:
    read = world.of("ENTERTAINMENT")[:4]
    post_events(world, [event(d, user="seen") for d in read])
    body = recommend(world, user_id="seen", k=20)
    ids = [r["id"] for r in body["results"]]
    assert ids and not set(ids) & set(read)
    kinds = {r["reason"]["kind"] for r in body["results"]}
    assert kinds <= {"similar", "co_read", "trending", "popular", "fresh"}
    for r in body["results"]:
        assert r["reason"]["text"]
        if r["reason"]["kind"] == "similar":
            assert r["reason"]["document_id"] in read


def test_filters_are_respected(world: World) -> None:
    post_events(world, [event(d, user="filtered") for d in world.of("POLITICS")[:3]])
    body = recommend(world, user_id="filtered", k=10, category="ENTERTAINMENT")
    assert body["results"] and {r["category"] for r in body["results"]} == {"ENTERTAINMENT"}


def test_cold_start_is_popular_and_trending(world: World) -> None:
    popular = world.of("CRIME")[:2]
    post_events(world, [event(popular[0], user=f"crowd-{i}") for i in range(15)])  # the most read by far
    body = recommend(world, user_id="nobody-yet", k=5)
    assert body["strategy"] == "cold_start"
    assert body["results"][0]["id"] == popular[0]
    assert body["results"][0]["reason"]["kind"] == "popular"


def _mean_similarity(world: World, ids: list[int], doc: int) -> float:
    target = world.vectors[doc]
    return float(np.mean([world.vectors[i] @ target for i in ids]))


def test_negative_examples_push_results_away(world: World) -> None:
    positive = world.of("POLITICS")[0]
    negative = world.of("POLITICS")[1]
    plain = httpx.post(f"{BASE}/v1/recommend", json={"positive": [positive], "k": 10}, timeout=30).json()
    pushed = httpx.post(
        f"{BASE}/v1/recommend", json={"positive": [positive], "negative": [negative], "k": 10}, timeout=30
    ).json()
    assert plain["strategy"] == pushed["strategy"] == "examples"
    plain_ids = [r["id"] for r in plain["results"]]
    pushed_ids = [r["id"] for r in pushed["results"]]
    assert positive not in pushed_ids and negative not in pushed_ids
    assert _mean_similarity(world, pushed_ids, negative) < _mean_similarity(world, plain_ids, negative)
    by_text = httpx.post(
        f"{BASE}/v1/recommend", json={"positive": ["students march against gun violence"], "k": 5}, timeout=30
    )
    assert by_text.status_code == 200 and by_text.json()["results"][0]["reason"]["kind"] == "examples"
    missing = httpx.post(f"{BASE}/v1/recommend", json={"positive": [10**12]}, timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "document_not_found"
    assert httpx.post(f"{BASE}/v1/recommend", json={}, timeout=30).status_code == 422


def test_more_like_this_blends_in_what_readers_also_read(world: World) -> None:
    a, b = world.of("POLITICS")[5], world.of("ENTERTAINMENT")[6]
    post_events(world, [event(d, user=f"pair-{i}") for i in range(4) for d in (a, b)])
    body = httpx.get(f"{BASE}/v1/documents/{a}/similar", params={"k": 10}, timeout=30).json()
    by_id = {r["id"]: r for r in body["results"]}
    assert b in by_id and by_id[b]["reason"]["kind"] == "co_read" and by_id[b]["reason"]["document_id"] == a
    assert a not in by_id


def test_diversity_spreads_the_list(world: World) -> None:
    post_events(world, [event(d, user="varied") for d in world.of("POLITICS")[:5]])
    narrow = recommend(world, user_id="varied", k=10, diversity=0)
    wide = recommend(world, user_id="varied", k=10, diversity=0.7)

    def spread(body: dict[str, Any]) -> float:
        vecs = np.vstack([world.vectors[r["id"]] for r in body["results"]])
        sims = vecs @ vecs.T
        n = len(vecs)
        return float((n * n - sims.sum()) / (n * (n - 1)))

    assert spread(wide) > spread(narrow)


def test_experiments_assign_variants_and_report_click_through(world: World) -> None:
    headers = {"X-API-Key": world.key}
    spec = {"variants": [{"name": "control"}, {"name": "diverse", "params": {"diversity": 0.5}}]}
    assert (
        httpx.put(
            f"{BASE}/v1/experiments/mmr", json=spec, headers={"X-API-Key": world.viewer_key}
        ).status_code
        == 403
    )
    created = httpx.put(f"{BASE}/v1/experiments/mmr", json=spec, headers=headers, timeout=30)
    assert created.status_code == 200, created.text
    # (the replica that took the PUT reads the active experiments again at once; there is one replica)
    doc = world.of("POLITICS")[0]
    variants: dict[str, str] = {}
    for i in range(12):
        user = f"exp-{i}"
        post_events(world, [event(doc, user=user)])
        body = recommend(world, user_id=user, k=5)
        assert body["experiment"] == "mmr"
        variants[user] = body["variant"]
        assert recommend(world, user_id=user, k=5)["variant"] == body["variant"]  # deterministic
        if i % 2 == 0:
            click = event(body["results"][0]["id"], user=user, list_id=body["list_id"])
            assert post_events(world, [click]).status_code == 200
    assert set(variants.values()) == {"control", "diverse"}
    deadline = time.monotonic() + 10  # the served lists are recorded just after each response
    while True:
        report = httpx.get(f"{BASE}/v1/experiments/mmr", headers=headers, timeout=30).json()
        if sum(v["lists"] for v in report["variants"]) >= 24 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    rows = {v["name"]: v for v in report["variants"]}
    assert sum(v["lists"] for v in rows.values()) == 24
    assert sum(v["clicked_lists"] for v in rows.values()) == 6
    for v in rows.values():
        if v["lists"]:
            assert 0 <= v["ctr"]["low"] <= v["ctr"]["rate"] <= v["ctr"]["high"] <= 1
    assert rows["diverse"]["lift"] is not None
    assert httpx.get(f"{BASE}/v1/experiments/none", headers=headers).status_code == 404
    assert httpx.get(f"{BASE}/v1/experiments/mmr").status_code == 401
    httpx.put(f"{BASE}/v1/experiments/mmr", json={**spec, "active": False}, headers=headers, timeout=30)
