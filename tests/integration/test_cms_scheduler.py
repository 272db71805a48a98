"""The CMS scheduler's core on real PostgreSQL and a real local HTTP receiver (no Ray): scheduled publishing
and unpublishing, signed webhooks with retries and backoff, bulk events, search sync into documents,
idempotent ticks, restarts, and events committed out of order. Time is driven by ``tick(now)``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from actors.cms_scheduler import AiohttpSender, CmsScheduler, TickReport, WebhookRequest
from cluster.ground.cms_signing import verify
from cluster.ground.webhook_targets import refusal as webhook_refusal
from storage.cms_content import ContentRepository
from storage.cms_events import DeliveryRepository, WebhookRepository, append_event
from storage.cms_taxonomy import TaxonomyRepository
from storage.database import make_async_engine
from tests.conftest import CMS_TABLES, truncate

TABLES = (*CMS_TABLES, "document_deletions", "documents", "sources")
BASE_URL = "https://cms.example.test"
SECRET = "whsec-integration-secret"
#: Scheduled times lie in the past of the wall clock (the content repository stamps moves with it).
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


@pytest.fixture
def cms_db(engine, database_url: str) -> Iterator[str]:  # type: ignore[no-untyped-def]
    truncate(engine, TABLES)
    yield database_url


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real aiohttp server on 127.0.0.1: answers 500 to the first ``fail_first`` requests, then 200,
    and checks every signature as a subscriber would."""

    fail_first: int = 0
    requests: list[Received] = field(default_factory=list)
    base: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ok = verify(
            SECRET,
            request.headers.get("X-Pulse-Timestamp", ""),
            body,
            request.headers.get("X-Pulse-Signature", ""),
            now=time.time(),
        )
        self.requests.append(Received(request.path, dict(request.headers), body, ok))
        if len(self.requests) <= self.fail_first:
            return web.Response(status=500, text="try later")
        return web.Response(status=200, text="ok")

    def url(self, name: str) -> str:
        return f"{self.base}/hooks/{name}"

    def to(self, name: str) -> list[Received]:
        return [r for r in self.requests if r.path == f"/hooks/{name}"]


@dataclass
class Harness:
    sessions: async_sessionmaker[AsyncSession]
    receiver: Receiver
    sender: AiohttpSender

    def scheduler(self) -> CmsScheduler:
        """A fresh scheduler object: all it knows comes from PostgreSQL."""
        return CmsScheduler(
            self.sessions, sender=self.sender, public_base_url=BASE_URL, http_timeout_s=5, settle_wait_s=0.01
        )

    async def write(self, body: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
        async with self.sessions() as session, session.begin():
            return await body(session)

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.sessions() as session:
            return list((await session.execute(text(sql), params)).all())

    async def webhook(self, name: str, events: list[str]) -> int:
        async def create(s: AsyncSession) -> int:
            return (await WebhookRepository(s).create(self.receiver.url(name), SECRET, events)).id

        return int(await self.write(create))

    async def item(self, **fields: Any) -> int:
        async def create(s: AsyncSession) -> int:
            return (await ContentRepository(s).create(fields, actor="user:1", author_id=None)).id

        return int(await self.write(create))

    async def move(self, item_id: int, target: str) -> None:
        async def transition(s: AsyncSession) -> None:
            await ContentRepository(s).transition(item_id, target, actor="user:1", expected_version=None)

        await self.write(transition)

    async def status(self, item_id: int) -> str:
        return str((await self.rows("SELECT status FROM cms_items WHERE id = :i", i=item_id))[0][0])


@asynccontextmanager
async def harness(url: str, *, fail_first: int = 0) -> AsyncIterator[Harness]:
    receiver = Receiver(fail_first=fail_first)
    app = web.Application()
    app.router.add_post("/hooks/{name}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    receiver.base = f"http://{host}:{port}"
    engine = make_async_engine(url, pool_size=4)
    sender = AiohttpSender(private_targets=True)  # the receiver listens on 127.0.0.1
    try:
        yield Harness(async_sessionmaker(engine, expire_on_commit=False), receiver, sender)
    finally:
        await sender.close()
        await engine.dispose()
        await runner.cleanup()


def run(url: str, scenario: Callable[[Harness], Awaitable[None]], *, fail_first: int = 0) -> None:
    async def main() -> None:
        async with harness(url, fail_first=fail_first) as h:
            await scenario(h)

    asyncio.run(main())


# ------------------------------------------------------------------------------------------- scheduling
def test_scheduled_publish_fires_when_due_and_unpublish_archives(cms_db: str) -> None:
    async def scenario(h: Harness) -> None:
        item = await h.item(
            title_en="Launch notes",
            publish_at=(T0 + timedelta(minutes=10)).isoformat(),
            unpublish_at=(T0 + timedelta(minutes=60)).isoformat(),
        )
        other = await h.item(title_en="Later", publish_at=(T0 + timedelta(minutes=20)).isoformat())
        scheduler = h.scheduler()

        early = await scheduler.tick(T0 + timedelta(minutes=9, seconds=59))
        assert early.published == () and await h.status(item) == "draft"

        due = await scheduler.tick(T0 + timedelta(minutes=10))
        assert due.published == (item,) and due.errors == ()
        assert await h.status(item) == "published" and await h.status(other) == "draft"
        actor, note = (
            await h.rows("SELECT actor, note FROM cms_revisions WHERE item_id = :i AND version = 2", i=item)
        )[0]
        assert (actor, note) == ("system:scheduler", "draft -> published")

        assert (await scheduler.tick(T0 + timedelta(minutes=30))).published == (other,)
        assert (await scheduler.tick(T0 + timedelta(minutes=59))).archived == ()
        late = await scheduler.tick(T0 + timedelta(minutes=60))
        assert late.archived == (item,) and await h.status(item) == "archived"
        again = await scheduler.tick(T0 + timedelta(minutes=90))
        assert (again.published, again.archived) == ((), ())
        events = await h.rows(
            "SELECT type FROM cms_events WHERE item_ids = CAST(:ids AS jsonb) ORDER BY id", ids=f"[{item}]"
        )
        assert [e[0] for e in events] == ["item.created", "item.published", "item.archived"]

    run(cms_db, scenario)


def test_a_fresh_scheduler_after_a_restart_publishes_what_fell_due_and_resends_nothing(cms_db: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.webhook("all", [])
        item = await h.item(title_en="Embargoed", publish_at=(T0 + timedelta(minutes=10)).isoformat())
        first = await h.scheduler().tick(T0)
        assert first.published == () and first.delivered == 1
        assert [r.json["event"] for r in h.receiver.requests] == ["item.created"]

        # The actor dies; the item falls due while nothing runs; a new one starts from PostgreSQL alone.
        restarted = h.scheduler()
        report = await restarted.tick(T0 + timedelta(hours=2))
        assert report.published == (item,) and report.delivered == 1 and report.documents_upserted == 1
        assert [r.json["event"] for r in h.receiver.requests] == ["item.created", "item.published"]
        cursors = dict(await h.rows("SELECT name, value FROM cms_cursors"))
        last_event = (await h.rows("SELECT max(id) FROM cms_events"))[0][0]
        assert cursors == {"search-sync": last_event, "webhooks": last_event}

        quiet = await h.scheduler().tick(T0 + timedelta(hours=3))
        assert (quiet.deliveries_planned, quiet.delivered, quiet.documents_upserted) == (0, 0, 0)
        assert len(h.receiver.requests) == 2

    run(cms_db, scenario)


# ---------------------------------------------------------------------------------------------- webhooks
def test_webhook_is_signed_retried_with_backoff_and_logged(cms_db: str) -> None:
    async def scenario(h: Harness) -> None:
        hook = await h.webhook("items", ["item.*"])
        await h.webhook("bulk-only", ["bulk.*"])
        item = await h.item(title_en="Hello", title_ar="مرحبا")
        scheduler = h.scheduler()
        now = datetime.now(UTC)

        first = await scheduler.tick(now)
        assert (first.deliveries_planned, first.delivered, first.retrying) == (1, 0, 1)
        assert len(h.receiver.requests) == 1
        assert (await scheduler.tick(now + timedelta(seconds=1.9))).delivered == 0
        assert len(h.receiver.requests) == 1  # backoff: 2 s after the first attempt

        second = await scheduler.tick(now + timedelta(seconds=2))
        assert (second.delivered, second.retrying) == (0, 1)
        assert len(h.receiver.requests) == 2
        assert (await scheduler.tick(now + timedelta(seconds=5.9))).delivered == 0  # then 4 s
        third = await scheduler.tick(now + timedelta(seconds=6))
        assert third.delivered == 1 and len(h.receiver.requests) == 3
        assert (await scheduler.tick(now + timedelta(hours=1))).delivered == 0

        sent = h.receiver.to("items")
        assert len(sent) == 3 and h.receiver.to("bulk-only") == []
        assert all(r.verified for r in sent)
        assert {r.body for r in sent} == {sent[0].body}  # the same delivery each time
        first_request = sent[0]
        assert first_request.headers["Content-Type"] == "application/json"
        assert first_request.headers["X-Pulse-Event"] == "item.created"
        body = first_request.json
        assert first_request.headers["X-Pulse-Delivery"] == str(body["id"])
        assert body["event"] == "item.created" and body["item_ids"] == [item]
        assert body["payload"]["item"]["title_ar"] == "مرحبا"
        assert set(body) == {"id", "event", "event_id", "created_at", "item_ids", "payload"}

        async def log(s: AsyncSession) -> Any:
            return await DeliveryRepository(s).log(hook)

        (entry,) = await h.write(log)
        assert (entry.event_type, entry.status, entry.attempts) == ("item.created", "delivered", 3)
        assert entry.last_status_code == 200 and entry.last_error is None
        assert entry.delivered_at == now + timedelta(seconds=6)

    run(cms_db, scenario, fail_first=2)


def test_delivery_fails_after_max_attempts(cms_db: str) -> None:
    async def scenario(h: Harness) -> None:
        hook = await h.webhook("down", [])
        await h.item(title_en="Nobody listens")
        scheduler = CmsScheduler(
            h.sessions, sender=h.sender, public_base_url=BASE_URL, max_attempts=3, settle_wait_s=0.01
        )
        now = datetime.now(UTC)
        for minutes in (0, 1, 2, 3, 4):
            await scheduler.tick(now + timedelta(minutes=minutes))

        async def log(s: AsyncSession) -> Any:
            return await DeliveryRepository(s).log(hook)

        (entry,) = await h.write(log)
        assert (entry.status, entry.attempts, entry.last_status_code) == ("failed", 3, 500)
        assert entry.last_error == "HTTP 500" and len(h.receiver.requests) == 3

    run(cms_db, scenario, fail_first=100)


def test_the_default_sender_refuses_private_targets_and_the_log_says_why(cms_db: str) -> None:
    async def scenario(h: Harness) -> None:
        hook = await h.webhook("internal", [])
        await h.item(title_en="Must not reach an internal service")
        guarded = AiohttpSender()  # the product's default: public targets only
        try:
            scheduler = CmsScheduler(
                h.sessions, sender=guarded, public_base_url=BASE_URL, max_attempts=2, settle_wait_s=0.01
            )
            now = datetime.now(UTC)
            for minutes in (0, 1, 2):
                await scheduler.tick(now + timedelta(minutes=minutes))
            localhost = h.receiver.url("internal").replace("127.0.0.1", "localhost")
            with pytest.raises(PermissionError, match="PULSE_CMS__WEBHOOK_PRIVATE_TARGETS"):
                await guarded(WebhookRequest(localhost, b"{}", {}, 5.0))
        finally:
            await guarded.close()

        async def log(s: AsyncSession) -> Any:
            return await DeliveryRepository(s).log(hook)

        (entry,) = await h.write(log)
        assert (entry.status, entry.attempts, entry.last_status_code) == ("failed", 2, None)
        assert "loopback address" in entry.last_error
        assert h.receiver.requests == []  # nothing reached the (private) receiver

    run(cms_db, scenario)


def test_a_webhook_name_that_cannot_be_resolved_now_is_accepted_at_creation() -> None:
    """Delivery resolves it again through ``public_resolver()``; a DNS outage must not block configuration
    (``.invalid`` never resolves, RFC 6761)."""
    assert asyncio.run(webhook_refusal("https://hooks.invalid/x")) is None


def test_a_bulk_event_is_one_delivery_per_subscriber_with_every_id(cms_db: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.webhook("all", [])
        await h.webhook("bulk", ["bulk.*"])
        await h.webhook("single", ["item.published"])
        ids = list(range(1000, 1100))

        async def bulk(s: AsyncSession) -> None:
            await append_event(s, type="bulk.published", item_ids=ids, payload={"action": "publish"})

        await h.write(bulk)
        scheduler = h.scheduler()
        now = datetime.now(UTC)
        report = await scheduler.tick(now)
        assert (report.deliveries_planned, report.delivered) == (2, 2)
        assert report.documents_upserted == 0  # the ids name no existing item
        for name in ("all", "bulk"):
            (request,) = h.receiver.to(name)
            assert request.verified and request.json["item_ids"] == ids
            assert request.headers["X-Pulse-Event"] == "bulk.published"
        assert h.receiver.to("single") == []

        again = await scheduler.tick(now + timedelta(minutes=5))
        assert (again.deliveries_planned, again.delivered) == (0, 0)
        assert (await h.rows("SELECT count(*) FROM cms_deliveries"))[0][0] == 2
        assert len(h.receiver.requests) == 2

    run(cms_db, scenario)


def test_an_event_committed_out_of_order_is_not_skipped(cms_db: str) -> None:
    """Event 1 is still in flight when event 2 commits: the readers wait instead of jumping past 1."""

    async def scenario(h: Harness) -> None:
        await h.webhook("all", [])
        scheduler = h.scheduler()
        async with h.sessions() as slow:
            await slow.begin()
            await ContentRepository(slow).create({"title_en": "Slow"}, actor="user:1", author_id=None)
            await slow.flush()  # event 1 drawn, not committed
            fast = await h.item(title_en="Fast")  # event 2, committed
            waiting = await scheduler.tick(datetime.now(UTC))
            assert (waiting.deliveries_planned, waiting.events_synced) == (0, 0)
            assert h.receiver.requests == []
            await slow.commit()
        caught_up = await scheduler.tick(datetime.now(UTC))
        assert (caught_up.deliveries_planned, caught_up.delivered, caught_up.events_synced) == (2, 2, 2)
        assert sorted(r.json["event_id"] for r in h.receiver.requests) == [1, 2]
        assert fast == 2

    run(cms_db, scenario)


# ------------------------------------------------------------------------------------------- search sync
def test_search_sync_writes_one_document_per_locale_and_removes_them_on_archive(cms_db: str) -> None:
    async def scenario(h: Harness) -> None:
        async def taxonomy(s: AsyncSession) -> None:
            await TaxonomyRepository(s).create("category", slug="weather", name_en="Weather", name_ar="طقس")
            await TaxonomyRepository(s).create("tag", slug="rain", name_en="Rain", name_ar="مطر")

        await h.write(taxonomy)
        item = await h.item(
            title_en="Desert Rain",
            title_ar="مطر الصحراء",
            summary_en="Rare rain.",
            summary_ar="مطر نادر.",
            body_en="<p>It rained in the desert.</p>",
            body_text_en="It rained in the desert.",
            body_ar="<p>أمطرت في الصحراء.</p>",
            body_text_ar="أمطرت في الصحراء.",
            category="weather",
            tags=["rain"],
        )
        english_only = await h.item(type="page", title_en="About us", body_text_en="Who we are.")
        scheduler = h.scheduler()
        now = datetime.now(UTC)
        drafts = await scheduler.tick(now)
        assert (drafts.documents_upserted, drafts.documents_deleted) == (0, 0)

        await h.move(item, "published")
        await h.move(english_only, "published")
        published = await scheduler.tick(now)
        assert (published.documents_upserted, published.documents_deleted) == (3, 0)
        docs = await h.rows(
            "SELECT d.canonical_url, d.title, d.text, d.language, d.published_at, d.metadata, s.name, s.kind "
            "FROM documents d JOIN sources s ON s.id = d.source_id ORDER BY d.canonical_url"
        )
        assert [d[0] for d in docs] == [
            f"{BASE_URL}/ar/articles/{item}",
            f"{BASE_URL}/en/articles/{item}",
            f"{BASE_URL}/en/pages/{english_only}",
        ]
        ar, en, page = docs
        assert (ar.title, ar.text, ar.language) == ("مطر الصحراء", "مطر نادر. أمطرت في الصحراء.", "ar")
        assert (en.title, en.text, en.language) == (
            "Desert Rain",
            "Rare rain. It rained in the desert.",
            "en",
        )
        assert en.metadata == {
            "cms_item_id": item,
            "category": "weather",
            "tags": ["rain"],
            "type": "article",
        }
        assert page.metadata["type"] == "page" and (page.name, page.kind) == ("cms", "cms")
        published_at = (await h.rows("SELECT published_at FROM cms_items WHERE id = :i", i=item))[0][0]
        assert en.published_at == published_at == ar.published_at

        twice = await scheduler.tick(now + timedelta(seconds=2))
        assert (twice.events_synced, twice.documents_upserted, twice.documents_deleted) == (0, 0, 0)
        ids_before = await h.rows("SELECT id FROM documents ORDER BY id")

        async def retitle(s: AsyncSession) -> None:
            await ContentRepository(s).update(
                item, {"title_en": "Desert Rain, again"}, actor="user:1", expected_version=None
            )

        await h.write(retitle)
        updated = await scheduler.tick(now + timedelta(seconds=4))
        assert (updated.documents_upserted, updated.documents_deleted) == (1, 0)  # ar unchanged
        assert await h.rows("SELECT id FROM documents ORDER BY id") == ids_before

        await h.move(item, "archived")
        archived = await scheduler.tick(now + timedelta(seconds=6))
        assert (archived.documents_upserted, archived.documents_deleted) == (0, 2)
        remaining = await h.rows("SELECT canonical_url FROM documents")
        assert [r[0] for r in remaining] == [f"{BASE_URL}/en/pages/{english_only}"]
        assert (await h.rows("SELECT count(*) FROM document_deletions"))[0][0] == 2

        async def delete(s: AsyncSession) -> None:
            await ContentRepository(s).delete(english_only, actor="user:1")

        await h.write(delete)
        deleted = await scheduler.tick(now + timedelta(seconds=8))
        assert deleted.documents_deleted == 1
        assert (await h.rows("SELECT count(*) FROM documents"))[0][0] == 0

    run(cms_db, scenario)


def test_webhook_urls_are_validated(cms_db: str) -> None:
    from storage.errors import InvalidWebhook

    async def scenario(h: Harness) -> None:
        for bad in ("ftp://example.com/hook", "javascript:alert(1)", "http:///nohost", "https://u:p@x.test/"):

            async def create(s: AsyncSession, url: str = bad) -> None:
                await WebhookRepository(s).create(url, SECRET, [])

            with pytest.raises(InvalidWebhook):
                await h.write(create)

        async def good(s: AsyncSession) -> Any:
            repo = WebhookRepository(s)
            row = await repo.create(" https://hooks.example.test/pulse ", SECRET, ["item.*", "item.*"])
            listed = await repo.list()
            await repo.delete(row.id)
            return row, listed, await repo.get(row.id)

        row, listed, gone = await h.write(good)
        assert (row.url, row.events, row.secret) == ("https://hooks.example.test/pulse", ["item.*"], SECRET)
        assert SECRET not in repr(row)
        assert [w.id for w in listed] == [row.id] and gone is None

    run(cms_db, scenario)


def test_tick_report_is_json() -> None:
    report = TickReport(at=T0, published=(1,))
    assert json.loads(json.dumps(report.as_json()))["published"] == [1]
