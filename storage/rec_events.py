"""Interaction events for recommendations: idempotent batch writes into month partitions, the ``seq``
watermark readers follow, per-subject history, retention and reader cursors.

``rec_events`` is partitioned by RANGE (occurred_at), one partition per UTC month named
``rec_events_pYYYYMM``. The writer adds the months a batch needs (``store_events``); retention drops whole
months (``drop_expired``). An event id is stored once whatever its month: ``rec_event_ids`` (one row per
stored id, not partitioned) decides which events of a batch are new.

``seq`` comes from a sequence, drawn inside the INSERT into the parent table: a transaction may commit
seq 12 while seq 11 is still in flight. A reader that jumped to 12 would skip 11 for good, so readers stop
at ``settled_seq`` (the technique of ``storage.cms_events.settled_event_id``). That relies on every write
going through the parent ``rec_events`` (never into a partition directly) and on writers committing
promptly: an open writing transaction holds every reader back.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, cast, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from storage import rec_models
from storage.cms_models import table_of
from storage.models import Document
from storage.rec_models import RecCursor, RecEvent, RecEventId, RecServed
from storage.rows import row_to

#: Interaction event types (the CHECK constraint of ``rec_events.type``).
EVENT_TYPES: tuple[str, ...] = rec_models.EVENT_TYPES
#: Most events one ``store_events`` call takes.
MAX_BATCH = 1000
#: ``pg_advisory_xact_lock`` key that serialises creating and dropping ``rec_events`` partitions.
PARTITION_LOCK_KEY = 7426118
#: Name of a month partition of ``rec_events``.
PARTITION_NAME = re.compile(r"rec_events_p(\d{4})(\d{2})")

# The month partitions of rec_events (attached ones), by name.
_PARTITIONS_SQL = (
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = 'rec_events'::regclass"
)


@dataclass(frozen=True)
class EventIn:
    """An event to store, validated by the caller (the HTTP layer); storage trusts its types."""

    event_id: str
    subject: str  # "user:<id>" or "session:<id>"
    user_id: str | None
    session_id: str | None
    document_id: int
    type: str
    occurred_at: datetime  # timezone-aware
    value: float | None
    list_id: uuid.UUID | None
    posted_by: str


@dataclass(frozen=True)
class EventRow:
    """A stored event, as readers get it."""

    seq: int
    event_id: str
    subject: str
    document_id: int
    type: str
    value: float | None
    occurred_at: datetime
    list_id: uuid.UUID | None
    experiment: str | None
    variant: str | None


@dataclass(frozen=True)
class StoredEvents:
    """What ``store_events`` did with a batch, ids in batch order, each once."""

    stored: list[str]  # event ids newly stored
    duplicates: list[str]  # event ids already stored before (left untouched)


# ------------------------------------------------------------------------------------------- partitions
def month_start(at: datetime) -> datetime:
    """The first instant (UTC) of the UTC month holding ``at`` (timezone-aware)."""
    if at.tzinfo is None:
        raise ValueError(f"{at!r} has no time zone; events are placed by their UTC month")
    return at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(start: datetime) -> datetime:
    """The first instant of the month after the one starting at ``start``."""
    return (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )


def partition_name(start: datetime) -> str:
    """``rec_events_pYYYYMM`` of the month starting at ``start``."""
    return f"rec_events_p{start.year:04d}{start.month:02d}"


async def _attached(session: AsyncSession, names: Sequence[str]) -> set[str]:
    rows = await session.execute(
        text(_PARTITIONS_SQL + " AND c.relname = ANY(:names)"), {"names": list(names)}
    )
    return {str(name) for name in rows.scalars()}


async def ensure_partitions(session: AsyncSession, months: Sequence[datetime]) -> list[str]:
    """Make sure the partitions of these months (as ``month_start`` gives them) exist; returns the names
    created. Runs in the caller's transaction.

    Concurrent callers do not fail: the catalogue is read first (cheap, no lock), and only missing months
    take ``pg_advisory_xact_lock(PARTITION_LOCK_KEY)``, look again and create what is still missing, so a
    second creator waits for the first to commit and then finds the partition. A partition is created
    standalone and then attached (``ATTACH PARTITION`` takes SHARE UPDATE EXCLUSIVE on ``rec_events``):
    ``CREATE TABLE ... PARTITION OF`` would take ACCESS EXCLUSIVE, which waits for every open reader and
    writer of the table and makes all later ones queue behind it until the caller commits."""
    wanted = {partition_name(m): m for m in months}
    if not wanted or not set(wanted) - await _attached(session, list(wanted)):
        return []
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PARTITION_LOCK_KEY})
    missing = sorted(set(wanted) - await _attached(session, list(wanted)))
    for name in missing:
        lower, upper = wanted[name], next_month(wanted[name])
        # Names and bounds are built here from integers, never from input: safe to inline (DDL binds none).
        await session.execute(
            text(f"CREATE TABLE IF NOT EXISTS {name} (LIKE rec_events INCLUDING CONSTRAINTS)")
        )
        await session.execute(
            text(
                f"ALTER TABLE rec_events ATTACH PARTITION {name} "
                f"FOR VALUES FROM ('{lower.isoformat()}') TO ('{upper.isoformat()}')"
            )
        )
    return missing


# ---------------------------------------------------------------------------------------------- writes
async def store_events(session: AsyncSession, events: Sequence[EventIn]) -> StoredEvents:
    """Store the events not stored before, in the caller's transaction (the caller commits).

    An id repeated within the batch is stored once (its first occurrence) and reported once. Events whose
    ``list_id`` names a served list get that list's experiment and variant. At most ``MAX_BATCH`` events;
    a few statements per call whatever its size. A concurrent batch with the same id waits for this one's
    transaction, then finds the id stored."""
    if len(events) > MAX_BATCH:
        raise ValueError(f"{len(events)} events in one batch; at most {MAX_BATCH}: split it")
    first: dict[str, EventIn] = {}
    for event in events:
        first.setdefault(event.event_id, event)
    if not first:
        return StoredEvents(stored=[], duplicates=[])
    months = {event_id: month_start(e.occurred_at) for event_id, e in first.items()}
    ids_table = table_of(RecEventId)
    claimed = await session.execute(
        insert(ids_table).on_conflict_do_nothing().returning(ids_table.c.event_id),
        [{"event_id": e.event_id, "occurred_at": e.occurred_at} for e in first.values()],
    )
    new = {str(event_id) for event_id in claimed.scalars()}
    stored = [event_id for event_id in first if event_id in new]
    duplicates = [event_id for event_id in first if event_id not in new]
    if not stored:
        return StoredEvents(stored=stored, duplicates=duplicates)
    await ensure_partitions(session, sorted({months[event_id] for event_id in stored}))
    list_ids = {first[event_id].list_id for event_id in stored} - {None}
    served: dict[uuid.UUID, tuple[str | None, str | None]] = {}
    if list_ids:
        found = await session.execute(
            select(RecServed.list_id, RecServed.experiment, RecServed.variant).where(
                RecServed.list_id.in_(list_ids)
            )
        )
        served = {list_id: (experiment, variant) for list_id, experiment, variant in found.all()}
    rows: list[dict[str, Any]] = []
    for event_id in stored:
        e = first[event_id]
        experiment, variant = served.get(e.list_id, (None, None)) if e.list_id else (None, None)
        rows.append(
            {
                "event_id": e.event_id,
                "subject": e.subject,
                "user_id": e.user_id,
                "session_id": e.session_id,
                "document_id": e.document_id,
                "type": e.type,
                "value": e.value,
                "occurred_at": e.occurred_at,
                "list_id": e.list_id,
                "experiment": experiment,
                "variant": variant,
                "posted_by": e.posted_by,
            }
        )
    # Through the parent table: that takes the ROW EXCLUSIVE lock settled_seq watches before seq is drawn.
    await session.execute(insert(table_of(RecEvent)).on_conflict_do_nothing(), rows)
    return StoredEvents(stored=stored, duplicates=duplicates)


async def existing_documents(session: AsyncSession, ids: Sequence[int]) -> set[int]:
    """Which of ``ids`` are stored documents."""
    if not ids:
        return set()
    found = await session.execute(select(Document.id).where(Document.id.in_(set(ids))))
    return {int(i) for i in found.scalars()}


# ---------------------------------------------------------------------------------------------- reads
_EVENT_COLUMNS = (
    RecEvent.seq,
    RecEvent.event_id,
    RecEvent.subject,
    RecEvent.document_id,
    RecEvent.type,
    RecEvent.value,
    RecEvent.occurred_at,
    RecEvent.list_id,
    RecEvent.experiment,
    RecEvent.variant,
)


def settled_seq(session: Session) -> int | None:
    """The highest ``seq`` such that every event at or below it is final (0 when there is none), or
    ``None`` while an event insert is still in flight (ask again shortly).

    Sound because an inserting transaction holds ROW EXCLUSIVE on the parent ``rec_events`` from before it
    draws a seq until it ends, and seqs are drawn in increasing order: when no other transaction holds that
    lock after the maximum was read, no seq below that maximum can still appear. Read the events up to it
    in a later statement of a READ COMMITTED transaction (the default). Reads only; blocks nobody."""
    highest = session.execute(select(func.coalesce(func.max(RecEvent.seq), 0))).scalar_one()
    in_flight = session.execute(
        text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'relation' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND relation = 'rec_events'::regclass AND mode = 'RowExclusiveLock' AND granted "
            "AND pid IS DISTINCT FROM pg_backend_pid()"
        )
    ).scalar_one()
    return None if in_flight else int(highest)


def events_after(session: Session, seq: int, limit: int, *, until: int | None = None) -> list[EventRow]:
    """Events with ``seq < event.seq <= until``, in seq order, at most ``limit``."""
    stmt = select(*_EVENT_COLUMNS).where(RecEvent.seq > seq).order_by(RecEvent.seq).limit(limit)
    if until is not None:
        stmt = stmt.where(RecEvent.seq <= until)
    return [row_to(EventRow, row) for row in session.execute(stmt).all()]


def events_of_group(
    session: Session, *, group: int, groups: int, after_seq: int, until: int, limit: int
) -> list[EventRow]:
    """The events of group ``group`` of ``groups`` of subjects with ``after_seq < seq <= until``, in seq
    order, at most ``limit`` (page on by passing the last one's seq as ``after_seq``).

    A subject's group is ``abs(hashtext(subject)) % groups``: every event of a subject is in one group, so
    books built per group hold whole subjects. ``hashtext`` is PostgreSQL's internal hash: stable on one
    server, not promised across major versions, so the groups of one rebuild come from one server. Each
    group's read walks the seq index over the whole range and keeps its share (no index on the hash)."""
    if groups < 1 or not 0 <= group < groups:
        raise ValueError(f"group {group} of {groups}: need groups >= 1 and 0 <= group < groups")
    # The int4 hash widened first: abs() of its smallest value overflows int4.
    bucket = func.abs(cast(func.hashtext(RecEvent.subject), BigInteger)) % groups
    stmt = (
        select(*_EVENT_COLUMNS)
        .where(RecEvent.seq > after_seq, RecEvent.seq <= until, bucket == group)
        .order_by(RecEvent.seq)
        .limit(limit)
    )
    return [row_to(EventRow, row) for row in session.execute(stmt).all()]


def max_seq(session: Session) -> int:
    """The highest stored ``seq`` (0 when there is none); not necessarily settled."""
    return int(session.execute(select(func.coalesce(func.max(RecEvent.seq), 0))).scalar_one())


def recent_events(session: Session, subject: str, *, limit: int) -> list[EventRow]:
    """A subject's latest events by ``occurred_at``, newest first, at most ``limit``."""
    stmt = (
        select(*_EVENT_COLUMNS)
        .where(RecEvent.subject == subject)
        .order_by(RecEvent.occurred_at.desc(), RecEvent.seq.desc())
        .limit(limit)
    )
    return [row_to(EventRow, row) for row in session.execute(stmt).all()]


# ------------------------------------------------------------------------------------------- retention
def drop_expired(session: Session, *, before: datetime) -> int:
    """Retention, in the caller's transaction: drop every month partition whose upper bound is at or
    before ``before``, the ids of the events they held, and the served lists older than ``before``.
    Returns the number of partitions dropped.

    Events go by whole months: those of the month holding ``before`` stay until that month has passed,
    and so do their ids (``rec_event_ids`` is cut at the same month boundary, not at ``before``: an id
    forgotten while its event is still stored would let a replay collide with it). Dropping a partition
    takes ACCESS EXCLUSIVE on ``rec_events``: run this in a short transaction of its own."""
    cutoff = month_start(before)
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PARTITION_LOCK_KEY})
    dropped = 0
    for name in sorted(str(n) for n in session.execute(text(_PARTITIONS_SQL)).scalars()):
        match = PARTITION_NAME.fullmatch(name)
        if match is None:
            continue
        upper = next_month(datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC))
        if upper <= cutoff:
            session.execute(text(f"DROP TABLE {name}"))
            dropped += 1
    session.execute(delete(RecEventId).where(RecEventId.occurred_at < cutoff))
    session.execute(delete(RecServed).where(RecServed.served_at < before))
    return dropped


# ----------------------------------------------------------------------------------------------- cursors
def read_cursor(session: Session, name: str) -> int:
    """A reader's persisted watermark (a ``seq``); 0 for a reader that has none."""
    value = session.execute(select(RecCursor.value).where(RecCursor.name == name)).scalar_one_or_none()
    return 0 if value is None else int(value)


def write_cursor(session: Session, name: str, value: int) -> None:
    """Persist a reader's watermark (as given: it may move back) in the caller's transaction."""
    stmt = insert(RecCursor).values(name=name, value=value)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[RecCursor.name], set_={"value": stmt.excluded.value, "updated_at": func.now()}
        )
    )
