"""Public HTTP schemas of the trends API, read from ``storage.trend_queries``' rows (``from_attributes``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from serve_apps.search.schemas import DocumentSummaryOut
from storage.trend_queries import Granularity

#: What a listing's ``next_cursor`` is.
NEXT_CURSOR = "Pass as `cursor` (with the same filters, sort and limit) for the next page; null on the last"


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class StoryOut(_Out):
    id: int = Field(description="Story id (stable across re-clusterings of its partition)")
    topic_id: int | None = Field(description="The topic it belongs to (GET /v1/topics/{id})")
    language: str | None
    status: str = Field(
        description="active; merged (into merged_into); dead (no documents left in the window)"
    )
    merged_into: int | None
    state: str = Field(description="Lifecycle: emerging, growing, peaking, fading or dormant")
    label: str
    keywords: list[str] = Field(description="Strongest first")
    size: int = Field(description="Documents in the story")
    volume: int = Field(description="Documents in the recent window")
    velocity: float = Field(description="Rate of documents (its change is acceleration)")
    acceleration: float
    score: float = Field(description="Trend score: higher is trendier")
    burst: bool = Field(description="Whether a burst of documents was detected")
    first_seen: datetime | None = Field(description="Time of its first document")
    last_seen: datetime | None = Field(description="Time of its latest document")
    updated_at: datetime = Field(description="Last change of its identity or membership")


class StoryListedOut(StoryOut):
    summary_text: str | None = Field(
        description="Its latest summary's text (GET /v1/trends/{id} has the whole summary); null before one"
    )


class StoryPageOut(BaseModel):
    items: list[StoryListedOut]
    next_cursor: str | None = Field(description=NEXT_CURSOR)


class SummaryOut(_Out):
    text: str
    method: str = Field(description="llm or extractive")
    model: str = Field(description="The LLM that wrote it ('' for extractive)")
    created_at: datetime


class BucketOut(_Out):
    bucket: datetime = Field(description="Start of the hour or day (UTC)")
    count: int = Field(description="Documents whose time falls in it")
    burst: bool = Field(
        description="A burst when the bucket ended (the rule of a story's burst flag, over earlier buckets)"
    )


class LineageOut(_Out):
    kind: str = Field(description="birth, merge, split or death")
    subject_id: int = Field(description="The story born, merged into, split from or dead")
    related_ids: list[int] = Field(description="The other stories of the event (merged ones, split parts)")
    documents: int = Field(description="Documents the event moved")
    at: datetime


class TopicRef(_Out):
    id: int
    label: str


class StoryDetailOut(StoryOut):
    summary: SummaryOut | None = Field(description="The latest summary; null before one is written")
    representatives: list[DocumentSummaryOut] = Field(description="Documents most typical of the story")
    granularity: Granularity
    series: list[BucketOut] = Field(
        description="Documents per hour or day (granularity), oldest first; empty buckets left out"
    )
    lineage: list[LineageOut] = Field(description="Events the story took part in, oldest first")
    topic: TopicRef | None


class StoryDocumentOut(DocumentSummaryOut):
    document_time: datetime = Field(
        description="The time the clusterer placed it at (published, else fetched)"
    )
    similarity: float | None = Field(description="Cosine similarity to the story when it was assigned")
    method: str = Field(description="How it was assigned: assign (on arrival), recluster or job")
    assigned_at: datetime


class StoryDocumentPageOut(BaseModel):
    story_id: int
    items: list[StoryDocumentOut] = Field(description="Newest first (document time)")
    next_cursor: str | None = Field(description=NEXT_CURSOR)


class TopicDocumentOut(DocumentSummaryOut):
    document_time: datetime = Field(
        description="The time the clusterer placed it at (published, else fetched)"
    )
    story_id: int | None = Field(description="The story it is in; null: in none (one of a kind)")
    assigned_at: datetime = Field(description="When it was last given this topic")


class TopicDocumentPageOut(BaseModel):
    topic_id: int
    items: list[TopicDocumentOut] = Field(description="Newest first (document time)")
    next_cursor: str | None = Field(description=NEXT_CURSOR)


class TopicOut(_Out):
    id: int
    language: str | None = Field(description="Language of the topic's partition")
    status: str = Field(description="active, merged or dead")
    label: str
    keywords: list[str] = Field(description="Strongest first")
    size: int = Field(description="Its documents (in its stories or in none)")
    story_count: int
    first_seen: datetime | None
    last_seen: datetime | None
    updated_at: datetime


class TopicPageOut(BaseModel):
    items: list[TopicOut]
    next_cursor: str | None = Field(description=NEXT_CURSOR)


class TopicDetailOut(TopicOut):
    stories: list[StoryOut] = Field(description="Its active stories, best first by score")
    granularity: Granularity
    series: list[BucketOut] = Field(
        description="Its stories' documents per hour or day, summed, oldest first; empty buckets left out"
    )


class Health(BaseModel):
    status: str
