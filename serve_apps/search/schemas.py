"""Public HTTP schemas of the search API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class StoryRef(BaseModel):
    id: int = Field(description="Story id (GET /v1/trends/{id})")
    label: str


class DocumentSummaryOut(BaseModel):
    """What results show of a document (search results, a story's documents)."""

    model_config = ConfigDict(from_attributes=True)  # read from a storage.documents.DocumentSummary

    id: int = Field(description="Pulse document id")
    title: str
    url: str = Field(description="Canonical URL of the document")
    published_at: datetime | None
    language: str | None = None
    source: str | None = Field(default=None, description="Name of the source it was collected from")
    category: str | None = None


class SearchResult(DocumentSummaryOut):
    score: float = Field(
        description=(
            "Higher is better. vector: cosine similarity; keyword: BM25; hybrid: the fused score "
            "(comparable within one response only)"
        )
    )
    story: StoryRef | None = Field(
        default=None, description="The story the trend clusterer put the document in; null when in none"
    )
    snippet: str | None = Field(
        default=None,
        description=(
            "About 240 characters of the text where the query's words are densest (from its first 2,000 "
            "characters; its beginning when none is there); null for a document without text"
        ),
    )


class ReasonOut(BaseModel):
    kind: Literal["similar", "examples", "co_read", "trending", "popular", "fresh"] = Field(
        description=(
            "similar: close to a document the reader read; examples: close to the examples given; co_read: "
            "read by people who read a document the reader read; trending: in a trending story; popular: "
            "read by many lately; fresh: newly published"
        )
    )
    text: str = Field(description="The reason in words")
    document_id: int | None = Field(default=None, description="similar / co_read: the document it relates to")
    story_id: int | None = Field(default=None, description="trending: the story (GET /v1/trends/{id})")


class RecommendResult(SearchResult):
    reason: ReasonOut


class ModelRef(BaseModel):
    id: int = Field(description="Registry entry of the model that served the search")
    name: str


class ShardReport(BaseModel):
    answered: int = Field(description="Index shards that answered before the deadline")
    total: int


class SearchResponse(BaseModel):
    query: str
    mode: str = Field(description="vector, keyword or hybrid: how results were ranked")
    model: ModelRef
    level: str = Field(description="document or chunk: what the query was matched against")
    results: list[SearchResult]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` (with the same query) for the next page; null on the last"
    )
    partial: bool = Field(
        default=False,
        description=(
            "True when a shard or the keyword index missed the deadline: results may lack some documents"
        ),
    )
    shards: ShardReport
    timings_ms: dict[str, float] = Field(description="Milliseconds spent in each stage")


class DocumentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # read from a storage.documents.DocumentDetail

    id: int
    title: str
    url: str
    text: str
    language: str | None
    source: str | None
    category: str | None
    published_at: datetime | None
    fetched_at: datetime | None
    metadata: dict[str, Any]


class SimilarResponse(BaseModel):
    document_id: int
    model: ModelRef
    results: list[RecommendResult]
    partial: bool = False
    shards: ShardReport
    timings_ms: dict[str, float]


class Health(BaseModel):
    status: str


class ShardStatus(BaseModel):
    shard: int
    ready: bool
    vectors: int
    index: str = Field(
        description="FAISS factory string of the shard's built index ('' before the first build)"
    )
    delta: int = Field(description="Vectors added since the last build, searched exactly")
    watermark: int = Field(description="Last manifest file applied")
    restored_from: str | None = Field(description="Snapshot the shard started from, if any")


class Readiness(BaseModel):
    status: str
    model: str | None = None
    model_id: int | None = None
    vectors: int | None = None
    reason: str | None = None
    shards: list[ShardStatus] | None = None
    keyword_documents: int | None = None
