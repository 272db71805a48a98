"""The CMS scheduler: scheduled publishing, search sync and webhook delivery, one ``tick(now)`` at a time.

``CmsScheduler`` is the plain core (no Ray): it takes an async session factory, a webhook sender and a
clock, and keeps no state of its own. Everything it acts on lives in PostgreSQL: due times on the items,
its two outbox cursors in ``cms_cursors``, deliveries with their attempts in ``cms_deliveries``. A fresh
object (a restarted actor) carries on exactly where the last one stopped. A tick:

a) publishes items whose ``publish_at`` has come and archives published items whose ``unpublish_at`` has
   come, each in its own transaction (a failing item is reported and the others go on; an item that
   changed meanwhile is skipped);
b) search sync: for every item touched by outbox events after the ``search-sync`` cursor, writes one
   document per locale with a title while the item is published and deletes its documents otherwise;
   documents and cursor commit together;
c) webhooks: plans deliveries for the events after the ``webhooks`` cursor, then sends the due ones
   (``concurrency`` at once), signed (``cluster.ground.cms_signing``), and records each attempt: a 2xx is
   delivered, anything else is retried after an exponential backoff until ``max_attempts``.

``AiohttpSender`` is the production sender; the Ray shell is ``actors.cms_scheduler_actor``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from cluster.ground.cms_signing import sign
from cluster.ground.webhook_targets import literal_refusal, public_resolver
from storage.cms_content import ContentRepository
from storage.cms_events import (
    SEARCH_SYNC_CURSOR,
    WEBHOOK_CURSOR,
    DeliveryRepository,
    DueDelivery,
    SearchableItem,
    advance_cursor,
    events_after,
    read_cursor,
    searchable_items,
    settled_event_id,
)
from storage.cms_models import CONTENT_TYPES, LOCALES
from storage.documents import DocumentRecord, DocumentRepository
from storage.errors import CmsError

logger = logging.getLogger(__name__)

#: Actor recorded on the items' revisions and audit rows.
SCHEDULER_ACTOR = "system:scheduler"
#: Name and kind of the documents source that holds published CMS items.
CMS_SOURCE = "cms"
#: Outbox events read per transaction.
EVENT_BATCH = 500
#: Tries to find the outbox settled (no event insert in flight) before leaving it to the next tick.
SETTLE_TRIES = 3


class Sender(Protocol):
    """Sends one webhook request; returns the HTTP status, raises on a network error or timeout."""

    def __call__(self, request: WebhookRequest) -> Awaitable[int]: ...


@dataclass(frozen=True)
class WebhookRequest:
    url: str
    body: bytes
    headers: dict[str, str]
    timeout_s: float


@dataclass(frozen=True)
class TickReport:
    """What one tick did."""

    at: datetime
    published: tuple[int, ...] = ()
    archived: tuple[int, ...] = ()
    skipped: tuple[int, ...] = ()  # due, but changed meanwhile
    failed_items: tuple[int, ...] = ()  # the move raised an unexpected error; retried next tick
    events_synced: int = 0
    documents_upserted: int = 0
    documents_deleted: int = 0
    deliveries_planned: int = 0
    delivered: int = 0
    retrying: int = 0
    failed_deliveries: int = 0
    errors: tuple[str, ...] = ()  # a step that failed as a whole (it is retried next tick)

    @property
    def documents_changed(self) -> bool:
        return self.documents_upserted + self.documents_deleted > 0

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "published": list(self.published),
            "archived": list(self.archived),
            "skipped": list(self.skipped),
            "failed_items": list(self.failed_items),
            "events_synced": self.events_synced,
            "documents_upserted": self.documents_upserted,
            "documents_deleted": self.documents_deleted,
            "deliveries_planned": self.deliveries_planned,
            "delivered": self.delivered,
            "retrying": self.retrying,
            "failed_deliveries": self.failed_deliveries,
            "errors": list(self.errors),
        }


@dataclass
class _Tally:
    published: list[int] = field(default_factory=list)
    archived: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    failed_items: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


def utc_now() -> datetime:
    return datetime.now(UTC)


def exponential_backoff(
    attempt: int,
    *,
    base_s: float = 2.0,
    factor: float = 2.0,
    cap_s: float = 600.0,
    jitter: float = 0.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds before retrying after failed attempt number ``attempt`` (1-based): 2, 4, 8... capped at
    10 minutes; ``jitter`` (0..1) takes up to that fraction off at random, so retries spread out."""
    delay = min(cap_s, base_s * factor ** max(0, attempt - 1))
    return delay * (1.0 - jitter * rand()) if jitter else delay


def document_url(base_url: str, locale: str, item_type: str, item_id: int) -> str:
    """Public URL of an item in one locale: the canonical URL of its search document."""
    return f"{base_url.rstrip('/')}/{locale}/{item_type}s/{item_id}"


def item_documents(item: SearchableItem, base_url: str) -> list[DocumentRecord]:
    """The search documents of a published item: one per locale that has a title."""
    docs = []
    for locale in LOCALES:
        title = item.titles.get(locale)
        if not title:
            continue
        text = "\n\n".join(p for p in (item.summaries.get(locale), item.body_texts.get(locale)) if p)
        docs.append(
            DocumentRecord(
                canonical_url=document_url(base_url, locale, item.type, item.id),
                title=title,
                text=text,
                published_at=item.published_at,
                language=locale,
                metadata={
                    "cms_item_id": item.id,
                    "category": item.category,
                    "tags": list(item.tags),
                    "type": item.type,
                },
            )
        )
    return docs


def webhook_body(delivery: DueDelivery) -> bytes:
    """The JSON body POSTed for a delivery (the exact bytes that are signed)."""
    body = {
        "id": delivery.id,
        "event": delivery.event_type,
        "event_id": delivery.event_id,
        "created_at": delivery.event_created_at.isoformat(),
        "item_ids": delivery.item_ids,
        "payload": delivery.payload,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


def webhook_request(delivery: DueDelivery, *, timestamp: int, timeout_s: float) -> WebhookRequest:
    body = webhook_body(delivery)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Pulse-Webhooks/1",
        "X-Pulse-Event": delivery.event_type,
        "X-Pulse-Delivery": str(delivery.id),
        "X-Pulse-Timestamp": str(timestamp),
        "X-Pulse-Signature": sign(delivery.secret, timestamp, body),
    }
    return WebhookRequest(delivery.url, body, headers, timeout_s)


class CmsScheduler:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        sender: Sender,
        public_base_url: str,
        clock: Callable[[], datetime] = utc_now,
        max_attempts: int = 8,
        http_timeout_s: float = 10.0,
        concurrency: int = 8,
        batch: int = 100,
        backoff: Callable[[int], float] = exponential_backoff,
        settle_wait_s: float = 0.05,
    ) -> None:
        self._sessions = sessions
        self._sender = sender
        self._base_url = public_base_url.rstrip("/")
        self._clock = clock
        self._max_attempts = max_attempts
        self._timeout_s = http_timeout_s
        self._concurrency = concurrency
        self._batch = batch
        self._backoff = backoff
        self._settle_wait_s = settle_wait_s

    async def tick(self, now: datetime | None = None) -> TickReport:
        """Publish/archive what is due at ``now`` (default: the clock), sync search, send webhooks."""
        now = now or self._clock()
        tally = _Tally()
        await self._schedule(now, tally)
        for name, step in (("search sync", self._sync_search), ("webhooks", self._webhooks)):
            try:
                await step(now, tally)
            except Exception as exc:  # one step failing must not stop the other; retried next tick
                logger.exception("cms scheduler: %s failed", name)
                tally.errors.append(f"{name}: {type(exc).__name__}: {exc}")
        c = tally.counts
        report = TickReport(
            at=now,
            published=tuple(tally.published),
            archived=tuple(tally.archived),
            skipped=tuple(tally.skipped),
            failed_items=tuple(tally.failed_items),
            events_synced=c.get("events_synced", 0),
            documents_upserted=c.get("documents_upserted", 0),
            documents_deleted=c.get("documents_deleted", 0),
            deliveries_planned=c.get("deliveries_planned", 0),
            delivered=c.get("delivered", 0),
            retrying=c.get("pending", 0),
            failed_deliveries=c.get("failed", 0),
            errors=tuple(tally.errors),
        )
        if report.published or report.archived or report.documents_changed or report.delivered:
            logger.info("cms scheduler tick: %s", report.as_json())
        return report

    # ------------------------------------------------------------------------------------- scheduling
    async def _schedule(self, now: datetime, tally: _Tally) -> None:
        try:
            async with self._sessions() as session:
                publish, unpublish = await ContentRepository(session).due(now, limit=self._batch)
        except Exception as exc:
            logger.exception("cms scheduler: reading due items failed")
            tally.errors.append(f"schedule: {type(exc).__name__}: {exc}")
            return
        for item_id in publish:
            await self._move(item_id, "published", now, tally)
        for item_id in unpublish:
            await self._move(item_id, "archived", now, tally)

    async def _move(self, item_id: int, target: str, now: datetime, tally: _Tally) -> None:
        try:
            async with self._sessions() as session, session.begin():
                repo = ContentRepository(session)
                item = await repo.get(item_id, lock=True)
                if target == "published":
                    due = item is not None and item.status in ("draft", "in_review")
                    at = item.publish_at if item else None
                else:
                    due = item is not None and item.status == "published"
                    at = item.unpublish_at if item else None
                if item is None or not due or at is None or at > now:
                    tally.skipped.append(item_id)
                    return
                await repo.transition(item_id, target, actor=SCHEDULER_ACTOR, expected_version=item.version)
        except CmsError as exc:  # moved, edited or deleted meanwhile
            logger.info("cms scheduler: item %d not %s: %s", item_id, target, exc)
            tally.skipped.append(item_id)
            return
        except Exception:
            logger.exception("cms scheduler: moving item %d to %s failed; retried next tick", item_id, target)
            tally.failed_items.append(item_id)
            return
        (tally.published if target == "published" else tally.archived).append(item_id)

    # ------------------------------------------------------------------------------------ search sync
    async def _settled(self, session: AsyncSession) -> int | None:
        for attempt in range(SETTLE_TRIES):
            settled = await settled_event_id(session)
            if settled is not None:
                return settled
            await asyncio.sleep(self._settle_wait_s * (attempt + 1))
        return None

    async def _sync_search(self, now: datetime, tally: _Tally) -> None:
        async with self._sessions() as session:
            until = await self._settled(session)
        if until is None:
            logger.info("cms scheduler: outbox busy, search sync waits for the next tick")
            return
        while True:
            async with self._sessions() as session, session.begin():
                cursor = await read_cursor(session, SEARCH_SYNC_CURSOR)
                events = await events_after(session, cursor, EVENT_BATCH, until=until)
                if not events:
                    return
                item_ids = sorted({i for e in events for i in e.item_ids})
                items = await searchable_items(session, item_ids)
                upserted, deleted = await session.run_sync(self._write_documents, item_ids, items)
                await advance_cursor(session, SEARCH_SYNC_CURSOR, events[-1].id)
            tally.add("events_synced", len(events))
            tally.add("documents_upserted", upserted)
            tally.add("documents_deleted", deleted)
            if len(events) < EVENT_BATCH:
                return

    def _write_documents(
        self, session: Session, item_ids: Sequence[int], items: dict[int, SearchableItem]
    ) -> tuple[int, int]:
        """Upsert the documents of the published items, delete every other document of these items."""
        repo = DocumentRepository(session)
        wanted: list[DocumentRecord] = []
        for item_id in item_ids:
            item = items.get(item_id)
            if item is not None and item.status == "published":
                wanted.extend(item_documents(item, self._base_url))
        keep = {d.canonical_url for d in wanted}
        upserted = 0
        if wanted:
            source_id = repo.ensure_source(name=CMS_SOURCE, kind=CMS_SOURCE, uri=self._base_url)
            counts = repo.upsert_documents(documents=wanted, source_id=source_id)
            upserted = counts.inserted + counts.updated
        stale = [
            document_url(self._base_url, locale, item_type, item_id)
            for item_id in item_ids
            for item_type in CONTENT_TYPES
            for locale in LOCALES
        ]
        ids = [doc_id for url in stale if url not in keep and (doc_id := repo.id_by_url(url)) is not None]
        return upserted, repo.delete(ids)

    # --------------------------------------------------------------------------------------- webhooks
    async def _webhooks(self, now: datetime, tally: _Tally) -> None:
        async with self._sessions() as session:
            until = await self._settled(session)
        if until is None:
            logger.info("cms scheduler: outbox busy, webhook planning waits for the next tick")
        else:
            await self._plan(now, until, tally)
        await self._send_due(now, tally)

    async def _plan(self, now: datetime, until: int, tally: _Tally) -> None:
        while True:
            async with self._sessions() as session, session.begin():
                cursor = await read_cursor(session, WEBHOOK_CURSOR)
                planned = await DeliveryRepository(session).plan(
                    cursor, now=now, until=until, limit=EVENT_BATCH
                )
                if planned.last_event_id == cursor:
                    return
                await advance_cursor(session, WEBHOOK_CURSOR, planned.last_event_id)
            tally.add("deliveries_planned", planned.deliveries)
            if planned.last_event_id >= until:
                return

    async def _send_due(self, now: datetime, tally: _Tally) -> None:
        gate = asyncio.Semaphore(self._concurrency)
        lease_s = self._timeout_s * 2 + 30
        while True:
            async with self._sessions() as session, session.begin():
                due = await DeliveryRepository(session).due(now, self._batch, lease_s=lease_s)
            if not due:
                return

            async def attempt(delivery: DueDelivery) -> None:
                async with gate:
                    await self._attempt(delivery, now, tally)

            await asyncio.gather(*(attempt(d) for d in due))
            if len(due) < self._batch:
                return

    async def _attempt(self, delivery: DueDelivery, now: datetime, tally: _Tally) -> None:
        request = webhook_request(
            delivery, timestamp=int(self._clock().timestamp()), timeout_s=self._timeout_s
        )
        status: int | None = None
        error: str | None = None
        try:
            status = await asyncio.wait_for(self._sender(request), timeout=self._timeout_s)
        except TimeoutError:
            error = f"no answer within {self._timeout_s:g} s"
        except Exception as exc:  # any failure to deliver is retried
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        ok = status is not None and 200 <= status < 300
        if status is not None and not ok:
            error = f"HTTP {status}"
        async with self._sessions() as session, session.begin():
            outcome = await DeliveryRepository(session).record(
                delivery.id,
                ok=ok,
                status_code=status,
                error=error,
                now=now,
                max_attempts=self._max_attempts,
                backoff=self._backoff,
            )
        if outcome is not None:
            tally.add(outcome)
        if not ok:
            logger.info(
                "cms webhook %d: delivery %d of event %d attempt %d failed (%s)",
                delivery.webhook_id,
                delivery.id,
                delivery.event_id,
                delivery.attempts + 1,
                error,
            )


class AiohttpSender:
    """POSTs webhook requests with one reused aiohttp session (created on first use, on the running
    loop); redirects are not followed (a 3xx is a failed attempt). Unless ``private_targets``, only
    public addresses are reached (``cluster.ground.webhook_targets``): a refused target is a failed
    attempt whose error says why. ``close()`` when done."""

    def __init__(self, *, private_targets: bool = False) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._private_targets = private_targets

    async def __call__(self, request: WebhookRequest) -> int:
        if not self._private_targets:
            refused = literal_refusal(request.url)
            if refused is not None:
                raise PermissionError(f"webhook target refused: {refused}")
        if self._session is None or self._session.closed:
            connector = None if self._private_targets else aiohttp.TCPConnector(resolver=public_resolver())
            self._session = aiohttp.ClientSession(connector=connector)
        async with self._session.post(
            request.url,
            data=request.body,
            headers=request.headers,
            timeout=aiohttp.ClientTimeout(total=request.timeout_s),
            allow_redirects=False,
        ) as response:
            return response.status

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
