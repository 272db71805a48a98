"""The trends API (stories at /v1/trends, topics at /v1/topics) through Serve's HTTP proxy, beside the
search application at / and the CMS at /v1/cms, with real clients and real PostgreSQL (rows constructed as
in tests/integration/test_trend_queries.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import ray
from ray import serve

from cluster.ground.constants import PROFILE_ACTOR_NAME
from tests.integration.test_trend_queries import Seeded, seed_trends

PORT = 8012  # the session's Serve proxy (the search and CMS e2e tests use the same one)
ROOT = f"http://127.0.0.1:{PORT}"
TRENDS = f"{ROOT}/v1/trends"
TOPICS = f"{ROOT}/v1/topics"
SORTS = ("score", "volume", "velocity", "recency")


@pytest.fixture(scope="module")
def world(  # type: ignore[no-untyped-def]
    ray_session: None, database_url: str, engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Seeded]:
    from cluster.ground.constants import CMS_APP_IMPORT_PATH, SEARCH_APP_IMPORT_PATH
    from cluster.top.serve_config import TRENDS_APPS, load_builder

    seeded = seed_trends(engine)
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    # Search at / and the CMS at /v1/cms, as `pulse up` deploys them: the trends prefixes must not take
    # their routes (Serve routes by longest prefix).
    storage = str(tmp_path_factory.mktemp("trends-storage"))
    search_args = {"database_url": database_url, "storage_uri": storage, "namespace": "pulse-e2e-trends"}
    serve.run(load_builder(SEARCH_APP_IMPORT_PATH)(search_args), name="search", route_prefix="/")
    cms_args = {
        "database_url": database_url,
        "jwt_secret": "e2e-secret-" + "y" * 40,
        "storage_uri": storage,
        "scheduler": False,
    }
    serve.run(load_builder(CMS_APP_IMPORT_PATH)(cms_args), name="cms", route_prefix="/v1/cms")
    # A page size of 3 by default: the listings below page.
    args = {"database_url": database_url, "page_size": 3, "topic_stories": 2}
    for name, prefix, import_path in TRENDS_APPS:
        serve.run(load_builder(import_path)(args), name=name, route_prefix=prefix)
    yield seeded
    for name in ("search", "cms", *(name for name, _, _ in TRENDS_APPS)):
        serve.delete(name)
    with contextlib.suppress(ValueError):  # the search app's profile actor
        ray.kill(ray.get_actor(PROFILE_ACTOR_NAME, namespace="pulse-e2e-trends"), no_restart=True)


def get(url: str, **params: Any) -> httpx.Response:
    return httpx.get(url, params=params, timeout=30)


def ok(url: str, **params: Any) -> Any:
    resp = get(url, **params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def every_page(url: str, **params: Any) -> list[list[int]]:
    pages, cursor = [], None
    while True:
        body = ok(url, **params, **({"cursor": cursor} if cursor else {}))
        pages.append([item["id"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def test_each_prefix_reaches_its_application(world: Seeded) -> None:
    assert ok(f"{TRENDS}/healthz") == ok(f"{TOPICS}/healthz") == {"status": "ok"}
    assert ok(f"{ROOT}/healthz") == {"status": "ok"}  # search's
    assert httpx.get(f"{ROOT}/v1/cms/healthz").json() == {"status": "ok"}
    document_id = world.documents[world.en[0]][0]
    # Search's own routes under /v1 are still search's: a document, and its 404 code.
    assert ok(f"{ROOT}/v1/documents/{document_id}")["id"] == document_id
    missing = get(f"{ROOT}/v1/documents/999999999")
    assert missing.json()["error"]["code"] == "document_not_found"
    assert get(f"{ROOT}/v1/search", q="rain").status_code != 404  # answered by search (no index: 503)
    assert ok(f"{TRENDS}/", limit=1)["items"] == ok(TRENDS, limit=1)["items"]  # a trailing slash is the same
    titles = {ok(f"{url}/openapi.json")["info"]["title"] for url in (TRENDS, TOPICS)}
    assert titles == {"Pulse trends API: stories", "Pulse trends API: topics"}


@pytest.mark.parametrize("sort", SORTS)
def test_story_pages_cover_every_story_once_in_sort_order(world: Seeded, sort: str) -> None:
    pages = every_page(TRENDS, sort=sort)
    assert [len(p) for p in pages] == [3, 3, 3, 2]  # page_size 3, 10 active stories and an ended one
    ids = [i for p in pages for i in p]
    assert sorted(ids) == sorted([*world.en, world.ar, world.dead])
    whole = ok(TRENDS, sort=sort, limit=50)
    assert whole["next_cursor"] is None and [s["id"] for s in whole["items"]] == ids
    field = "last_seen" if sort == "recency" else sort
    values = [s[field] for s in whole["items"]]
    assert values == sorted(values, reverse=True)


def test_story_filters(world: Seeded) -> None:
    def ids(**params: Any) -> set[int]:
        return {s["id"] for s in ok(TRENDS, limit=50, **params)["items"]}

    en = world.en
    assert ids(state=["emerging", "peaking"]) == {en[0], en[2], en[7], en[8]}
    assert ids(topic=world.topic_ar) == ids(language="ar") == {world.ar}
    assert ids(status=["merged", "dead"]) == {world.merged, world.dead}
    assert ids(language="en", since="2026-05-09") == {en[7], en[8]}
    assert ids(language="en", since="2026-05-04T00:00:00Z", until="2026-05-04T00:00:00+00:00") == {
        en[2],
        en[3],
    }
    assert ids(source="wire") == ids(category="sports") == {*en, world.ar}
    assert ids(source="nowhere") == ids(category="nothing") == set()
    story = ok(TRENDS, limit=1, language="ar")["items"][0]
    assert (
        story["label"] == "مطر الصحراء"
        and story["state"] == "growing"
        and story["topic_id"] == world.topic_ar
    )


def test_a_story_its_documents_and_topics(world: Seeded) -> None:
    first = world.en[0]
    story = ok(f"{TRENDS}/{first}")
    assert story["keywords"] == ["kw0", "vote"] and story["summary"]["text"] == "new summary"
    listed = {s["id"]: s for s in ok(TRENDS, limit=100)["items"]}
    assert listed[first]["summary_text"] == "new summary"  # the latest of its summaries, in the listing
    docs = world.documents[first]
    assert [d["id"] for d in story["representatives"]] == [docs[1], docs[0]]
    assert story["granularity"] == "day" and [b["count"] for b in story["series"]] == [2, 1]
    assert [b["burst"] for b in story["series"]] == [False, False]  # 2 documents are under the burst minimum
    assert [b["count"] for b in ok(f"{TRENDS}/{first}", granularity="hour")["series"]] == [1, 1, 1]
    assert [e["kind"] for e in story["lineage"]] == ["birth", "merge", "split"]
    assert story["topic"] == {"id": world.topic_en, "label": "Elections"}
    pages = every_page(f"{TRENDS}/{first}/documents", limit=2)
    assert pages == [[docs[2], docs[1]], [docs[0]]]
    newest = ok(f"{TRENDS}/{first}/documents", limit=1)["items"][0]
    assert (
        newest["method"] == "assign" and newest["url"].endswith(f"/{first}/2") and newest["source"] == "wire"
    )
    assert every_page(TOPICS) == [[world.topic_en, world.topic_ar]]
    assert every_page(TOPICS, limit=1, sort="recency") == [[world.topic_en], [world.topic_ar]]
    topic = ok(f"{TOPICS}/{world.topic_en}")
    assert [s["id"] for s in topic["stories"]] == [world.en[8], world.en[7]]  # topic_stories 2
    assert [b["count"] for b in topic["series"]] == [2, 5]
    # A topic's documents: those of its stories and the one of a kind in none, newest first.
    members = [d for page in every_page(f"{TOPICS}/{world.topic_en}/documents", limit=7) for d in page]
    assert members[0] == world.lone and sorted(members[1:]) == sorted(
        d for sid in world.en for d in world.documents[sid]
    )
    newest = ok(f"{TOPICS}/{world.topic_en}/documents", limit=2)["items"]
    assert newest[0]["story_id"] is None and newest[1]["story_id"] == world.en[-1]


def error(resp: httpx.Response, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return str(body["error"]["message"])


def test_unknown_ids_are_404(world: Seeded) -> None:
    assert "no story 424242" in error(get(f"{TRENDS}/424242"), 404, "story_not_found")
    error(get(f"{TRENDS}/424242/documents"), 404, "story_not_found")
    assert "no topic 424242" in error(get(f"{TOPICS}/424242"), 404, "topic_not_found")
    error(get(f"{TOPICS}/424242/documents"), 404, "topic_not_found")


def test_bad_input_is_422_in_the_one_shape(world: Seeded) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        (TRENDS, {"state": "booming"}, "state"),
        (TRENDS, {"state": ["growing", "booming"]}, "state"),
        (TRENDS, {"status": "alive"}, "status"),
        (TRENDS, {"since": "yesterday"}, "since"),
        (TRENDS, {"until": "2026-13-01"}, "until"),
        (TRENDS, {"since": "2026-05-02", "until": "2026-05-01"}, "since"),
        (TRENDS, {"sort": "hotness"}, "sort"),
        (TRENDS, {"limit": 0}, "limit"),
        (TRENDS, {"limit": 201}, "limit"),
        (TRENDS, {"topic": 0}, "topic"),
        (TRENDS, {"cursor": "not-a-cursor"}, "cursor"),
        (TRENDS, {"cursor": "x" * 2000}, "cursor"),
        (TRENDS, {"source": "a\x00b"}, "source"),
        (f"{TRENDS}/0", {}, "story_id"),
        (f"{TRENDS}/{2**63}", {}, "story_id"),
        (f"{TRENDS}/{world.en[0]}", {"granularity": "week"}, "granularity"),
        (f"{TRENDS}/{world.en[0]}/documents", {"cursor": "e30"}, "cursor"),
        (TOPICS, {"sort": "score"}, "sort"),
        (TOPICS, {"since": "soon"}, "since"),
        (f"{TOPICS}/abc", {}, "topic_id"),
        (f"{TOPICS}/{world.topic_en}/documents", {"cursor": "e30"}, "cursor"),
        (f"{TOPICS}/{world.topic_en}/documents", {"limit": 0}, "limit"),
    ]
    for url, params, field in cases:
        message = error(get(url, **params), 422, "invalid_request")
        assert field in message, (url, params, message)


def test_a_cursor_pages_only_its_own_listing(world: Seeded) -> None:
    cursor = ok(TRENDS, sort="score")["next_cursor"]
    assert cursor is not None
    assert ok(TRENDS, sort="score", cursor=cursor)["items"]
    for other in ({"sort": "volume"}, {"sort": "score", "limit": 4}, {"sort": "score", "state": "growing"}):
        assert "another listing" in error(get(TRENDS, **other, cursor=cursor), 422, "invalid_request")
    documents = ok(f"{TRENDS}/{world.en[0]}/documents", limit=1)["next_cursor"]
    error(get(f"{TRENDS}/{world.en[1]}/documents", limit=1, cursor=documents), 422, "invalid_request")
    topics = ok(TOPICS, limit=1)["next_cursor"]
    error(get(TOPICS, limit=1, sort="recency", cursor=topics), 422, "invalid_request")
