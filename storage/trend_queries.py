"""Trends, read side: pages of stories and topics, one story or topic whole, a story's documents, and the
story each search result belongs to. The clusterer writes these tables (``storage.trends``); nothing here
writes.

Listings are keyset-paged: a page is asked for ``after`` the position (sort value, id) of the last row of
the previous one, sorted descending with the id as tiebreak, and one row more than the page is read to
know whether a next page exists (``next_after``). How a position travels to a client is the HTTP edge's
business (``serve_apps.trends.params``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar, get_args

from sqlalchemy import ColumnElement, and_, any_, exists, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from storage.documents import DocumentSummary, fetch_summaries
from storage.index_feed import category_column
from storage.models import (
    Document,
    DocumentTopic,
    Source,
    Story,
    StoryBucket,
    StoryDocument,
    StoryLineage,
    StorySummary,
    Topic,
    TrendPartition,
)
from storage.rows import row_to

StoryState = Literal["emerging", "growing", "peaking", "fading", "dormant"]
Status = Literal["active", "merged", "dead"]
StorySort = Literal["score", "volume", "velocity", "recency"]
TopicSort = Literal["size", "recency"]
Granularity = Literal["day", "hour"]
#: A story's lifecycle states (``stories.state``).
STATES: tuple[str, ...] = get_args(StoryState)
#: Identity statuses of stories and topics (``status``).
STATUSES: tuple[str, ...] = get_args(Status)
T = TypeVar("T")
#: A keyset position: the last row's sort value and id.
After = tuple[Any, int]
#: What a story or topic without a date sorts as under ``recency`` (last).
NO_TIME = datetime(1970, 1, 1, tzinfo=UTC)
#: A column or expression a listing sorts by.
Key = ColumnElement[Any] | InstrumentedAttribute[Any]


@dataclass(frozen=True)
class StoryRef:
    """The story a document belongs to, as a search result names it."""

    id: int
    label: str


@dataclass(frozen=True)
class StoryFilter:
    """Which stories a listing shows; an empty field does not filter."""

    states: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ("active", "dead")
    topic_id: int | None = None
    language: str | None = None
    source: str | None = None  # stories having a document from the source of this name
    category: str | None = None  # stories having a document of this category
    since: datetime | None = None  # last seen at or after
    until: datetime | None = None  # first seen at or before


@dataclass(frozen=True)
class TopicFilter:
    """Which topics a listing shows; an empty field does not filter."""

    statuses: tuple[str, ...] = ("active",)
    language: str | None = None  # of the topic's partition
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class StoryRow:
    """A story as listings show it."""

    id: int
    topic_id: int | None
    language: str | None
    status: str
    merged_into: int | None
    state: str
    label: str
    keywords: list[str]  # strongest first
    size: int
    volume: int
    velocity: float
    acceleration: float
    score: float
    burst: bool
    first_seen: datetime | None
    last_seen: datetime | None
    updated_at: datetime
    summary_text: str | None = None  # the latest summary's text, in listings (``list_stories``)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing, and the position after its last row when a next page exists."""

    items: list[T]
    next_after: After | None


@dataclass(frozen=True)
class SummaryRow:
    text: str
    method: str
    model: str
    created_at: datetime


@dataclass(frozen=True)
class Bucket:
    bucket: datetime
    count: int


@dataclass(frozen=True)
class LineageRow:
    """A birth, merge, split or death the story took part in (as subject or as one of the related)."""

    kind: str
    subject_id: int
    related_ids: list[int]
    documents: int
    at: datetime


@dataclass(frozen=True)
class TopicRef:
    id: int
    label: str


@dataclass(frozen=True)
class StoryDetail:
    """One story whole: its row, summary, representative documents, counts over time, lineage, topic."""

    story: StoryRow
    summary: SummaryRow | None
    representatives: list[DocumentSummary]
    series: list[Bucket]
    lineage: list[LineageRow]
    topic: TopicRef | None


@dataclass(frozen=True)
class StoryDocumentRow:
    """A document of a story and how it was assigned."""

    document: DocumentSummary
    document_time: datetime
    similarity: float | None
    method: str
    assigned_at: datetime


@dataclass(frozen=True)
class TopicDocumentRow:
    """A document of a topic and the story it is in (if any)."""

    document: DocumentSummary
    document_time: datetime
    story_id: int | None
    assigned_at: datetime


@dataclass(frozen=True)
class TopicRow:
    id: int
    language: str | None
    status: str
    label: str
    keywords: list[str]  # strongest first
    size: int
    story_count: int
    first_seen: datetime | None
    last_seen: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class TopicDetail:
    topic: TopicRow
    stories: list[StoryRow]  # the best by score
    series: list[Bucket]  # the sum of its stories' counts


def _sort_key(sort: str) -> Key:
    if sort == "recency":
        return func.coalesce(Story.last_seen, NO_TIME)
    return {"score": Story.score, "volume": Story.volume, "velocity": Story.velocity}[sort]


def _keyset(key: Key, id_column: Key, after: After | None) -> list[ColumnElement[bool]]:
    """Rows after ``after`` in descending (key, id) order."""
    if after is None:
        return []
    value, last_id = after
    return [or_(key < value, and_(key == value, id_column < last_id))]


def _page(rows: Sequence[Any], limit: int, item: Any) -> Page[T]:
    """The page in ``rows`` (``limit`` + 1 read): ``item(row)`` of the first ``limit``, and the last one's
    position (its ``sort_key`` and ``id``) when there is one more."""
    items = [item(row) for row in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return Page(items, (last.sort_key, last.id) if last is not None else None)


def _story_documents_where(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    """Whether the story has a document meeting ``conditions`` (on documents and their sources)."""
    return exists(
        select(StoryDocument.document_id)
        .join(Document, Document.id == StoryDocument.document_id)
        .outerjoin(Source, Source.id == Document.source_id)
        .where(StoryDocument.story_id == Story.id, *conditions)
    )


def story_conditions(flt: StoryFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if flt.states:
        conditions.append(Story.state.in_(flt.states))
    if flt.statuses:
        conditions.append(Story.status.in_(flt.statuses))
    if flt.topic_id is not None:
        conditions.append(Story.topic_id == flt.topic_id)
    if flt.language is not None:
        conditions.append(Story.language == flt.language)
    if flt.since is not None:
        conditions.append(Story.last_seen >= flt.since)
    if flt.until is not None:
        conditions.append(Story.first_seen <= flt.until)
    if flt.source is not None:
        conditions.append(_story_documents_where(Source.name == flt.source))
    if flt.category is not None:
        conditions.append(_story_documents_where(category_column() == flt.category))
    return conditions


def _keywords(row: Story | Topic) -> list[str]:
    """The keyword terms, strongest first (stored as ``{"term", "weight"}`` by ``storage.trends``)."""
    return [str(k["term"]) if isinstance(k, dict) else str(k) for k in row.keywords or ()]


def _story_row(row: Story, summary_text: str | None = None) -> StoryRow:
    return row_to(StoryRow, row, keywords=_keywords(row), summary_text=summary_text)


async def list_stories(
    session: AsyncSession, *, filters: StoryFilter, sort: StorySort, after: After | None, limit: int
) -> Page[StoryRow]:
    """A page of the stories ``filters`` lets through, best first by ``sort`` (recency: last seen)."""
    key = _sort_key(sort)
    latest_summary = (
        select(StorySummary.summary)
        .where(StorySummary.story_id == Story.id)
        .order_by(StorySummary.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    stmt = (
        select(Story, key.label("sort_key"), Story.id.label("id"), latest_summary.label("summary_text"))
        .where(*story_conditions(filters), *_keyset(key, Story.id, after))
        .order_by(key.desc(), Story.id.desc())
        .limit(limit + 1)
    )
    rows = (await session.execute(stmt)).all()
    return _page(rows, limit, lambda row: _story_row(row.Story, row.summary_text))


async def _summary(session: AsyncSession, story_id: int) -> SummaryRow | None:
    row = (
        await session.execute(
            select(StorySummary)
            .where(StorySummary.story_id == story_id)
            .order_by(StorySummary.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    return None if row is None else row_to(SummaryRow, row, text=row.summary)


async def _story_series(session: AsyncSession, story_ids: Any, granularity: Granularity) -> list[Bucket]:
    """Counts per bucket of the stories ``story_ids`` (an id, or a SELECT of ids), summed."""
    condition = (
        StoryBucket.story_id == story_ids
        if isinstance(story_ids, int)
        else StoryBucket.story_id.in_(story_ids)
    )
    rows = await session.execute(
        select(StoryBucket.bucket, func.sum(StoryBucket.count).label("total"))
        .where(condition, StoryBucket.granularity == granularity)
        .group_by(StoryBucket.bucket)
        .order_by(StoryBucket.bucket)
    )
    return [Bucket(row.bucket, int(row.total)) for row in rows]


async def _lineage(session: AsyncSession, story_id: int) -> list[LineageRow]:
    rows = await session.execute(
        select(StoryLineage)
        .where(
            StoryLineage.level == "story",
            or_(StoryLineage.subject_id == story_id, literal(story_id) == any_(StoryLineage.related_ids)),
        )
        .order_by(StoryLineage.at, StoryLineage.id)
    )
    return [row_to(LineageRow, row, related_ids=list(row.related_ids)) for row in rows.scalars()]


async def get_story(
    session: AsyncSession, story_id: int, *, granularity: Granularity = "day"
) -> StoryDetail | None:
    """The story ``story_id`` whole (any status), or ``None`` when there is none."""
    story = await session.get(Story, story_id)
    if story is None:
        return None
    representative_ids = [int(i) for i in story.representative_ids]
    documents = await fetch_summaries(session, representative_ids)
    topic = await session.get(Topic, story.topic_id) if story.topic_id is not None else None
    return StoryDetail(
        story=_story_row(story),
        summary=await _summary(session, story_id),
        representatives=[documents[i] for i in representative_ids if i in documents],
        series=await _story_series(session, story_id, granularity),
        lineage=await _lineage(session, story_id),
        topic=None if topic is None else TopicRef(topic.id, topic.label),
    )


async def story_documents(
    session: AsyncSession, story_id: int, *, after: After | None, limit: int
) -> Page[StoryDocumentRow]:
    """A page of the story's documents, newest first (by document time, then id)."""
    key = StoryDocument.document_time
    stmt = (
        select(StoryDocument, key.label("sort_key"), StoryDocument.document_id.label("id"))
        .where(StoryDocument.story_id == story_id, *_keyset(key, StoryDocument.document_id, after))
        .order_by(key.desc(), StoryDocument.document_id.desc())
        .limit(limit + 1)
    )
    rows = (await session.execute(stmt)).all()
    documents = await fetch_summaries(session, [row.id for row in rows[:limit]])

    def item(row: Any) -> StoryDocumentRow:
        assigned: StoryDocument = row.StoryDocument
        return row_to(StoryDocumentRow, assigned, document=documents[assigned.document_id])

    return _page(rows, limit, item)


async def topic_documents(
    session: AsyncSession, topic_id: int, *, after: After | None, limit: int
) -> Page[TopicDocumentRow]:
    """A page of the topic's documents, newest first (by document time, then id)."""
    key = DocumentTopic.document_time
    stmt = (
        select(
            DocumentTopic,
            StoryDocument.story_id.label("story_id"),
            key.label("sort_key"),
            DocumentTopic.document_id.label("id"),
        )
        .outerjoin(StoryDocument, StoryDocument.document_id == DocumentTopic.document_id)
        .where(DocumentTopic.topic_id == topic_id, *_keyset(key, DocumentTopic.document_id, after))
        .order_by(key.desc(), DocumentTopic.document_id.desc())
        .limit(limit + 1)
    )
    rows = (await session.execute(stmt)).all()
    documents = await fetch_summaries(session, [row.id for row in rows[:limit]])

    def item(row: Any) -> TopicDocumentRow:
        placed: DocumentTopic = row.DocumentTopic
        return TopicDocumentRow(
            document=documents[placed.document_id],
            document_time=placed.document_time,
            story_id=row.story_id,
            assigned_at=placed.assigned_at,
        )

    return _page(rows, limit, item)


async def topic_exists(session: AsyncSession, topic_id: int) -> bool:
    return (await session.execute(select(Topic.id).where(Topic.id == topic_id))).first() is not None


async def story_exists(session: AsyncSession, story_id: int) -> bool:
    return (await session.execute(select(Story.id).where(Story.id == story_id))).first() is not None


def _topic_columns() -> tuple[Any, ...]:
    return (Topic, TrendPartition.language.label("language"))


def _topic_row(row: Any) -> TopicRow:
    return row_to(TopicRow, row.Topic, language=row.language, keywords=_keywords(row.Topic))


async def list_topics(
    session: AsyncSession, *, filters: TopicFilter, sort: TopicSort, after: After | None, limit: int
) -> Page[TopicRow]:
    """A page of the topics ``filters`` lets through, largest (``size``) or last seen (``recency``) first."""
    key: Key = Topic.size if sort == "size" else func.coalesce(Topic.last_seen, NO_TIME)
    conditions: list[ColumnElement[bool]] = []
    if filters.statuses:
        conditions.append(Topic.status.in_(filters.statuses))
    if filters.language is not None:
        conditions.append(TrendPartition.language == filters.language)
    if filters.since is not None:
        conditions.append(Topic.last_seen >= filters.since)
    if filters.until is not None:
        conditions.append(Topic.first_seen <= filters.until)
    stmt = (
        select(*_topic_columns(), key.label("sort_key"), Topic.id.label("id"))
        .outerjoin(TrendPartition, TrendPartition.id == Topic.partition_id)
        .where(*conditions, *_keyset(key, Topic.id, after))
        .order_by(key.desc(), Topic.id.desc())
        .limit(limit + 1)
    )
    rows = (await session.execute(stmt)).all()
    return _page(rows, limit, _topic_row)


async def get_topic(
    session: AsyncSession, topic_id: int, *, stories: int, granularity: Granularity = "day"
) -> TopicDetail | None:
    """The topic ``topic_id`` whole: its ``stories`` best active stories by score and the sum of its
    stories' counts over time; ``None`` when there is none."""
    row = (
        await session.execute(
            select(*_topic_columns())
            .outerjoin(TrendPartition, TrendPartition.id == Topic.partition_id)
            .where(Topic.id == topic_id)
        )
    ).one_or_none()
    if row is None:
        return None
    best = await list_stories(
        session, filters=StoryFilter(topic_id=topic_id), sort="score", after=None, limit=stories
    )
    members = select(Story.id).where(Story.topic_id == topic_id)
    return TopicDetail(_topic_row(row), best.items, await _story_series(session, members, granularity))


async def stories_of_documents(session: AsyncSession, document_ids: Sequence[int]) -> dict[int, StoryRef]:
    """The story each of ``document_ids`` belongs to now (documents in none are left out), in one query."""
    if not document_ids:
        return {}
    rows = await session.execute(
        select(StoryDocument.document_id, Story.id, Story.label)
        .join(Story, Story.id == StoryDocument.story_id)
        .where(StoryDocument.document_id.in_(list(document_ids)))
    )
    return {row.document_id: StoryRef(row.id, row.label) for row in rows}


@dataclass(frozen=True)
class TrendingDocument:
    """A newest document of a trending story (recommendations' trending candidates)."""

    document_id: int
    story_id: int
    story_label: str
    story_score: float


async def trending_documents(
    session: AsyncSession, *, stories: int, per_story: int
) -> list[TrendingDocument]:
    """The ``per_story`` newest documents of each of the ``stories`` best-scored active stories that are
    not fading or dormant, best story first."""
    top = (
        select(Story.id, Story.label, Story.score)
        .where(Story.status == "active", Story.state.not_in(("fading", "dormant")), Story.score > 0)
        .order_by(Story.score.desc(), Story.id)
        .limit(stories)
        .subquery()
    )
    ranked = (
        select(
            StoryDocument.document_id,
            StoryDocument.story_id,
            top.c.label,
            top.c.score,
            func.row_number()
            .over(partition_by=StoryDocument.story_id, order_by=StoryDocument.document_time.desc())
            .label("n"),
        )
        .join(top, top.c.id == StoryDocument.story_id)
        .subquery()
    )
    rows = await session.execute(
        select(ranked.c.document_id, ranked.c.story_id, ranked.c.label, ranked.c.score)
        .where(ranked.c.n <= per_story)
        .order_by(ranked.c.score.desc(), ranked.c.story_id, ranked.c.n)
    )
    return [TrendingDocument(int(d), int(s), label, float(score)) for d, s, label, score in rows]
