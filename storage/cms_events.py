"""The CMS event outbox and its readers: cursors, webhooks and webhook deliveries.

Writers add one ``cms_events`` row per content event in the transaction of the change it reports
(``append_event``). Readers (the search sync, the webhook planner) remember the last event id they handled
in ``cms_cursors`` and catch up from there, so an event is never lost and a reader that sees one twice
must tolerate it.

Event ids come from a sequence, handed out before commit: a transaction may commit event 12 while event 11
is still in flight. A reader that jumped to 12 would skip 11 for good. ``settled_event_id`` gives the
highest id below which every event is final (committed or rolled back), and readers stop there.

A delivery is one webhook's copy of one event (unique per pair, so planning twice adds nothing). Its life::

    pending --2xx--> delivered
    pending --error, attempts < max--> pending (next_attempt_at = now + backoff(attempts))
    pending --error, attempts = max--> failed
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast
from urllib.parse import urlsplit

from sqlalchemy import Insert, func, select, text, update
from sqlalchemy import delete as sa_delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from storage.cms_actions import EventType
from storage.cms_models import (
    LOCALES,
    CmsCategory,
    CmsCursor,
    CmsDelivery,
    CmsEvent,
    CmsItem,
    CmsItemTag,
    CmsTag,
    CmsWebhook,
    table_of,
)
from storage.errors import CmsNotFound, InvalidWebhook
from storage.rows import row_to

#: Cursor of the search sync (published items -> documents).
SEARCH_SYNC_CURSOR = "search-sync"
#: Cursor of the webhook planner (events -> deliveries).
WEBHOOK_CURSOR = "webhooks"
#: Delivery states.
DELIVERY_STATUSES = ("pending", "delivered", "failed")
#: Longest stored error message of a failed attempt.
ERROR_MAX_CHARS = 500


# ------------------------------------------------------------------------------------------------ outbox
@dataclass(frozen=True)
class EventRow:
    id: int
    type: str
    item_ids: list[int]
    payload: dict[str, Any]
    created_at: datetime


def event_insert(*, type: EventType, item_ids: Sequence[int], payload: dict[str, Any]) -> Insert:
    """The INSERT of one outbox event."""
    return insert(table_of(CmsEvent)).values(type=type, item_ids=list(item_ids), payload=payload)


async def append_event(
    session: AsyncSession, *, type: EventType, item_ids: Sequence[int], payload: dict[str, Any]
) -> None:
    """Add an event in the caller's transaction (it commits with the change it reports)."""
    await session.execute(event_insert(type=type, item_ids=item_ids, payload=payload))


async def events_after(
    session: AsyncSession, event_id: int, limit: int, *, until: int | None = None
) -> list[EventRow]:
    """Events with ``event_id < id <= until``, oldest first, at most ``limit``."""
    stmt = select(CmsEvent).where(CmsEvent.id > event_id).order_by(CmsEvent.id).limit(limit)
    if until is not None:
        stmt = stmt.where(CmsEvent.id <= until)
    rows = (await session.execute(stmt)).scalars().all()
    return [EventRow(r.id, r.type, [int(i) for i in r.item_ids], dict(r.payload), r.created_at) for r in rows]


async def outbox_head(session: AsyncSession, *, recent: int = 1_000) -> tuple[int, list[int]]:
    """The highest event id and the ids present among the ``recent`` below it (a reader starting here
    treats the absent ones as possibly still in flight)."""
    highest = int((await session.execute(select(func.coalesce(func.max(CmsEvent.id), 0)))).scalar_one())
    present = (await session.execute(select(CmsEvent.id).where(CmsEvent.id > highest - recent))).scalars()
    return highest, [int(i) for i in present]


async def outbox_changes(
    session: AsyncSession, after: int, also: Sequence[int] = (), *, limit: int = 1_000
) -> list[tuple[int, list[int]]]:
    """``(id, item_ids)`` of the events after ``after`` and of those among ``also``, oldest first."""
    condition = CmsEvent.id > after
    if also:
        condition = condition | CmsEvent.id.in_(list(also))
    rows = await session.execute(
        select(CmsEvent.id, CmsEvent.item_ids).where(condition).order_by(CmsEvent.id).limit(limit)
    )
    return [(int(r.id), [int(i) for i in r.item_ids]) for r in rows]


async def settled_event_id(session: AsyncSession) -> int | None:
    """The highest event id such that every event at or below it is final, or ``None`` while an event
    insert is still in flight (ask again shortly).

    Sound because an inserting transaction holds ROW EXCLUSIVE on ``cms_events`` from before it draws an
    id until it ends, and ids are drawn in increasing order: when no other transaction holds that lock
    after the maximum was read, no id below that maximum can still appear. Reads only; blocks nobody.
    """
    highest = (await session.execute(select(func.coalesce(func.max(CmsEvent.id), 0)))).scalar_one()
    in_flight = (
        await session.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'relation' "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND relation = 'cms_events'::regclass AND mode = 'RowExclusiveLock' AND granted "
                "AND pid IS DISTINCT FROM pg_backend_pid()"
            )
        )
    ).scalar_one()
    return None if in_flight else int(highest)


# ----------------------------------------------------------------------------------------------- cursors
async def read_cursor(session: AsyncSession, name: str, *, lock: bool = True) -> int:
    """The reader's watermark (0 for a new reader), locked for the caller's transaction by default so two
    readers of one name take turns."""
    await session.execute(insert(CmsCursor).values(name=name, value=0).on_conflict_do_nothing())
    stmt = select(CmsCursor.value).where(CmsCursor.name == name)
    if lock:
        stmt = stmt.with_for_update()
    return int((await session.execute(stmt)).scalar_one())


async def advance_cursor(session: AsyncSession, name: str, value: int) -> None:
    """Move the watermark forward (never back) in the caller's transaction."""
    await session.execute(
        update(CmsCursor).where(CmsCursor.name == name, CmsCursor.value < value).values(value=value)
    )


# ------------------------------------------------------------------------------------ search sync input
@dataclass(frozen=True)
class SearchableItem:
    """What the search sync needs of an item: its status and, per locale, title, summary and body text."""

    id: int
    type: str
    status: str
    published_at: datetime | None
    category: str | None
    tags: tuple[str, ...]
    titles: dict[str, str | None]
    summaries: dict[str, str | None]
    body_texts: dict[str, str | None]


async def searchable_items(session: AsyncSession, item_ids: Sequence[int]) -> dict[int, SearchableItem]:
    """The items that still exist among ``item_ids``, by id."""
    if not item_ids:
        return {}
    tags = (
        select(func.array_agg(CmsTag.slug))
        .select_from(CmsItemTag)
        .join(CmsTag, CmsTag.id == CmsItemTag.tag_id)
        .where(CmsItemTag.item_id == CmsItem.id)
        .scalar_subquery()
    )
    stmt = (
        select(CmsItem, CmsCategory.slug, tags)
        .outerjoin(CmsCategory, CmsCategory.id == CmsItem.category_id)
        .where(CmsItem.id.in_(list(item_ids)))
    )
    found: dict[int, SearchableItem] = {}
    for item, category, tag_slugs in (await session.execute(stmt)).all():
        found[item.id] = SearchableItem(
            id=item.id,
            type=item.type,
            status=item.status,
            published_at=item.published_at,
            category=category,
            tags=tuple(sorted(tag_slugs or ())),
            titles={loc: getattr(item, f"title_{loc}") for loc in LOCALES},
            summaries={loc: getattr(item, f"summary_{loc}") for loc in LOCALES},
            body_texts={loc: getattr(item, f"body_text_{loc}") for loc in LOCALES},
        )
    return found


# ---------------------------------------------------------------------------------------------- webhooks
@dataclass(frozen=True)
class WebhookRow:
    id: int
    url: str
    events: list[str]  # [] = every event; patterns such as "item.*"
    active: bool
    created_at: datetime
    secret: str = field(repr=False, default="")


def subscribed(patterns: Sequence[str], event_type: str) -> bool:
    """Whether a webhook with these event filters receives ``event_type`` (``[]`` = all, ``*`` globs)."""
    return not patterns or any(fnmatch.fnmatchcase(event_type, p) for p in patterns)


def check_webhook_url(url: str) -> str:
    """The URL, stripped, if it is an absolute http(s) URL with a host; ``InvalidWebhook`` otherwise."""
    value = url.strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise InvalidWebhook("url", url, f"is not a valid URL ({exc})") from exc
    if parts.scheme not in ("http", "https"):
        raise InvalidWebhook("url", url, "must start with http:// or https://")
    if not parts.hostname:
        raise InvalidWebhook("url", url, "has no host")
    if parts.username or parts.password:
        raise InvalidWebhook("url", url, "must not carry credentials; authenticate with the signature")
    if any(c.isspace() for c in value):
        raise InvalidWebhook("url", url, "contains whitespace")
    return value


def _check_patterns(events: Sequence[str]) -> list[str]:
    patterns = []
    for p in events:
        if not isinstance(p, str) or not p.strip():
            raise InvalidWebhook("events", list(events), "each filter is a non-empty event type or pattern")
        patterns.append(p.strip())
    return sorted(set(patterns))


def _webhook(row: CmsWebhook) -> WebhookRow:
    return WebhookRow(row.id, row.url, list(row.events), row.active, row.created_at, row.secret)


class WebhookRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, url: str, secret: str, events: Sequence[str] = ()) -> WebhookRow:
        if not secret:
            raise InvalidWebhook("secret", "", "is empty; subscribers verify signatures with it")
        row = CmsWebhook(url=check_webhook_url(url), secret=secret, events=_check_patterns(events))
        self.session.add(row)
        await self.session.flush()
        await self.session.refresh(row)
        return _webhook(row)

    async def get(self, webhook_id: int) -> WebhookRow | None:
        row = await self.session.get(CmsWebhook, webhook_id)
        return _webhook(row) if row else None

    async def list(self) -> list[WebhookRow]:
        rows = (await self.session.execute(select(CmsWebhook).order_by(CmsWebhook.id))).scalars().all()
        return [_webhook(r) for r in rows]

    async def delete(self, webhook_id: int) -> None:
        """Remove a webhook and its deliveries; ``CmsNotFound`` if there is none with that id."""
        # A DML statement gives a CursorResult (Session.execute is typed as giving a Result).
        result = cast(
            CursorResult[Any],
            await self.session.execute(sa_delete(CmsWebhook).where(CmsWebhook.id == webhook_id)),
        )
        if not result.rowcount:
            raise CmsNotFound("webhook", webhook_id)


# -------------------------------------------------------------------------------------------- deliveries
@dataclass(frozen=True)
class DueDelivery:
    """A claimed delivery with what sending it needs."""

    id: int
    attempts: int
    webhook_id: int
    url: str
    secret: str = field(repr=False)
    event_id: int
    event_type: str
    item_ids: list[int]
    payload: dict[str, Any]
    event_created_at: datetime


@dataclass(frozen=True)
class DeliveryLogRow:
    id: int
    event_id: int
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime
    delivered_at: datetime | None
    event_created_at: datetime


class Planned(NamedTuple):
    last_event_id: int  # the new cursor
    deliveries: int  # rows added (0 for pairs planned before)


class DeliveryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def plan(
        self, after_event_id: int, *, now: datetime, until: int | None = None, limit: int = 1000
    ) -> Planned:
        """One pending delivery per (active webhook subscribed to the event's type, event) for the events
        after ``after_event_id`` (up to ``until``, at most ``limit``), due at ``now``. A webhook receives
        the events created after it. Idempotent. Returns the last event id considered (the new cursor)
        and the number of deliveries added."""
        events = await events_after(self.session, after_event_id, limit, until=until)
        if not events:
            return Planned(after_event_id, 0)
        hooks = (
            (await self.session.execute(select(CmsWebhook).where(CmsWebhook.active.is_(True))))
            .scalars()
            .all()
        )
        rows = [
            {"webhook_id": h.id, "event_id": e.id, "next_attempt_at": now}
            for e in events
            for h in hooks
            if e.created_at >= h.created_at and subscribed(h.events, e.type)
        ]
        added = 0
        for start in range(0, len(rows), 1000):
            result = await self.session.execute(
                insert(CmsDelivery)
                .values(rows[start : start + 1000])
                .on_conflict_do_nothing(constraint="uq_cms_deliveries_webhook_event")
                .returning(CmsDelivery.id)
            )
            added += len(result.all())
        return Planned(events[-1].id, added)

    async def due(self, now: datetime, limit: int, *, lease_s: float = 60.0) -> list[DueDelivery]:
        """Claim up to ``limit`` pending deliveries of active webhooks that are due at ``now``: each is
        pushed ``lease_s`` into the future, so another sender skips it while this one tries (rows locked
        by a concurrent claim are skipped too). A sender that dies mid-attempt leaves the delivery to be
        retried once the lease is over; ``record`` sets the real next attempt."""
        claimable = (
            select(CmsDelivery.id)
            .join(CmsWebhook, CmsWebhook.id == CmsDelivery.webhook_id)
            .where(
                CmsDelivery.status == "pending",
                CmsDelivery.next_attempt_at <= now,
                CmsWebhook.active.is_(True),
            )
            .order_by(CmsDelivery.next_attempt_at, CmsDelivery.id)
            .limit(limit)
            .with_for_update(of=CmsDelivery, skip_locked=True)
            .scalar_subquery()
        )
        claimed = (
            (
                await self.session.execute(
                    update(CmsDelivery)
                    .where(CmsDelivery.id.in_(claimable))
                    .values(next_attempt_at=now + timedelta(seconds=lease_s))
                    .returning(CmsDelivery.id)
                )
            )
            .scalars()
            .all()
        )
        if not claimed:
            return []
        rows = (
            await self.session.execute(
                select(CmsDelivery, CmsWebhook, CmsEvent)
                .join(CmsWebhook, CmsWebhook.id == CmsDelivery.webhook_id)
                .join(CmsEvent, CmsEvent.id == CmsDelivery.event_id)
                .where(CmsDelivery.id.in_(list(claimed)))
                .order_by(CmsDelivery.id)
            )
        ).all()
        return [
            DueDelivery(
                id=d.id,
                attempts=d.attempts,
                webhook_id=w.id,
                url=w.url,
                secret=w.secret,
                event_id=e.id,
                event_type=e.type,
                item_ids=[int(i) for i in e.item_ids],
                payload=dict(e.payload),
                event_created_at=e.created_at,
            )
            for d, w, e in rows
        ]

    async def record(
        self,
        delivery_id: int,
        *,
        ok: bool,
        status_code: int | None,
        error: str | None,
        now: datetime,
        max_attempts: int,
        backoff: Callable[[int], float],
    ) -> str | None:
        """Record one attempt: delivered on success; otherwise retried after ``backoff(attempts)`` seconds
        (``attempts`` counting this one), or failed once ``max_attempts`` are spent. Returns the new
        status, or ``None`` if the delivery is gone or no longer pending."""
        current = (
            await self.session.execute(
                select(CmsDelivery.attempts)
                .where(CmsDelivery.id == delivery_id, CmsDelivery.status == "pending")
                .with_for_update()
            )
        ).scalar_one_or_none()
        if current is None:
            return None
        attempts = int(current) + 1
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_status_code": status_code,
            "last_error": error[:ERROR_MAX_CHARS] if error else None,
        }
        if ok:
            values.update(status="delivered", delivered_at=now)
        elif attempts >= max_attempts:
            values.update(status="failed")
        else:
            values.update(next_attempt_at=now + timedelta(seconds=backoff(attempts)))
        await self.session.execute(update(CmsDelivery).where(CmsDelivery.id == delivery_id).values(**values))
        return str(values.get("status", "pending"))

    async def log(
        self, webhook_id: int, limit: int = 50, *, before_id: int | None = None
    ) -> list[DeliveryLogRow]:
        """A webhook's deliveries, newest first; page with ``before_id`` (the previous page's last id)."""
        stmt = (
            select(CmsDelivery, CmsEvent.type, CmsEvent.created_at)
            .join(CmsEvent, CmsEvent.id == CmsDelivery.event_id)
            .where(CmsDelivery.webhook_id == webhook_id)
            .order_by(CmsDelivery.id.desc())
            .limit(limit)
        )
        if before_id is not None:
            stmt = stmt.where(CmsDelivery.id < before_id)
        return [
            row_to(DeliveryLogRow, d, event_type=event_type, event_created_at=created_at)
            for d, event_type, created_at in (await self.session.execute(stmt)).all()
        ]
