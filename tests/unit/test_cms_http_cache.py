"""The CMS's HTTP cache (serve_apps/cms/http_cache.py) without a database or network: the LRU, the outbox
watcher's gaps, ETag matching, and the middleware around a small ASGI app reading an in-memory outbox."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from serve_apps.cms.http_cache import (
    AnswerCache,
    Entry,
    HttpCache,
    OutboxWatcher,
    PublicCache,
    body_etag,
    if_none_match,
)


def entry(kind: str = "item", item_id: int | None = 1, at: float = 0.0) -> Entry:
    return Entry(b"{}", '"1"', "application/json", kind, item_id, at)


def test_the_lru_drops_the_least_recently_used_and_expired_entries() -> None:
    cache = PublicCache(max_entries=2, ttl_s=10)
    assert cache.put("a", entry(), mark=(0, 0)) and cache.put("b", entry(), mark=(0, 0))
    assert cache.get("a", 1) is not None  # a is now the most recent
    cache.put("c", entry(), mark=(0, 0))
    assert list(cache.entries) == ["a", "c"]
    assert cache.get("a", 10.5) is None and cache.get("c", 5) is not None  # a stored at 0: expired
    assert (cache.hits, cache.misses) == (2, 1) and round(cache.hit_rate, 2) == 0.67


def test_an_answer_computed_across_an_invalidation_of_what_it_shows_is_not_kept() -> None:
    cache = PublicCache()
    item1, item2, listing = cache.mark(1), cache.mark(2), cache.mark(None)
    cache.invalidate({1})
    assert not cache.put("i1", entry("item", 1), mark=item1) and "i1" not in cache.entries
    assert not cache.put("l", entry("listing", None), mark=listing)  # listings show every item
    assert cache.put("i2", entry("item", 2), mark=item2)  # another item's change does not matter
    assert cache.put("i1", entry("item", 1), mark=cache.mark(1))
    everything = cache.mark(2)
    cache.invalidate(None)
    assert not cache.put("i2", entry("item", 2), mark=everything)


def test_invalidation_drops_the_named_items_and_every_listing_and_taxonomy_answer() -> None:
    cache = PublicCache()
    for key, e in {
        "item1": entry("item", 1),
        "item2": entry("item", 2),
        "list": entry("listing", None),
        "tags": entry("taxonomy", None),
    }.items():
        cache.put(key, e, mark=cache.mark(e.item_id))
    assert cache.invalidate({1}) == 3 and list(cache.entries) == ["item2"]
    assert cache.invalidate(set()) == 0 and list(cache.entries) == ["item2"]
    assert cache.invalidate(None) == 1 and not cache.entries


def test_the_watcher_asks_again_for_ids_committed_after_higher_ones() -> None:
    watcher = OutboxWatcher.starting_at([1, 2, 4], 5, now=0, gap_ttl_s=60)
    assert watcher.seen == 5 and set(watcher.gaps) == {3, 5}  # 5 is the highest: drawn, not yet seen
    assert watcher.observe([(8, [80]), (6, [60])], now=1) == {60, 80}
    assert watcher.seen == 8 and set(watcher.gaps) == {3, 5, 7}
    assert watcher.observe([(7, [70]), (3, [])], now=2) == {70}  # late commits are taken once
    assert watcher.observe([(7, [70])], now=3) is None and set(watcher.gaps) == {5}
    assert watcher.observe([], now=61) is None and watcher.gaps == {}  # a rolled-back id ages out


def test_if_none_match_compares_weakly_and_takes_lists_and_star() -> None:
    tag = body_etag(b"x")
    assert tag.startswith('W/"') and if_none_match(tag, tag)
    assert if_none_match(f'"other", {tag.removeprefix("W/")}', tag)
    assert if_none_match("*", '"3"') and not if_none_match('"2"', '"3"') and not if_none_match(None, '"3"')


class Outbox:
    """An in-memory outbox shared by several replicas' caches."""

    def __init__(self) -> None:
        self.events: list[tuple[int, list[int]]] = []
        self.down = False

    async def head(self) -> tuple[int, list[int]]:
        if self.down:
            raise ConnectionError("database down")
        return max((i for i, _ in self.events), default=0), [i for i, _ in self.events]

    async def after(self, seen: int, gaps: list[int]) -> list[tuple[int, list[int]]]:
        if self.down:
            raise ConnectionError("database down")
        return [(i, ids) for i, ids in self.events if i > seen or i in gaps]


class Content:
    """The app behind the middleware: items by id, answering anonymous callers their published ones."""

    def __init__(self) -> None:
        self.items: dict[int, dict[str, Any]] = {1: {"id": 1, "title": "one", "status": "published"}}
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        headers = dict(scope["headers"])
        if scope["method"] == "PATCH":  # a write: its body is the new title (404 for an unknown item)
            number = int(path.rsplit("/", 1)[1]) if path.startswith("/items/") else 0
            body = (await receive())["body"].decode()
            if number in self.items:
                self.items[number] = {**self.items[number], "title": body}
            status = 200 if number in self.items or path in ("/auth/login", "/bulk") else 404
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        item = self.items.get(int(path.rsplit("/", 1)[1])) if path.startswith("/items/") else None
        visible = item is not None and (b"authorization" in headers or item["status"] == "published")
        status, body = (200, json.dumps(item).encode()) if visible else (404, b'{"error": {}}')
        extra = [(b"etag", b'"7"')] if path == "/items/1" and visible else []
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *extra],
            }
        )
        await send({"type": "http.response.body", "body": body})


def replica(content: Content, outbox: Outbox, *, limited: bool = False) -> HttpCache:
    answers = AnswerCache(read_start=outbox.head, read_events=outbox.after, poll_s=3600)
    return HttpCache(content, answers=answers, rate_check=lambda scope: 30 if limited else None)


async def get(app: HttpCache, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return await call(app, "GET", path, b"", **headers)


async def call(
    app: HttpCache, method: str, path: str, body: bytes, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    scope = {
        "type": "http",
        "method": method,
        "path": "/v1/cms" + path,
        "root_path": "/v1/cms",
        "query_string": b"",
        "headers": [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    head = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], head, b"".join(m.get("body", b"") for m in sent[1:])


def test_anonymous_reads_are_cached_per_replica_and_dropped_when_the_outbox_names_them() -> None:
    async def scenario() -> None:
        content, outbox = Content(), Outbox()
        one, two = replica(content, outbox), replica(content, outbox)
        for app in (one, two):
            await app.answers.refresh()  # what the first request's poller does
        status, head, body = await get(one, "/items/1")
        assert status == 200 and head["etag"] == '"7"' and head["cache-control"] == "public, no-cache"
        assert head["vary"] == "Authorization, X-API-Key" and json.loads(body)["title"] == "one"
        calls = content.calls
        assert head["x-cache"] == "miss"
        status, head, again = await get(one, "/items/1")
        assert again == body and head["x-cache"] == "hit" and content.calls == calls
        await get(two, "/items/1")
        # Another replica changes item 1 and its event reaches the outbox: each replica drops it at its
        # next read of the outbox, and not before.
        content.items[1] = {**content.items[1], "title": "uno"}
        outbox.events.append((1, [1]))
        assert json.loads((await get(one, "/items/1"))[2])["title"] == "one"
        for app in (one, two):
            await app.answers.refresh()
            assert json.loads((await get(app, "/items/1"))[2])["title"] == "uno"
        assert one.cache.hits == 2 and one.cache.misses == 2

    asyncio.run(scenario())


def test_a_replica_drops_what_its_own_successful_writes_changed_before_answering_them() -> None:
    async def scenario() -> None:
        content, outbox = Content(), Outbox()
        content.items[2] = {"id": 2, "title": "two", "status": "published"}
        app = replica(content, outbox)
        await app.answers.refresh()
        for path in ("/items/1", "/items/2"):
            await get(app, path)
        assert set(app.cache.entries) == {"/items/1?", "/items/2?"}
        # Writes that change no cached content, and failed writes, drop nothing.
        assert (await call(app, "PATCH", "/auth/login", b"x", authorization="Bearer t"))[0] == 200
        assert (await call(app, "PATCH", "/items/9", b"x", authorization="Bearer t"))[0] == 404
        assert set(app.cache.entries) == {"/items/1?", "/items/2?"}
        # A successful write of item 1: its answer is gone before the outbox is read, item 2's stays.
        assert (await call(app, "PATCH", "/items/1", b"uno", authorization="Bearer t"))[0] == 200
        assert set(app.cache.entries) == {"/items/2?"} and not outbox.events
        status, head, body = await get(app, "/items/1")
        assert status == 200
        assert head["x-cache"] == "miss" and json.loads(body)["title"] == "uno"
        # A write of anything else under the content paths (bulk, taxonomy) drops everything.
        await call(app, "PATCH", "/bulk", b"", authorization="Bearer t")
        assert not app.cache.entries

    asyncio.run(scenario())


def test_304s_errors_credentials_and_limits() -> None:
    async def scenario() -> None:
        content, outbox = Content(), Outbox()
        content.items[2] = {"id": 2, "title": "draft", "status": "draft"}
        app = replica(content, outbox)
        await app.answers.refresh()
        status, head, _ = await get(app, "/items/1")
        assert (await get(app, "/items/1", if_none_match=head["etag"]))[:1] == (304,)
        status, head, body = await get(app, "/items/1", if_none_match='"6"')
        assert status == 200 and body
        # A draft is 404 to anonymous callers, read by a signed-in one, and never cached for either.
        assert (await get(app, "/items/2"))[0] == 404
        status, head, _ = await get(app, "/items/2", authorization="Bearer t")
        assert status == 200 and head["cache-control"] == "private, no-store"
        assert head["etag"].startswith('W/"')
        assert (await get(app, "/items/2"))[0] == 404 and "/items/2?" not in app.cache.entries
        # With credentials, the answer is always whole: a version ETag may name another caller's view.
        status, _, body = await get(app, "/items/2", authorization="Bearer t", if_none_match=head["etag"])
        assert status == 200 and json.loads(body)["title"] == "draft"
        # A hit still counts against the caller's limit.
        limited = replica(content, outbox, limited=True)
        await limited.answers.refresh()
        await get(limited, "/items/1")
        status, head, body = await get(limited, "/items/1")
        assert status == 429 and head["retry-after"] == "30"
        assert json.loads(body)["error"]["code"] == "rate_limited"

    asyncio.run(scenario())


def test_a_replica_that_cannot_read_the_outbox_serves_from_the_app() -> None:
    async def scenario() -> None:
        content, outbox = Content(), Outbox()
        app = replica(content, outbox)
        await app.answers.refresh()
        await get(app, "/items/1")
        outbox.down = True
        await app.answers.refresh()
        assert not app.answers.enabled and not app.cache.entries
        calls = content.calls
        await get(app, "/items/1")
        assert content.calls == calls + 1 and not app.cache.entries
        outbox.down = False
        await app.answers.refresh()
        await get(app, "/items/1")
        await get(app, "/items/1")
        assert content.calls == calls + 2 and app.answers.enabled

    asyncio.run(scenario())


def test_a_replica_without_reads_stops_reading_the_outbox_and_starts_afresh(
    monkeypatch: Any,
) -> None:
    from serve_apps.cms import http_cache

    monkeypatch.setattr(http_cache, "IDLE_STOP_S", 0.2)

    async def scenario() -> None:
        outbox = Outbox()
        answers = AnswerCache(read_start=outbox.head, read_events=outbox.after, poll_s=0.02)
        answers.start()
        await asyncio.sleep(0.05)
        assert answers.enabled
        answers.cache.put("/items/1?", entry(), mark=answers.cache.mark(1))
        await asyncio.sleep(0.4)  # no read meanwhile
        assert not answers.enabled and not answers.cache.entries and answers._poller is None
        answers.start()
        await asyncio.sleep(0.05)
        assert answers.enabled and answers._poller is not None

    asyncio.run(scenario())
