"""The recommendations store (storage/rec_events.py, storage/rec_experiments.py) on real PostgreSQL:
month partitions made on demand (concurrently too), idempotent event ids, experiment tags copied from
served lists, the settled watermark, retention by whole months, experiment counts and cursors."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from storage.database import make_async_engine
from storage.documents import DocumentRecord, DocumentRepository
from storage.rec_events import (
    MAX_BATCH,
    EventIn,
    EventRow,
    StoredEvents,
    drop_expired,
    events_after,
    existing_documents,
    max_seq,
    read_cursor,
    recent_events,
    settled_seq,
    store_events,
    write_cursor,
)
from storage.rec_experiments import (
    ExperimentRow,
    ServedList,
    Variant,
    VariantCounts,
    active_experiments,
    experiment_counts,
    get_experiment,
    put_experiment,
    record_served,
)
from storage.rec_models import RecServed
from tests.conftest import REC_TABLES, truncate

T = TypeVar("T")
JAN = datetime(2024, 1, 20, 12, 0, tzinfo=UTC)
FEB = datetime(2024, 2, 10, 8, 30, tzinfo=UTC)
MAR = datetime(2024, 3, 5, 0, 0, tzinfo=UTC)
PARTITIONS_SQL = (
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = 'rec_events'::regclass ORDER BY 1"
)


@pytest.fixture
def rec_db(engine: Engine, database_url: str) -> Iterator[str]:
    """Empty recommendation tables with no month partitions left by earlier tests."""
    with engine.begin() as conn:
        for name in conn.execute(text(PARTITIONS_SQL)).scalars().all():
            conn.execute(text(f"DROP TABLE {name}"))
    truncate(engine, REC_TABLES)
    yield database_url


def run(url: str, body: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]) -> T:
    """``body`` with a session factory on a fresh async engine."""

    async def main() -> T:
        engine = make_async_engine(url, pool_size=3)
        try:
            return await body(async_sessionmaker(engine, expire_on_commit=False))
        finally:
            await engine.dispose()

    return asyncio.run(main())


def store(url: str, events: list[EventIn]) -> StoredEvents:
    """Store and commit one batch."""

    async def body(sessions: async_sessionmaker[AsyncSession]) -> StoredEvents:
        async with sessions() as session, session.begin():
            return await store_events(session, events)

    return run(url, body)


def ev(
    event_id: str,
    at: datetime,
    *,
    type: str = "click",
    document_id: int = 1,
    subject: str = "user:u1",
    list_id: uuid.UUID | None = None,
    value: float | None = None,
) -> EventIn:
    user = subject.removeprefix("user:") if subject.startswith("user:") else None
    session = subject.removeprefix("session:") if subject.startswith("session:") else None
    return EventIn(
        event_id=event_id,
        subject=subject,
        user_id=user,
        session_id=session,
        document_id=document_id,
        type=type,
        occurred_at=at,
        value=value,
        list_id=list_id,
        posted_by="key:7",
    )


def partitions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text(PARTITIONS_SQL)).scalars())


def all_events(engine: Engine) -> list[EventRow]:
    with Session(engine) as session:
        return events_after(session, 0, 10_000)


def test_two_months_go_to_two_partitions_and_read_back_in_seq_order(engine: Engine, rec_db: str) -> None:
    result = store(
        rec_db,
        [
            ev("e1", FEB, type="view", document_id=10),
            ev("e2", JAN, type="dwell", document_id=11, value=12.5, subject="session:s9"),
            ev("e3", FEB + timedelta(days=3), type="like", document_id=12),
        ],
    )
    assert result == StoredEvents(stored=["e1", "e2", "e3"], duplicates=[])
    assert partitions(engine) == ["rec_events_p202401", "rec_events_p202402"]
    with engine.connect() as conn:
        # Each partition carries the parent's primary key and its four indexes.
        for name in partitions(engine):
            assert (
                conn.execute(
                    text("SELECT count(*) FROM pg_indexes WHERE tablename = :t"), {"t": name}
                ).scalar_one()
                == 5
            )
        stored = conn.execute(
            text("SELECT event_id, tableoid::regclass::text, user_id, session_id, posted_by FROM rec_events")
        ).all()
    assert sorted(stored) == [
        ("e1", "rec_events_p202402", "u1", None, "key:7"),
        ("e2", "rec_events_p202401", None, "s9", "key:7"),
        ("e3", "rec_events_p202402", "u1", None, "key:7"),
    ]
    rows = all_events(engine)
    assert [(r.seq, r.event_id, r.document_id, r.type, r.value) for r in rows] == [
        (1, "e1", 10, "view", None),
        (2, "e2", 11, "dwell", 12.5),
        (3, "e3", 12, "like", None),
    ]
    assert rows[1] == EventRow(2, "e2", "session:s9", 11, "dwell", 12.5, JAN, None, None, None)
    with Session(engine) as session:
        assert [r.event_id for r in events_after(session, 1, 10)] == ["e2", "e3"]
        assert [r.event_id for r in events_after(session, 0, 10, until=2)] == ["e1", "e2"]
        assert [r.event_id for r in events_after(session, 0, 1)] == ["e1"]
        assert max_seq(session) == 3
        assert settled_seq(session) == 3
        # Newest first by occurrence.
        assert [r.event_id for r in recent_events(session, "user:u1", limit=10)] == ["e3", "e1"]
        assert [r.event_id for r in recent_events(session, "user:u1", limit=1)] == ["e3"]
        assert recent_events(session, "user:nobody", limit=5) == []
    # A later batch into an existing month creates nothing.
    assert store(rec_db, [ev("e4", JAN + timedelta(days=1))]).stored == ["e4"]
    assert partitions(engine) == ["rec_events_p202401", "rec_events_p202402"]


def test_a_repeated_event_id_is_stored_once(engine: Engine, rec_db: str) -> None:
    first = store(rec_db, [ev("a", JAN), ev("b", JAN, document_id=2), ev("a", FEB, document_id=3)])
    assert first == StoredEvents(stored=["a", "b"], duplicates=[])
    # Same ids again, another month and fields: nothing is touched.
    second = store(
        rec_db, [ev("c", FEB), ev("a", MAR, document_id=9), ev("b", JAN, document_id=9), ev("a", MAR)]
    )
    assert second == StoredEvents(stored=["c"], duplicates=["a", "b"])
    rows = all_events(engine)
    assert [(r.event_id, r.occurred_at, r.document_id) for r in rows] == [
        ("a", JAN, 1),
        ("b", JAN, 2),
        ("c", FEB, 1),
    ]
    # The month only a duplicate named was not created.
    assert partitions(engine) == ["rec_events_p202401", "rec_events_p202402"]
    assert store(rec_db, [ev("a", JAN)]) == StoredEvents(stored=[], duplicates=["a"])
    assert store(rec_db, []) == StoredEvents(stored=[], duplicates=[])


def test_store_events_refuses_oversized_batches_and_naive_times(rec_db: str) -> None:
    async def body(sessions: async_sessionmaker[AsyncSession]) -> None:
        async with sessions() as session:
            with pytest.raises(ValueError, match="at most 1000"):
                await store_events(session, [ev(f"x{i}", JAN) for i in range(MAX_BATCH + 1)])
            with pytest.raises(ValueError, match="no time zone"):
                await store_events(session, [ev("naive", datetime(2024, 1, 1))])

    run(rec_db, body)


def test_a_full_batch_is_stored(engine: Engine, rec_db: str) -> None:
    events = [ev(f"n{i}", JAN + timedelta(minutes=i), document_id=i) for i in range(MAX_BATCH)]
    assert len(store(rec_db, events).stored) == MAX_BATCH
    with Session(engine) as session:
        assert max_seq(session) == MAX_BATCH


def test_events_answering_a_served_list_carry_its_experiment_and_variant(engine: Engine, rec_db: str) -> None:
    served, plain, unknown = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    async def body(sessions: async_sessionmaker[AsyncSession]) -> None:
        async with sessions() as session, session.begin():
            await record_served(
                session,
                [
                    ServedList(
                        list_id=served,
                        subject="user:u1",
                        experiment="ranker",
                        variant="b",
                        document_ids=[5, 6, 7],
                        params={"alpha": 0.3},
                    )
                ],
            )
            await record_served(
                session,
                [
                    ServedList(
                        list_id=plain,
                        subject="user:u1",
                        experiment=None,
                        variant=None,
                        document_ids=[],
                        params={},
                    )
                ],
            )
            # Recording the same list again changes nothing.
            await record_served(
                session,
                [
                    ServedList(
                        list_id=served,
                        subject="user:x",
                        experiment="x",
                        variant="x",
                        document_ids=[1],
                        params={},
                    )
                ],
            )
        async with sessions() as session, session.begin():
            await store_events(
                session,
                [
                    ev("s1", JAN, list_id=served, type="impression"),
                    ev("s2", JAN, list_id=plain),
                    ev("s3", JAN, list_id=unknown),
                    ev("s4", JAN),
                ],
            )

    run(rec_db, body)
    assert [(r.event_id, r.list_id, r.experiment, r.variant) for r in all_events(engine)] == [
        ("s1", served, "ranker", "b"),
        ("s2", plain, None, None),
        ("s3", unknown, None, None),
        ("s4", None, None, None),
    ]
    with Session(engine) as session:
        row = session.get(RecServed, served)
        assert row is not None
        assert (row.subject, row.document_ids, row.params) == ("user:u1", [5, 6, 7], {"alpha": 0.3})


def test_settled_seq_waits_for_an_uncommitted_insert(engine: Engine, rec_db: str) -> None:
    def settled() -> int | None:
        with Session(engine) as other:
            # Fail instead of hanging if the writer's partition creation blocked readers.
            other.execute(text("SET LOCAL lock_timeout = '2s'"))
            return settled_seq(other)

    async def body(sessions: async_sessionmaker[AsyncSession]) -> None:
        assert settled() == 0
        async with sessions() as writer:
            # The first event of a month: the partition is created in the same open transaction.
            await store_events(writer, [ev("w1", JAN)])
            assert settled() is None
            await writer.commit()
        assert settled() == 1
        async with sessions() as writer:
            await store_events(writer, [ev("w2", JAN), ev("w3", JAN)])
            assert settled() is None
            await writer.rollback()
        assert settled() == 1
        async with sessions() as writer, writer.begin():
            await store_events(writer, [ev("w4", JAN)])
        assert settled() == 4  # seqs 2 and 3 were drawn by the rolled-back batch

    run(rec_db, body)


def test_concurrent_writers_of_a_new_month_both_succeed(engine: Engine, rec_db: str) -> None:
    def waiting_on_advisory_lock() -> bool:
        with engine.connect() as conn:
            return bool(
                conn.execute(
                    text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                ).scalar_one()
            )

    async def body(sessions: async_sessionmaker[AsyncSession]) -> StoredEvents:
        async with sessions() as first, sessions() as second:
            await store_events(first, [ev("c1", MAR)])  # creates March, holds the partition lock
            racer = asyncio.create_task(store_events(second, [ev("c2", MAR + timedelta(hours=1))]))
            deadline = time.monotonic() + 10
            while not waiting_on_advisory_lock():
                assert time.monotonic() < deadline, "the second writer never waited for the first"
                await asyncio.sleep(0.05)
            await first.commit()
            result = await asyncio.wait_for(racer, 10)
            await second.commit()
            return result

    assert run(rec_db, body) == StoredEvents(stored=["c2"], duplicates=[])
    assert partitions(engine) == ["rec_events_p202403"]
    assert [r.event_id for r in all_events(engine)] == ["c1", "c2"]


def test_drop_expired_drops_whole_old_months_and_their_ids(engine: Engine, rec_db: str) -> None:
    store(
        rec_db,
        [ev("j1", JAN), ev("j2", JAN), ev("f1", FEB), ev("f2", FEB + timedelta(days=10)), ev("m1", MAR)],
    )
    with Session(engine) as session, session.begin():
        for n, at in enumerate([JAN, FEB, FEB + timedelta(days=10)]):
            session.add(
                RecServed(list_id=uuid.UUID(int=n + 1), subject="user:u1", document_ids=[1], served_at=at)
            )
    before = datetime(2024, 2, 15, tzinfo=UTC)
    with Session(engine) as session, session.begin():
        assert drop_expired(session, before=before) == 1
    assert partitions(engine) == ["rec_events_p202402", "rec_events_p202403"]
    assert [r.event_id for r in all_events(engine)] == ["f1", "f2", "m1"]
    with engine.connect() as conn:
        ids = conn.execute(text("SELECT event_id FROM rec_event_ids ORDER BY 1")).scalars().all()
        served = conn.execute(text("SELECT list_id FROM rec_served ORDER BY served_at")).scalars().all()
    # February stays whole (its ids too, even those before the cut); served lists go by the exact time.
    assert ids == ["f1", "f2", "m1"]
    assert served == [uuid.UUID(int=3)]
    assert store(rec_db, [ev("f1", FEB)]).duplicates == ["f1"]
    with Session(engine) as session, session.begin():
        assert drop_expired(session, before=before) == 0
        # A bound on a month boundary drops the month that ends there.
        assert drop_expired(session, before=datetime(2024, 4, 1, tzinfo=UTC)) == 2
    assert partitions(engine) == []
    assert all_events(engine) == []
    with Session(engine) as session:
        assert max_seq(session) == 0


def test_experiments_are_upserted_and_listed(rec_db: str) -> None:
    async def body(sessions: async_sessionmaker[AsyncSession]) -> None:
        async with sessions() as session, session.begin():
            created = await put_experiment(
                session,
                name="ranker-v2",
                variants=[Variant("control", 0.5, {}), Variant("mmr", 0.5, {"lambda": 0.7})],
                active=True,
            )
            await put_experiment(session, name="old", variants=[Variant("a", 1.0, {})], active=False)
        assert created.variants == [Variant("control", 0.5, {}), Variant("mmr", 0.5, {"lambda": 0.7})]
        async with sessions() as session, session.begin():
            updated = await put_experiment(
                session, name="ranker-v2", variants=[Variant("control", 1, {"k": [1, 2]})], active=True
            )
        assert updated == ExperimentRow(
            "ranker-v2",
            [Variant("control", 1.0, {"k": [1, 2]})],
            True,
            created.created_at,
            updated.updated_at,
        )
        assert updated.updated_at >= created.updated_at
        async with sessions() as session:
            assert await get_experiment(session, "ranker-v2") == updated
            assert await get_experiment(session, "missing") is None
            assert [e.name for e in await active_experiments(session)] == ["ranker-v2"]
            for name, variants, match in [
                ("Bad Name", [Variant("a", 1, {})], "a-z"),
                ("x" * 65, [Variant("a", 1, {})], "a-z"),
                ("empty", [], "no variants"),
                ("twice", [Variant("a", 1, {}), Variant("a", 2, {})], "repeats"),
            ]:
                with pytest.raises(ValueError, match=match):
                    await put_experiment(session, name=name, variants=variants, active=True)

    run(rec_db, body)


def test_experiment_counts_per_variant(rec_db: str) -> None:
    lists = {name: uuid.uuid4() for name in ("a1", "a2", "a3", "b1", "b2", "other")}

    async def body(
        sessions: async_sessionmaker[AsyncSession],
    ) -> tuple[list[VariantCounts], list[VariantCounts]]:
        async with sessions() as session, session.begin():
            await put_experiment(
                session,
                name="exp",
                variants=[Variant("a", 0.4, {}), Variant("b", 0.4, {}), Variant("c", 0.2, {})],
                active=True,
            )
            for key, list_id in lists.items():
                experiment, variant = ("exp2", "a") if key == "other" else ("exp", key[0])
                await record_served(
                    session,
                    [
                        ServedList(
                            list_id=list_id,
                            subject="user:u1",
                            experiment=experiment,
                            variant=variant,
                            document_ids=[1, 2],
                            params={},
                        )
                    ],
                )
        events = [
            # a1: two clicks of two kinds, an impression and a view (neither is a click).
            ev("1", JAN, type="click", list_id=lists["a1"]),
            ev("2", JAN, type="like", list_id=lists["a1"]),
            ev("3", JAN, type="impression", list_id=lists["a1"]),
            ev("4", JAN, type="view", list_id=lists["a1"]),
            # a2: a dislike is no click; a3: nothing at all.
            ev("5", FEB, type="dislike", list_id=lists["a2"]),
            ev("6", FEB, type="impression", list_id=lists["a2"]),
            # b1: a share and two impressions; b2: a click in another month.
            ev("7", JAN, type="share", list_id=lists["b1"]),
            ev("8", JAN, type="impression", list_id=lists["b1"]),
            ev("9", JAN, type="impression", list_id=lists["b1"]),
            ev("10", FEB, type="click", list_id=lists["b2"]),
            # Another experiment's list, and events answering no list, count for nothing here.
            ev("11", JAN, type="click", list_id=lists["other"]),
            ev("12", JAN, type="impression", list_id=lists["other"]),
            ev("13", JAN, type="click"),
            ev("14", JAN, type="impression", list_id=uuid.uuid4()),
        ]
        async with sessions() as session, session.begin():
            await store_events(session, events)
        async with sessions() as session:
            return await experiment_counts(session, "exp"), await experiment_counts(session, "missing")

    counts, missing = run(rec_db, body)
    assert counts == [
        VariantCounts("a", lists=3, clicked_lists=1, clicks=2, impressions=2),
        VariantCounts("b", lists=2, clicked_lists=2, clicks=2, impressions=2),
        VariantCounts("c", lists=0, clicked_lists=0, clicks=0, impressions=0),
    ]
    assert missing == []


def test_existing_documents(engine: Engine, clean_db: str, rec_db: str) -> None:
    with Session(engine) as session, session.begin():
        DocumentRepository(session).upsert_documents(
            documents=[
                DocumentRecord(
                    canonical_url=f"https://example.com/{i}", title=f"T{i}", text="x", language="en"
                )
                for i in range(2)
            ],
            source_id=None,
        )
    with engine.connect() as conn:
        ids = list(conn.execute(text("SELECT id FROM documents ORDER BY id")).scalars())

    async def body(sessions: async_sessionmaker[AsyncSession]) -> tuple[set[int], set[int]]:
        async with sessions() as session:
            return await existing_documents(
                session, [*ids, ids[-1] + 1000, ids[0]]
            ), await existing_documents(session, [])

    assert run(rec_db, body) == (set(ids), set())


def test_cursors(engine: Engine, rec_db: str) -> None:
    with Session(engine) as session, session.begin():
        assert read_cursor(session, "trainer") == 0
        write_cursor(session, "trainer", 42)
        write_cursor(session, "other", 7)
    with Session(engine) as session, session.begin():
        assert read_cursor(session, "trainer") == 42
        write_cursor(session, "trainer", 40)
    with Session(engine) as session:
        assert (read_cursor(session, "trainer"), read_cursor(session, "other")) == (40, 7)
