"""The trends store (storage/trends.py) on real PostgreSQL: idempotent deltas, reassignment, hour/day
buckets in UTC, deleted documents, the watermark, reads and derived-field writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from cluster.ground.constants import TREND_ID_BLOCK
from storage.documents import DocumentRecord, DocumentRepository
from storage.models import EmbeddingModel
from storage.trend_derived import (
    MemberText,
    StoryAnalytics,
    StoryText,
    TopicText,
    assignments_of,
    member_texts,
    stories_active_since,
    story_series,
    topic_member_texts,
    update_analytics,
    update_story_text,
    update_topic_text,
)
from storage.trends import (
    Assignment,
    DocumentTopicUpsert,
    LineageEvent,
    StoryUpsert,
    TopicUpsert,
    TrendDelta,
    apply_delta,
    ensure_partition,
    load_partition,
)

T0 = datetime(2024, 3, 1, 22, 0, tzinfo=UTC)
TREND_TABLES = (
    "trend_partitions",
    "topics",
    "stories",
    "story_documents",
    "document_topics",
    "story_lineage",
    "story_buckets",
)


def make_partition(session: Session, key: str = "en") -> int:
    model = EmbeddingModel(name="all-MiniLM-L6-v2", revision="r1", dimension=384)
    session.add(model)
    session.flush()
    return ensure_partition(session, model_id=model.id, key=key, language="en", source_group="default").id


def make_documents(session: Session, n: int, *, body: str = "body") -> list[int]:
    repo = DocumentRepository(session)
    docs = [
        DocumentRecord(
            canonical_url=f"https://example.com/{i}", title=f"Title {i}", text=f"{body} {i}", language="en"
        )
        for i in range(n)
    ]
    repo.upsert_documents(documents=docs, source_id=None)
    return list(session.execute(text("SELECT id FROM documents ORDER BY id")).scalars())


def ids(partition: int, n: int) -> int:
    return partition * TREND_ID_BLOCK + n


def story(sid: int, topic: int | None = None, status: str = "active", merged_into: int | None = None):
    return StoryUpsert(id=sid, topic_id=topic, language="en", status=status, merged_into=merged_into)


def assign(doc: int, sid: int, at: datetime, method: str = "assign") -> Assignment:
    return Assignment(document_id=doc, story_id=sid, document_time=at, similarity=0.8, method=method)


def snapshot(session: Session) -> dict[str, list[tuple]]:
    """Every trend row with its physical position: an UPDATE that rewrote a row moves its ctid."""
    return {
        table: [
            tuple(r) for r in session.execute(text(f"SELECT ctid::text, t.* FROM {table} t ORDER BY ctid"))
        ]
        for table in TREND_TABLES
    }


def buckets(session: Session, sid: int, granularity: str) -> dict[datetime, int]:
    return dict(story_series(session, story_ids=[sid], granularity=granularity)[sid])


def story_row(session: Session, sid: int):
    return session.execute(
        text("SELECT size, first_seen, last_seen, topic_id, status, merged_into FROM stories WHERE id = :id"),
        {"id": sid},
    ).one()


def test_partition_get_or_create(session: Session) -> None:
    pid = make_partition(session)
    model_id = session.execute(text("SELECT model_id FROM trend_partitions")).scalar_one()
    again = ensure_partition(session, model_id=model_id, key="en", language="en", source_group="default")
    assert again.id == pid
    assert again == load_partition(session, partition_id=pid)
    assert (again.key, again.language, again.source_group, again.watermark, again.clock) == (
        "en",
        "en",
        "default",
        0,
        None,
    )
    other = ensure_partition(session, model_id=model_id, key="ar/wires", language="ar", source_group="wires")
    assert other.id != pid
    with pytest.raises(LookupError, match="no trend partition"):
        load_partition(session, partition_id=other.id + 100)


def test_replaying_a_delta_writes_nothing_new(session: Session) -> None:
    pid = make_partition(session)
    docs = make_documents(session, 4)
    topic, s1, s2 = ids(pid, 1), ids(pid, 2), ids(pid, 3)
    delta = TrendDelta(
        stories=(story(s1, topic), story(s2, topic)),
        topics=(TopicUpsert(id=topic, status="active", story_count=2),),
        assignments=tuple(
            assign(d, s1 if i < 3 else s2, T0 + timedelta(minutes=i)) for i, d in enumerate(docs)
        ),
        document_topics=tuple(
            DocumentTopicUpsert(d, topic, T0 + timedelta(minutes=i)) for i, d in enumerate(docs)
        ),
        lineage=(
            LineageEvent("story", "birth", s1, (), 3, T0, f"birth:{s1}"),
            LineageEvent("topic", "birth", topic, (s1, s2), 4, T0, f"birth:t{topic}"),
        ),
        watermark=7,
        clock=T0 + timedelta(minutes=3),
    )
    assert apply_delta(session, partition_id=pid, delta=delta) == {s1, s2}
    first = snapshot(session)
    assert apply_delta(session, partition_id=pid, delta=delta) == {s1, s2}
    assert snapshot(session) == first
    assert len(first["story_lineage"]) == 2
    assert story_row(session, s1)[:3] == (3, T0, T0 + timedelta(minutes=2))
    size, first_seen, last_seen = session.execute(
        text("SELECT size, first_seen, last_seen FROM topics WHERE id = :id"), {"id": topic}
    ).one()
    assert (size, first_seen, last_seen) == (4, T0, T0 + timedelta(minutes=3))
    related = session.execute(
        text("SELECT related_ids FROM story_lineage WHERE level = 'topic'")
    ).scalar_one()
    assert related == [s1, s2]


def test_reassignment_keeps_the_first_story_and_moves_counts(session: Session) -> None:
    pid = make_partition(session)
    docs = make_documents(session, 3)
    s1, s2 = ids(pid, 1), ids(pid, 2)
    apply_delta(
        session,
        partition_id=pid,
        delta=TrendDelta(stories=(story(s1), story(s2)), assignments=tuple(assign(d, s1, T0) for d in docs)),
    )
    assert buckets(session, s1, "hour") == {T0: 3}
    touched = apply_delta(
        session,
        partition_id=pid,
        delta=TrendDelta(assignments=(assign(docs[0], s2, T0, "recluster"),)),
    )
    assert touched == {s1, s2}  # s1 is touched because its document left it
    row = session.execute(
        text("SELECT story_id, first_story_id, method FROM story_documents WHERE document_id = :d"),
        {"d": docs[0]},
    ).one()
    assert tuple(row) == (s2, s1, "recluster")
    assert buckets(session, s1, "hour") == {T0: 2}
    assert buckets(session, s2, "hour") == {T0: 1}
    assert (story_row(session, s1).size, story_row(session, s2).size) == (2, 1)
    # Back again: the first story stays the first.
    apply_delta(session, partition_id=pid, delta=TrendDelta(assignments=(assign(docs[0], s1, T0),)))
    assert session.execute(
        text("SELECT story_id, first_story_id FROM story_documents WHERE document_id = :d"), {"d": docs[0]}
    ).one() == (s1, s1)
    assert buckets(session, s2, "day") == {}
    assert assignments_of(session, partition_id=pid) == dict.fromkeys(docs, s1)


def test_unassigned_documents_leave_their_story(session: Session) -> None:
    pid = make_partition(session)
    docs = make_documents(session, 3)
    s1, topic = ids(pid, 1), ids(pid, 2)
    times = [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
    apply_delta(
        session,
        partition_id=pid,
        delta=TrendDelta(
            stories=(story(s1, topic),),
            topics=(TopicUpsert(topic, "active", 1),),
            assignments=tuple(assign(d, s1, t) for d, t in zip(docs, times, strict=True)),
            document_topics=tuple(DocumentTopicUpsert(d, topic, t) for d, t in zip(docs, times, strict=True)),
        ),
    )
    left = TrendDelta(
        unassigned=(docs[2], docs[1]),
        document_topics=(
            DocumentTopicUpsert(docs[2], None, times[2]),
            DocumentTopicUpsert(docs[1], None, times[1]),
        ),
    )
    touched = apply_delta(session, partition_id=pid, delta=left)
    assert touched == {s1}
    assert buckets(session, s1, "hour") == {T0: 1}
    assert story_row(session, s1)[:3] == (1, T0, T0)
    assert session.execute(text("SELECT size, last_seen FROM topics")).one() == (1, T0)
    apply_delta(session, partition_id=pid, delta=TrendDelta(unassigned=(docs[0],)))
    assert story_row(session, s1)[:3] == (0, None, None)
    assert buckets(session, s1, "day") == {}
    assert assignments_of(session, partition_id=pid) == {}


def test_deleted_documents_are_skipped(session: Session) -> None:
    pid = make_partition(session)
    docs = make_documents(session, 3)
    DocumentRepository(session).delete([docs[1]])
    s1 = ids(pid, 1)
    never = max(docs) + 1_000
    delta = TrendDelta(stories=(story(s1),), assignments=tuple(assign(d, s1, T0) for d in (*docs, never)))
    assert apply_delta(session, partition_id=pid, delta=delta) == {s1}
    assert assignments_of(session, partition_id=pid) == {docs[0]: s1, docs[2]: s1}
    assert story_row(session, s1).size == 2


def test_watermark_and_clock_only_move_forward(session: Session) -> None:
    pid = make_partition(session)

    def state() -> tuple[int, datetime | None]:
        row = load_partition(session, partition_id=pid)
        return row.watermark, row.clock

    apply_delta(session, partition_id=pid, delta=TrendDelta(watermark=5))
    assert state() == (5, None)
    apply_delta(session, partition_id=pid, delta=TrendDelta(watermark=9, clock=T0))
    assert state() == (9, T0)
    apply_delta(session, partition_id=pid, delta=TrendDelta(watermark=3, clock=T0 - timedelta(days=1)))
    assert state() == (9, T0)
    apply_delta(session, partition_id=pid, delta=TrendDelta(watermark=9, clock=None))
    assert state() == (9, T0)
    apply_delta(session, partition_id=pid, delta=TrendDelta(watermark=10, clock=T0 + timedelta(seconds=1)))
    assert state() == (10, T0 + timedelta(seconds=1))


def test_buckets_are_hours_and_days_in_utc(session: Session) -> None:
    # The session's zone must not matter: days and hours are cut in UTC.
    session.execute(text("SET LOCAL TIME ZONE 'Asia/Kolkata'"))
    pid = make_partition(session)
    docs = make_documents(session, 4)
    kolkata = timezone(timedelta(hours=5, minutes=30))
    times = [
        datetime(2024, 3, 2, 5, 0, tzinfo=kolkata),  # 2024-03-01 23:30 UTC
        datetime(2024, 3, 1, 23, 10, tzinfo=UTC),
        datetime(2024, 3, 2, 0, 5, tzinfo=UTC),
        datetime(2024, 3, 2, 0, 59, 59, tzinfo=UTC),
    ]
    s1 = ids(pid, 1)
    delta = TrendDelta(
        stories=(story(s1),), assignments=tuple(assign(d, s1, t) for d, t in zip(docs, times, strict=True))
    )
    apply_delta(session, partition_id=pid, delta=delta)
    assert buckets(session, s1, "hour") == {
        datetime(2024, 3, 1, 23, tzinfo=UTC): 2,
        datetime(2024, 3, 2, 0, tzinfo=UTC): 2,
    }
    assert buckets(session, s1, "day") == {
        datetime(2024, 3, 1, tzinfo=UTC): 2,
        datetime(2024, 3, 2, tzinfo=UTC): 2,
    }
    series = story_series(session, story_ids=[s1, ids(pid, 99)], granularity="hour")
    assert [b for b, _ in series[s1]] == sorted(b for b, _ in series[s1])
    assert series[ids(pid, 99)] == []
    assert story_row(session, s1)[1:3] == (datetime(2024, 3, 1, 23, 10, tzinfo=UTC), times[3])
    with pytest.raises(ValueError, match="granularity"):
        story_series(session, story_ids=[s1], granularity="week")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="time zone"):
        apply_delta(
            session,
            partition_id=pid,
            delta=TrendDelta(assignments=(assign(docs[0], s1, datetime(2024, 3, 1)),)),
        )


def test_member_texts_are_the_newest_documents(session: Session) -> None:
    pid = make_partition(session)
    docs = make_documents(session, 5, body="x" * 1_500)
    s1, s2 = ids(pid, 1), ids(pid, 2)
    times = {d: T0 + timedelta(hours=i) for i, d in enumerate(docs)}
    apply_delta(
        session,
        partition_id=pid,
        delta=TrendDelta(
            stories=(story(s1), story(s2)),
            assignments=tuple(assign(d, s1 if i < 4 else s2, times[d]) for i, d in enumerate(docs)),
        ),
    )
    members = member_texts(session, story_ids=[s1, s2, ids(pid, 3)], per_story=2)
    assert [m.document_id for m in members[s1]] == [docs[3], docs[2]]
    assert [m.document_id for m in members[s2]] == [docs[4]]
    assert members[ids(pid, 3)] == []
    newest = members[s1][0]
    assert newest == MemberText(docs[3], "Title 3", ("x" * 1_500 + " 3")[:1_000], "en", times[docs[3]])


def test_topics_stories_and_active_reads(session: Session) -> None:
    pid = make_partition(session)
    docs = make_documents(session, 4)
    t1, t2, s1, s2, s3 = (ids(pid, n) for n in range(1, 6))
    apply_delta(
        session,
        partition_id=pid,
        delta=TrendDelta(
            topics=(TopicUpsert(t1, "active", 2), TopicUpsert(t2, "active", 1)),
            stories=(story(s1, t1), story(s2, t1), story(s3, t2)),
            assignments=(
                assign(docs[0], s1, T0),
                assign(docs[1], s2, T0 + timedelta(days=2)),
                assign(docs[2], s3, T0 + timedelta(days=3)),
            ),
            document_topics=(
                DocumentTopicUpsert(docs[0], t1, T0),
                DocumentTopicUpsert(docs[1], t1, T0 + timedelta(days=2)),
                DocumentTopicUpsert(docs[2], t2, T0 + timedelta(days=3)),
                DocumentTopicUpsert(docs[3], t2, T0 + timedelta(days=4)),  # in no story
            ),
        ),
    )
    newest = topic_member_texts(session, topic_ids=[t1, t2], per_topic=10)
    assert {t: [m.document_id for m in ms] for t, ms in newest.items()} == {
        t1: [docs[1], docs[0]],
        t2: [docs[3], docs[2]],
    }
    topics = session.execute(text("SELECT id, size, first_seen, last_seen FROM topics ORDER BY id")).all()
    assert [tuple(t) for t in topics] == [
        (t1, 2, T0, T0 + timedelta(days=2)),
        (t2, 2, T0 + timedelta(days=3), T0 + timedelta(days=4)),
    ]
    assert stories_active_since(session, partition_id=pid, since=T0 + timedelta(days=1)) == [s2, s3]
    # s2 moves to t2 with its documents and s1 merges into s2; the one of a kind leaves its topic:
    # t1 is recounted although the delta does not name it.
    apply_delta(
        session,
        partition_id=pid,
        delta=TrendDelta(
            stories=(story(s2, t2), story(s1, t1, "merged", s2)),
            assignments=(assign(docs[0], s2, T0),),
            document_topics=(
                DocumentTopicUpsert(docs[0], t2, T0),
                DocumentTopicUpsert(docs[1], t2, T0 + timedelta(days=2)),
                DocumentTopicUpsert(docs[3], None, T0 + timedelta(days=4)),
            ),
        ),
    )
    sizes = dict(session.execute(text("SELECT id, size FROM topics")).all())
    assert sizes == {t1: 0, t2: 3}
    assert tuple(story_row(session, s1))[3:] == (t1, "merged", s2)
    assert stories_active_since(session, partition_id=pid, since=T0 - timedelta(days=1)) == [s2, s3]


def test_derived_fields(session: Session) -> None:
    pid = make_partition(session)
    t1, s1, s2 = ids(pid, 1), ids(pid, 2), ids(pid, 3)
    apply_delta(
        session,
        partition_id=pid,
        delta=TrendDelta(topics=(TopicUpsert(t1, "active", 2),), stories=(story(s1, t1), story(s2, t1))),
    )
    update_analytics(
        session,
        [
            StoryAnalytics(s1, "growing", 12, 1.5, 0.25, 3.0, True, T0, T0 - timedelta(hours=2), None),
            StoryAnalytics(s2, "dormant", 0, 0.0, 0.0, 0.0, False, None, None, T0),
            StoryAnalytics(
                ids(pid, 99), "fading", 1, 0.0, 0.0, 0.0, False, None, None, None
            ),  # no such story
        ],
    )
    update_story_text(session, [StoryText(s1, "Budget vote", [("budget", 0.9), ("vote", 0.5)], [11, 12])])
    update_topic_text(session, [TopicText(t1, "Politics", [("parliament", 0.7)])])
    rows = session.execute(
        text(
            "SELECT id, state, volume, velocity, acceleration, score, burst, burst_at, emerging_at, peak_at, "
            "label, keywords, representative_ids FROM stories ORDER BY id"
        )
    ).all()
    assert tuple(rows[0]) == (
        s1,
        "growing",
        12,
        1.5,
        0.25,
        3.0,
        True,
        T0,
        T0 - timedelta(hours=2),
        None,
        "Budget vote",
        [{"term": "budget", "weight": 0.9}, {"term": "vote", "weight": 0.5}],
        [11, 12],
    )
    assert tuple(rows[1])[1:] == ("dormant", 0, 0.0, 0.0, 0.0, False, None, None, T0, "", [], [])
    topic = session.execute(text("SELECT label, keywords FROM topics")).one()
    assert tuple(topic) == ("Politics", [{"term": "parliament", "weight": 0.7}])


def test_fifty_thousand_assignments_in_one_delta(session: Session) -> None:
    n = 50_000
    pid = make_partition(session)
    session.execute(
        text(
            "INSERT INTO documents (canonical_url, title, text, content_hash, language) "
            "SELECT 'https://example.com/bulk/' || i, 'Title ' || i, 'text ' || i, md5(i::text), 'en' "
            "FROM generate_series(1, :n) AS i"
        ),
        {"n": n},
    )
    docs = list(session.execute(text("SELECT id FROM documents ORDER BY id")).scalars())
    topics = [ids(pid, t) for t in range(1, 11)]
    stories = [ids(pid, 100 + s) for s in range(500)]
    delta = TrendDelta(
        topics=tuple(TopicUpsert(t, "active", 50) for t in topics),
        stories=tuple(story(s, topics[i % 10]) for i, s in enumerate(stories)),
        assignments=tuple(
            assign(d, stories[i % 500], T0 + timedelta(minutes=i % (14 * 24 * 60)))
            for i, d in enumerate(docs)
        ),
        document_topics=tuple(
            DocumentTopicUpsert(d, topics[(i % 500) % 10], T0 + timedelta(minutes=i % (14 * 24 * 60)))
            for i, d in enumerate(docs)
        ),
        watermark=1,
    )
    assert apply_delta(session, partition_id=pid, delta=delta) == set(stories)
    totals = session.execute(
        text(
            "SELECT (SELECT sum(size) FROM stories), (SELECT sum(size) FROM topics), "
            "(SELECT sum(count) FROM story_buckets WHERE granularity = 'hour'), "
            "(SELECT sum(count) FROM story_buckets WHERE granularity = 'day'), "
            "(SELECT count(*) FROM story_documents)"
        )
    ).one()
    assert tuple(totals) == (n, n, n, n, n)


def test_a_topic_merge_moves_all_its_documents(session: Session) -> None:
    pid = make_partition(session)
    docs = make_documents(session, 3)
    t1, t2 = ids(pid, 1), ids(pid, 2)
    apply_delta(
        session,
        partition_id=pid,
        delta=TrendDelta(
            topics=(TopicUpsert(t1, "active", 0), TopicUpsert(t2, "active", 0)),
            document_topics=(
                DocumentTopicUpsert(docs[0], t1, T0),
                DocumentTopicUpsert(docs[1], t2, T0),
                DocumentTopicUpsert(docs[2], t2, T0 + timedelta(days=40)),
            ),
        ),
    )
    # t2 merges into t1; docs[1] has left the clusterer's window, so no document topic names it.
    merge = LineageEvent("topic", "merge", t1, (t2,), 0, T0 + timedelta(days=40), f"topic:merge:{t1}:{t2}")
    delta = TrendDelta(
        topics=(TopicUpsert(t2, "merged", 0),),
        document_topics=(DocumentTopicUpsert(docs[2], t1, T0 + timedelta(days=40)),),
        lineage=(merge,),
    )
    for _ in range(2):  # a replay changes nothing
        apply_delta(session, partition_id=pid, delta=delta)
        rows = dict(session.execute(text("SELECT document_id, topic_id FROM document_topics")).all())
        assert rows == dict.fromkeys(docs, t1)
        sizes = dict(session.execute(text("SELECT id, size FROM topics")).all())
        assert sizes == {t1: 3, t2: 0}
