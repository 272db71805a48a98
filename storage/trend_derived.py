"""The trends store, derived side: what the clusterer's refresh reads (member texts of stories and topics,
a story's counts over time, the stories still active) and the fields it derives and writes (lifecycle
analytics, labels, keywords, representatives), plus the languages documents have. The clusterer's own
writes (deltas) are ``storage.trends``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import any_, bindparam, select, text, update
from sqlalchemy.orm import Session

from storage.cms_models import table_of
from storage.models import Document, Story, StoryBucket, StoryDocument, Topic
from storage.trends import GRANULARITIES, Granularity, StoryState, bigints

#: Characters of a member document's text that ``member_texts`` gives.
MEMBER_TEXT_CHARS = 1_000


# ----------------------------------------------------------------------------------------------- reads
@dataclass(frozen=True)
class MemberText:
    """A member document as labelling and summaries read it (``text``: its first characters)."""

    document_id: int
    title: str
    text: str
    language: str | None
    document_time: datetime


def story_series(
    session: Session, *, story_ids: Iterable[int], granularity: Granularity
) -> dict[int, list[tuple[datetime, int]]]:
    """Each story's (bucket start, count) in time order; a story without documents has an empty list."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity {granularity!r}: use one of {', '.join(GRANULARITIES)}")
    series: dict[int, list[tuple[datetime, int]]] = {int(i): [] for i in story_ids}
    if not series:
        return series
    rows = session.execute(
        select(StoryBucket.story_id, StoryBucket.bucket, StoryBucket.count)
        .where(StoryBucket.story_id == any_(bigints(series)), StoryBucket.granularity == granularity)
        .order_by(StoryBucket.story_id, StoryBucket.bucket)
    )
    for story_id, bucket, count in rows:
        series[int(story_id)].append((bucket, int(count)))
    return series


def member_texts(
    session: Session, *, story_ids: Iterable[int], per_story: int
) -> dict[int, list[MemberText]]:
    """The ``per_story`` most recent documents of each story (newest first), in one query.

    A lateral join with LIMIT, not a window over all members: it reads ``per_story`` rows of each
    story from the (story_id, document_time) index however large the story is.
    """
    return _newest_members(session, "story_documents", "story_id", story_ids, per_story)


def topic_member_texts(
    session: Session, *, topic_ids: Iterable[int], per_topic: int
) -> dict[int, list[MemberText]]:
    """The ``per_topic`` most recent documents of each topic (in its stories or in none), newest first."""
    return _newest_members(session, "document_topics", "topic_id", topic_ids, per_topic)


def _newest_members(
    session: Session,
    table: Literal["story_documents", "document_topics"],
    key: Literal["story_id", "topic_id"],
    ids: Iterable[int],
    per: int,
) -> dict[int, list[MemberText]]:
    members: dict[int, list[MemberText]] = {int(i): [] for i in ids}
    if not members or per <= 0:
        return members
    rows = session.execute(
        text(
            "SELECT k.id AS key, d.id, d.title, left(d.text, :chars) AS text, d.language, "
            "m.document_time FROM unnest(CAST(:ids AS bigint[])) AS k(id) CROSS JOIN LATERAL ("
            f"SELECT t.document_id, t.document_time FROM {table} t WHERE t.{key} = k.id "
            "ORDER BY t.document_time DESC, t.document_id DESC LIMIT :per"
            ") AS m JOIN documents d ON d.id = m.document_id "
            "ORDER BY k.id, m.document_time DESC, m.document_id DESC"
        ),
        {"ids": sorted(members), "chars": MEMBER_TEXT_CHARS, "per": per},
    )
    for r in rows:
        members[int(r.key)].append(MemberText(int(r.id), r.title, r.text, r.language, r.document_time))
    return members


def stories_active_since(session: Session, *, partition_id: int, since: datetime) -> list[int]:
    """Active stories of the partition with a document at or after ``since``, by id."""
    active = Story.partition_id == partition_id, Story.status == "active", Story.last_seen >= since
    return list(session.scalars(select(Story.id).where(*active).order_by(Story.id)))


def assignments_of(session: Session, *, partition_id: int) -> dict[int, int]:
    """Document -> story of every assigned document of the partition."""
    rows = session.execute(
        select(StoryDocument.document_id, StoryDocument.story_id).where(
            StoryDocument.partition_id == partition_id
        )
    )
    return {int(document_id): int(story_id) for document_id, story_id in rows}


# ------------------------------------------------------------------------------------- derived fields
@dataclass(frozen=True)
class StoryAnalytics:
    """A story's lifecycle state and the figures it was decided from."""

    id: int
    state: StoryState
    volume: int
    velocity: float
    acceleration: float
    score: float
    burst: bool
    burst_at: datetime | None
    emerging_at: datetime | None
    peak_at: datetime | None


@dataclass(frozen=True)
class StoryText:
    """A story's label, weighted keywords and representative documents."""

    id: int
    label: str
    keywords: list[tuple[str, float]]
    representative_ids: list[int]


@dataclass(frozen=True)
class TopicText:
    id: int
    label: str
    keywords: list[tuple[str, float]]


def _keywords_json(keywords: Iterable[tuple[str, float]]) -> list[dict[str, Any]]:
    return [{"term": term, "weight": float(weight)} for term, weight in keywords]


def _update_by_id(session: Session, entity: type[Story] | type[Topic], rows: list[dict[str, Any]]) -> None:
    """``UPDATE ... WHERE id = ...`` once per row in one executemany; ids that do not exist are skipped
    (an ORM bulk update would raise for them)."""
    if not rows:
        return
    table = table_of(entity)
    names = [name for name in rows[0] if name != "id"]
    stmt = (
        update(table)
        .where(table.c.id == bindparam("row_id"))
        .values({name: bindparam(f"new_{name}") for name in names})
    )
    session.execute(stmt, [{"row_id": r["id"], **{f"new_{n}": r[n] for n in names}} for r in rows])


def update_analytics(session: Session, rows: Sequence[StoryAnalytics]) -> None:
    """Write the stories' lifecycle state and analytics."""
    _update_by_id(session, Story, [dict(vars(r)) for r in rows])


def update_story_text(session: Session, rows: Sequence[StoryText]) -> None:
    """Write the stories' labels, keywords (``[{"term", "weight"}]``) and representative documents."""
    _update_by_id(
        session,
        Story,
        [
            {
                "id": r.id,
                "label": r.label,
                "keywords": _keywords_json(r.keywords),
                "representative_ids": [int(i) for i in r.representative_ids],
            }
            for r in rows
        ],
    )


def update_topic_text(session: Session, rows: Sequence[TopicText]) -> None:
    """Write the topics' labels and keywords (``[{"term", "weight"}]``)."""
    _update_by_id(
        session, Topic, [{"id": r.id, "label": r.label, "keywords": _keywords_json(r.keywords)} for r in rows]
    )


def document_languages(session: Session) -> list[str | None]:
    """The languages documents are stored with (``None`` for documents without one)."""
    rows = session.execute(select(Document.language).distinct()).scalars().all()
    return sorted(rows, key=lambda lang: lang or "")
