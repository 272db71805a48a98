"""The trends store: clusterer partitions, stories and topics, document -> story and document -> topic
assignments, lineage,
per-story counts per hour and day, and the fields the clusterer derives (analytics, labels, keywords).

One trend clusterer per partition (a language, optionally a source group, of one embedding model entry)
chooses story and topic ids (``partition id * TREND_ID_BLOCK + n``) and sends what changed as a
``TrendDelta``. ``apply_delta`` writes it in the caller's transaction as idempotent upserts: a replay
after a restart writes the same rows again, and rewrites nothing where nothing differs. It then recomputes
what membership determines: from ``story_documents`` each touched story's size, first and last document
time and hour/day buckets (UTC); from ``document_topics`` its topics' sizes and first/last times. The
partition's watermark (last manifest file applied) and clock (latest document time seen) only move forward.

``stories.updated_at`` and ``topics.updated_at`` move when identity (topic, status, merge) or membership
changes, not when analytics or labels are rewritten.

A story's identity status: ``active``; ``merged`` (into ``merged_into``); ``dead`` (no documents left
in the window). Its lifecycle state, from its series of counts (decided by the clusterer's lifecycle
rules, ``actors/trend_lifecycle.py``; stored here):

- ``emerging``: it is new (its first document, or most of its documents, recent) and its rate is rising;
- ``growing``: its rate is rising and above its baseline;
- ``peaking``: its rate is at or near its highest;
- ``fading``: its rate is falling, below its peak;
- ``dormant``: no document in the last few buckets.

Bulk writes pass whole columns as PostgreSQL arrays (``unnest``): one statement per table whatever the
size of the delta, and no limit on the number of bind parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal, TypeVar

from sqlalchemy import BigInteger, any_, bindparam, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

from storage.models import Story, StoryLineage, TrendPartition
from storage.rows import row_to

logger = logging.getLogger(__name__)

StoryStatus = Literal["active", "merged", "dead"]
AssignMethod = Literal["assign", "recluster", "job"]
LineageLevel = Literal["story", "topic"]
LineageKind = Literal["birth", "merge", "split", "death"]
StoryState = Literal["emerging", "growing", "peaking", "fading", "dormant"]
Granularity = Literal["hour", "day"]

#: Bucket granularities of ``story_buckets`` (``date_trunc`` units, in UTC).
GRANULARITIES: tuple[Granularity, ...] = ("hour", "day")
#: Source group of a partition that covers every source.
DEFAULT_SOURCE_GROUP = "default"


# ------------------------------------------------------------------------------------------- partitions
@dataclass(frozen=True)
class PartitionRow:
    """A clusterer partition with its watermark (last manifest file applied) and stream clock."""

    id: int
    key: str
    model_id: int | None
    language: str | None
    source_group: str
    watermark: int
    clock: datetime | None


_PARTITION_COLUMNS = [getattr(TrendPartition, f.name) for f in fields(PartitionRow)]


def ensure_partition(
    session: Session,
    *,
    model_id: int,
    key: str,
    language: str | None,
    source_group: str = DEFAULT_SOURCE_GROUP,
) -> PartitionRow:
    """The partition ``key`` of ``model_id``, created if new. Safe when two callers race: the insert
    does nothing on conflict (waiting for the other's commit), then the row is read."""
    session.execute(
        insert(TrendPartition)
        .values(model_id=model_id, key=key, language=language, source_group=source_group)
        .on_conflict_do_nothing(constraint="uq_trend_partitions_model_key")
    )
    row = session.execute(
        select(*_PARTITION_COLUMNS).where(TrendPartition.model_id == model_id, TrendPartition.key == key)
    ).one()
    if (row.language, row.source_group) != (language, source_group):
        logger.warning(
            "trend partition %s of model %s exists as %s", key, model_id, row_to(PartitionRow, row)
        )
    return row_to(PartitionRow, row)


def load_partition(session: Session, *, partition_id: int) -> PartitionRow:
    """The partition ``partition_id``; ``LookupError`` when there is none."""
    row = session.execute(select(*_PARTITION_COLUMNS).where(TrendPartition.id == partition_id)).one_or_none()
    if row is None:
        raise LookupError(f"no trend partition {partition_id}; ensure_partition creates it")
    return row_to(PartitionRow, row)


# ---------------------------------------------------------------------------------------------- deltas
@dataclass(frozen=True)
class StoryUpsert:
    """A story's identity as the clusterer sees it now."""

    id: int
    topic_id: int | None
    language: str | None
    status: StoryStatus
    merged_into: int | None


@dataclass(frozen=True)
class TopicUpsert:
    id: int
    status: StoryStatus
    story_count: int


@dataclass(frozen=True)
class Assignment:
    """Document ``document_id`` belongs to ``story_id`` (``document_time`` must carry a time zone)."""

    document_id: int
    story_id: int
    document_time: datetime
    similarity: float | None
    method: AssignMethod


@dataclass(frozen=True)
class DocumentTopicUpsert:
    """Document ``document_id`` belongs to topic ``topic_id`` (``None``: to none any more)."""

    document_id: int
    topic_id: int | None
    document_time: datetime


@dataclass(frozen=True)
class LineageEvent:
    """A birth, merge, split or death; ``event_key`` (unique in the partition) makes a replay a no-op."""

    level: LineageLevel
    kind: LineageKind
    subject_id: int
    related_ids: tuple[int, ...]
    documents: int
    at: datetime
    event_key: str


@dataclass(frozen=True)
class TrendDelta:
    """What changed in a partition since the last delta. ``unassigned``: documents that lost their story
    (noise now); ``watermark`` and ``clock`` only move the partition's forward."""

    stories: tuple[StoryUpsert, ...] = ()
    topics: tuple[TopicUpsert, ...] = ()
    assignments: tuple[Assignment, ...] = ()
    unassigned: tuple[int, ...] = ()
    lineage: tuple[LineageEvent, ...] = ()
    document_topics: tuple[DocumentTopicUpsert, ...] = ()
    watermark: int = 0
    clock: datetime | None = None


_Keyed = TypeVar("_Keyed", StoryUpsert, TopicUpsert)


def _last_by_id(items: Iterable[_Keyed]) -> list[_Keyed]:
    """One entry per id, the last one given (an upsert may not touch a row twice in one statement)."""
    return list({item.id: item for item in items}.values())


def _require_zone(value: datetime | None, what: str) -> None:
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{what} {value.isoformat()} has no time zone; pass an aware datetime (UTC)")


def apply_delta(session: Session, *, partition_id: int, delta: TrendDelta) -> frozenset[int]:
    """Write ``delta`` for partition ``partition_id`` in the caller's transaction; returns the stories it
    touched (upserted, assigned to, or left by a reassigned or unassigned document).

    Assignments of documents that no longer exist are skipped. A document given twice keeps its last
    assignment; a document both assigned and unassigned ends unassigned. ``first_story_id`` is the
    story a document was first assigned to, kept through reassignments.
    """
    assignments = list({a.document_id: a for a in delta.assignments}.values())
    for a in assignments:
        _require_zone(a.document_time, f"document {a.document_id} time")
    for event in delta.lineage:
        _require_zone(event.at, f"lineage event {event.event_key} time")
    _require_zone(delta.clock, "clock")
    stories = _last_by_id(delta.stories)
    story_ids = [s.id for s in stories]
    # Stories that move to another topic leave their former topic to recount.
    former = select(Story.topic_id).where(Story.id == any_(bigints(story_ids)), Story.topic_id.is_not(None))
    former_topics = {t for t in session.scalars(former) if t is not None} if story_ids else set()
    _upsert_topics(session, partition_id, _last_by_id(delta.topics))
    _upsert_stories(session, partition_id, stories)
    left = _upsert_assignments(session, partition_id, assignments)
    left |= _unassign(session, partition_id, delta.unassigned)
    topic_documents = _upsert_document_topics(session, partition_id, delta.document_topics)
    topic_documents |= _follow_topic_merges(session, delta.lineage)
    _insert_lineage(session, partition_id, delta.lineage)
    _advance(session, partition_id, delta.watermark, delta.clock)
    touched = frozenset({*story_ids, *(a.story_id for a in assignments), *left})
    _recount_stories(session, touched)
    _recount_buckets(session, touched)
    _recount_topics(session, {*(t.id for t in delta.topics), *former_topics, *topic_documents}, touched)
    return touched


def bigints(values: Iterable[int]) -> BindParameter[Sequence[int]]:
    """An anonymous ``bigint[]`` parameter (for ``= ANY(...)``: one parameter however many ids)."""
    ids: Sequence[int] = list(values)
    return bindparam(None, ids, type_=ARRAY(BigInteger))


def _arrays(items: Sequence[object]) -> dict[str, list[Any]]:
    """The items' (dataclasses of one type) fields as columns, one list per field name: the arrays that
    ``unnest`` turns back into rows."""
    if not items:
        return {}
    return {f.name: [getattr(item, f.name) for item in items] for f in fields(items[0])}  # type: ignore[arg-type]


def _upsert_topics(session: Session, partition_id: int, topics: Sequence[TopicUpsert]) -> None:
    if not topics:
        return
    session.execute(
        text(
            "INSERT INTO topics (id, partition_id, status, story_count) "
            "SELECT t.id, :partition, t.status, t.story_count FROM unnest("
            "CAST(:id AS bigint[]), CAST(:status AS text[]), CAST(:story_count AS integer[])"
            ") AS t(id, status, story_count) "
            "ON CONFLICT (id) DO UPDATE SET status = excluded.status, story_count = excluded.story_count, "
            "updated_at = now() WHERE (topics.status, topics.story_count) "
            "IS DISTINCT FROM (excluded.status, excluded.story_count)"
        ),
        {"partition": partition_id, **_arrays(topics)},
    )


def _upsert_stories(session: Session, partition_id: int, stories: Sequence[StoryUpsert]) -> None:
    if not stories:
        return
    session.execute(
        text(
            "INSERT INTO stories (id, partition_id, topic_id, language, status, merged_into) "
            "SELECT s.id, :partition, s.topic_id, s.language, s.status, s.merged_into FROM unnest("
            "CAST(:id AS bigint[]), CAST(:topic_id AS bigint[]), CAST(:language AS text[]), "
            "CAST(:status AS text[]), CAST(:merged_into AS bigint[])"
            ") AS s(id, topic_id, language, status, merged_into) "
            "ON CONFLICT (id) DO UPDATE SET topic_id = excluded.topic_id, language = excluded.language, "
            "status = excluded.status, merged_into = excluded.merged_into, updated_at = now() "
            "WHERE (stories.topic_id, stories.language, stories.status, stories.merged_into) "
            "IS DISTINCT FROM (excluded.topic_id, excluded.language, excluded.status, excluded.merged_into)"
        ),
        {"partition": partition_id, **_arrays(stories)},
    )


def _upsert_assignments(session: Session, partition_id: int, assignments: Sequence[Assignment]) -> set[int]:
    """Upsert the assignments of documents that exist; returns the stories reassigned documents left."""
    if not assignments:
        return set()
    columns = {"partition": partition_id, **_arrays(assignments)}
    left = session.execute(
        text(
            "SELECT DISTINCT sd.story_id FROM story_documents sd "
            "JOIN unnest(CAST(:document_id AS bigint[]), CAST(:story_id AS bigint[])) "
            "AS a(document_id, story_id) ON sd.document_id = a.document_id WHERE sd.story_id <> a.story_id"
        ),
        columns,
    ).scalars()
    former = {int(story_id) for story_id in left}
    # A document deleted after it was embedded is skipped (EXISTS), not an FK error. Unchanged
    # assignments are left out before the insert: a conflict, even one that updates nothing, locks and
    # so rewrites its row.
    session.execute(
        text(
            "INSERT INTO story_documents "
            "(document_id, story_id, first_story_id, partition_id, document_time, similarity, method) "
            "SELECT a.document_id, a.story_id, a.story_id, :partition, a.document_time, a.similarity, "
            "a.method FROM unnest(CAST(:document_id AS bigint[]), CAST(:story_id AS bigint[]), "
            "CAST(:document_time AS timestamptz[]), CAST(:similarity AS float8[]), CAST(:method AS text[])"
            ") AS a(document_id, story_id, document_time, similarity, method) "
            "WHERE EXISTS (SELECT 1 FROM documents d WHERE d.id = a.document_id) "
            "AND NOT EXISTS (SELECT 1 FROM story_documents sd "
            "WHERE sd.document_id = a.document_id AND sd.story_id = a.story_id) "
            "ON CONFLICT (document_id) DO UPDATE SET story_id = excluded.story_id, "
            "partition_id = excluded.partition_id, "
            "similarity = excluded.similarity, method = excluded.method, assigned_at = now() "
            "WHERE story_documents.story_id <> excluded.story_id"
        ),
        columns,
    )
    return former


def _unassign(session: Session, partition_id: int, document_ids: Sequence[int]) -> set[int]:
    """Remove the documents' assignments; returns the stories they left."""
    if not document_ids:
        return set()
    left = session.execute(
        text(
            "DELETE FROM story_documents WHERE partition_id = :partition "
            "AND document_id = ANY(CAST(:documents AS bigint[])) RETURNING story_id"
        ),
        {"partition": partition_id, "documents": list(document_ids)},
    ).scalars()
    return {int(story_id) for story_id in left}


def _upsert_document_topics(
    session: Session, partition_id: int, rows: Sequence[DocumentTopicUpsert]
) -> set[int]:
    """Set (or, with no topic, remove) the documents' topics; returns the topics they joined or left.

    Documents deleted since, or topics not written (yet), are skipped, not an FK error."""
    rows = list({r.document_id: r for r in rows}.values())
    if not rows:
        return set()
    for r in rows:
        _require_zone(r.document_time, f"document {r.document_id} time")
    columns = {"partition": partition_id, **_arrays(rows)}
    left = session.execute(
        text(
            "SELECT DISTINCT dt.topic_id FROM document_topics dt "
            "JOIN unnest(CAST(:document_id AS bigint[]), CAST(:topic_id AS bigint[])) "
            "AS a(document_id, topic_id) "
            "ON dt.document_id = a.document_id WHERE dt.topic_id IS DISTINCT FROM a.topic_id"
        ),
        columns,
    ).scalars()
    touched = {int(t) for t in left} | {r.topic_id for r in rows if r.topic_id is not None}
    gone = [r.document_id for r in rows if r.topic_id is None]
    if gone:
        session.execute(
            text(
                "DELETE FROM document_topics WHERE partition_id = :partition "
                "AND document_id = ANY(CAST(:documents AS bigint[]))"
            ),
            {"partition": partition_id, "documents": gone},
        )
    session.execute(
        text(
            "INSERT INTO document_topics (document_id, topic_id, partition_id, document_time) "
            "SELECT a.document_id, a.topic_id, :partition, a.document_time FROM unnest("
            "CAST(:document_id AS bigint[]), CAST(:topic_id AS bigint[]), "
            "CAST(:document_time AS timestamptz[])) AS a(document_id, topic_id, document_time) "
            "WHERE a.topic_id IS NOT NULL "
            "AND EXISTS (SELECT 1 FROM documents d WHERE d.id = a.document_id) "
            "AND EXISTS (SELECT 1 FROM topics t WHERE t.id = a.topic_id) "
            "ON CONFLICT (document_id) DO UPDATE SET topic_id = excluded.topic_id, "
            "partition_id = excluded.partition_id, assigned_at = now() "
            "WHERE document_topics.topic_id <> excluded.topic_id"
        ),
        columns,
    )
    return touched


def _follow_topic_merges(session: Session, events: Sequence[LineageEvent]) -> set[int]:
    """Documents of merged topics, those that left the clusterer's window too, join the survivor."""
    touched: set[int] = set()
    for e in events:
        if e.level == "topic" and e.kind == "merge" and e.related_ids:
            session.execute(
                text(
                    "UPDATE document_topics SET topic_id = :survivor, assigned_at = now() "
                    "WHERE topic_id = ANY(CAST(:merged AS bigint[]))"
                ),
                {"survivor": e.subject_id, "merged": list(e.related_ids)},
            )
            touched |= {e.subject_id, *e.related_ids}
    return touched


def _insert_lineage(session: Session, partition_id: int, events: Sequence[LineageEvent]) -> None:
    if not events:
        return
    session.execute(
        insert(StoryLineage).on_conflict_do_nothing(constraint="uq_story_lineage_event"),
        [dict(vars(e), partition_id=partition_id, related_ids=list(e.related_ids)) for e in events],
    )


def _advance(session: Session, partition_id: int, watermark: int, clock: datetime | None) -> None:
    """Move the watermark and clock forward (never back; no clock leaves the partition's as it is)."""
    values: dict[str, Any] = {"watermark": func.greatest(TrendPartition.watermark, watermark)}
    moved = [TrendPartition.watermark < watermark]
    if clock is not None:
        # GREATEST ignores NULL: a partition without a clock takes this one.
        values["clock"] = func.greatest(TrendPartition.clock, clock)
        moved.append(TrendPartition.clock.is_(None) | (TrendPartition.clock < clock))
    session.execute(
        update(TrendPartition)
        .where(TrendPartition.id == partition_id, or_(*moved))
        .values(**values, updated_at=func.now())
    )


def _recount_stories(session: Session, story_ids: frozenset[int]) -> None:
    """Size and first/last document time of each story, from its documents (none: 0 and NULL)."""
    if not story_ids:
        return
    session.execute(
        text(
            "UPDATE stories s SET size = agg.size, first_seen = agg.first_seen, last_seen = agg.last_seen, "
            "updated_at = now() FROM ("
            "SELECT k.id, count(sd.document_id) AS size, min(sd.document_time) AS first_seen, "
            "max(sd.document_time) AS last_seen FROM unnest(CAST(:ids AS bigint[])) AS k(id) "
            "LEFT JOIN story_documents sd ON sd.story_id = k.id GROUP BY k.id"
            ") AS agg WHERE s.id = agg.id AND (s.size, s.first_seen, s.last_seen) "
            "IS DISTINCT FROM (agg.size, agg.first_seen, agg.last_seen)"
        ),
        {"ids": sorted(story_ids)},
    )


def _recount_buckets(session: Session, story_ids: frozenset[int]) -> None:
    """The stories' hour and day buckets (UTC) from their documents: changed counts are updated, new
    buckets inserted, emptied ones deleted; equal ones are left alone."""
    if not story_ids:
        return
    session.execute(
        text(
            "WITH fresh AS ("
            "SELECT sd.story_id, g.granularity, "
            "date_trunc(g.granularity, sd.document_time, 'UTC') AS bucket, count(*) AS count "
            "FROM story_documents sd "
            "CROSS JOIN unnest(CAST(:granularities AS text[])) AS g(granularity) "
            "WHERE sd.story_id = ANY(CAST(:ids AS bigint[])) GROUP BY 1, 2, 3"
            "), emptied AS ("
            "DELETE FROM story_buckets b WHERE b.story_id = ANY(CAST(:ids AS bigint[])) AND NOT EXISTS ("
            "SELECT 1 FROM fresh f WHERE f.story_id = b.story_id AND f.granularity = b.granularity "
            "AND f.bucket = b.bucket)"
            ") INSERT INTO story_buckets (story_id, granularity, bucket, count) "
            "SELECT story_id, granularity, bucket, count FROM fresh "
            "ON CONFLICT (story_id, granularity, bucket) DO UPDATE SET count = excluded.count "
            "WHERE story_buckets.count <> excluded.count"
        ),
        {"ids": sorted(story_ids), "granularities": list(GRANULARITIES)},
    )


def _recount_topics(session: Session, topic_ids: set[int], story_ids: frozenset[int]) -> None:
    """Size (its documents, ``document_topics``) and first/last document time of the given topics and
    of the touched stories' topics."""
    if not topic_ids and not story_ids:
        return
    session.execute(
        text(
            "UPDATE topics t SET size = agg.size, first_seen = agg.first_seen, last_seen = agg.last_seen, "
            "updated_at = now() FROM ("
            "SELECT k.id, count(dt.document_id) AS size, min(dt.document_time) AS first_seen, "
            "max(dt.document_time) AS last_seen FROM ("
            "SELECT unnest(CAST(:topics AS bigint[])) AS id UNION "
            "SELECT topic_id FROM stories WHERE id = ANY(CAST(:stories AS bigint[])) AND topic_id IS NOT NULL"
            ") AS k LEFT JOIN document_topics dt ON dt.topic_id = k.id GROUP BY k.id"
            ") AS agg WHERE t.id = agg.id AND (t.size, t.first_seen, t.last_seen) "
            "IS DISTINCT FROM (agg.size, agg.first_seen, agg.last_seen)"
        ),
        {"topics": sorted(topic_ids), "stories": sorted(story_ids)},
    )
