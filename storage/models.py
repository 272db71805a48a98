"""SQLAlchemy 2.0 models of Pulse's durable state in PostgreSQL.

The schema itself is created by Alembic migrations (``storage/migrations``); these models mirror it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy import (
    text as sql_text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: SQL of the generated English full-text column (title weighted above body).
TSV_EN_SQL = (
    "setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(text, '')), 'B')"
)
#: SQL of the generated Arabic full-text column.
TSV_AR_SQL = (
    "setweight(to_tsvector('arabic'::regconfig, coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('arabic'::regconfig, coalesce(text, '')), 'B')"
)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB}


class Source(Base):
    """Where documents come from: a feed, a sitemap, a page, a site root, local files, a file import."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    uri: Mapped[str | None] = mapped_column(Text)
    config: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=sql_text("'{}'::jsonb"))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=sql_text("true"))
    language: Mapped[str | None] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(Text)
    interval_s: Mapped[int] = mapped_column(Integer, server_default=sql_text("3600"))
    max_items: Mapped[int | None] = mapped_column(Integer)
    url_patterns: Mapped[list[str]] = mapped_column(JSONB, server_default=sql_text("'[]'::jsonb"))
    last_collected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        Index("ix_documents_source_external", "source_id", "external_id"),
        Index("ix_documents_published_at", "published_at"),
        Index("ix_documents_tsv_en", "tsv_en", postgresql_using="gin"),
        Index("ix_documents_tsv_ar", "tsv_ar", postgresql_using="gin"),
        Index("ix_documents_content_hash", "content_hash"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"))
    external_id: Mapped[str | None] = mapped_column(Text)
    canonical_url: Mapped[str] = mapped_column(Text, unique=True)
    title: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(16))
    #: py3langid's probability for ``language``; NULL when the record or page declared it.
    language_confidence: Mapped[float | None] = mapped_column(Float)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    fetched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    content_hash: Mapped[str] = mapped_column(String(64))
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, server_default=sql_text("'{}'::jsonb")
    )
    tsv_en: Mapped[str] = mapped_column(TSVECTOR, Computed(TSV_EN_SQL, persisted=True))
    tsv_ar: Mapped[str] = mapped_column(TSVECTOR, Computed(TSV_AR_SQL, persisted=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class EmbeddingModel(Base):
    """The model registry: one row per (model, revision, text recipe, index)."""

    __tablename__ = "embedding_models"
    __table_args__ = (
        UniqueConstraint("name", "revision", "recipe_key", "index_name", name="uq_embedding_models_identity"),
        Index(
            "uq_embedding_models_one_active_per_index",
            "index_name",
            unique=True,
            postgresql_where=sql_text("status = 'active'"),
        ),
        CheckConstraint("status IN ('building', 'active', 'retired')", name="ck_embedding_models_status"),
    )

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    revision: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text, server_default="")
    dimension: Mapped[int] = mapped_column(Integer)
    normalize: Mapped[bool] = mapped_column(Boolean, server_default=sql_text("true"))
    max_seq_length: Mapped[int | None] = mapped_column(Integer)
    pooling: Mapped[str] = mapped_column(Text, server_default="mean")
    recipe: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=sql_text("'{}'::jsonb"))
    recipe_key: Mapped[str] = mapped_column(Text, server_default="")
    index_name: Mapped[str] = mapped_column(Text, server_default="default")
    status: Mapped[str] = mapped_column(String(16), server_default="building")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    activation_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class VectorFile(Base):
    """Manifest of vector Parquet files. ``id`` is the monotonic watermark readers catch up from."""

    __tablename__ = "vector_files"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("embedding_models.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    row_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DocumentEmbedding(Base):
    """Which document (at which content hash) each model has embedded, and in which file."""

    __tablename__ = "document_embeddings"

    model_id: Mapped[int] = mapped_column(
        ForeignKey("embedding_models.id", ondelete="CASCADE"), primary_key=True
    )
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    file_id: Mapped[int] = mapped_column(ForeignKey("vector_files.id", ondelete="CASCADE"), index=True)
    chunk_count: Mapped[int] = mapped_column(SmallInteger, server_default=sql_text("1"))
    embedded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class EmbedRun(Base):
    """One run of the embedding job; ``cutoff`` lets an interrupted ``--full`` run resume."""

    __tablename__ = "embed_runs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("embedding_models.id", ondelete="CASCADE"), index=True)
    full: Mapped[bool] = mapped_column(Boolean, server_default=sql_text("false"))
    status: Mapped[str] = mapped_column(String(16), server_default=sql_text("'running'"))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    cutoff: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    summary: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=sql_text("'{}'::jsonb"))


class QuarantinedRecord(Base):
    """A record a job refused, with its reason; nothing already stored is touched by it."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    job: Mapped[str] = mapped_column(String(64), index=True)
    source_ref: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=sql_text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CollectRun(Base):
    """One run of the collect job; its summary is written when it ends."""

    __tablename__ = "collect_runs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), server_default=sql_text("'running'"))
    summary: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=sql_text("'{}'::jsonb"))


class CrawlURL(Base):
    """The crawl frontier: every URL the collector must fetch or has fetched, with its HTTP validators.

    ``status`` is ``pending`` until a run has stored its outcome (``done`` or ``failed``), which is what
    makes a killed run resumable: the next run fetches what is still pending.
    """

    __tablename__ = "crawl_urls"
    __table_args__ = (
        Index("ix_crawl_urls_pending", "kind", "depth", postgresql_where=sql_text("status = 'pending'")),
    )

    url: Mapped[str] = mapped_column(Text, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), server_default=sql_text("'pending'"))
    depth: Mapped[int] = mapped_column(SmallInteger, server_default=sql_text("0"))
    hint: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=sql_text("'{}'::jsonb"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=sql_text("0"))
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    http_status: Mapped[int | None] = mapped_column(SmallInteger)
    error: Mapped[str | None] = mapped_column(Text)
    document_id: Mapped[int | None] = mapped_column(ForeignKey("documents.id", ondelete="SET NULL"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("collect_runs.id", ondelete="SET NULL"))
    discovered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    fetched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DocumentAlias(Base):
    """Another URL of a stored document: its fetched URL before ``rel=canonical``, or a duplicate's URL."""

    __tablename__ = "document_aliases"

    url: Mapped[str] = mapped_column(Text, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(String(32))
    similarity: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DocumentMinHash(Base):
    """The MinHash signature of a document's text (uint32 values, little endian)."""

    __tablename__ = "document_minhashes"

    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    signature: Mapped[bytes] = mapped_column(LargeBinary)


class DocumentLSH(Base):
    """LSH buckets of the MinHash signatures: documents sharing a (band, bucket) are candidates."""

    __tablename__ = "document_lsh"

    band: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    document_id: Mapped[int] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class DocumentDeletion(Base):
    """The deletion log: a trigger adds a row per deleted document; index shards catch up from it."""

    __tablename__ = "document_deletions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)  # the deletion watermark
    document_id: Mapped[int] = mapped_column(BigInteger)
    deleted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TrendPartition(Base):
    """One trend clusterer's share of the documents (a language, optionally a source group), with the
    last manifest file it applied (``watermark``) and its stream clock (latest document time seen)."""

    __tablename__ = "trend_partitions"
    __table_args__ = (UniqueConstraint("model_id", "key", name="uq_trend_partitions_model_key"),)

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    key: Mapped[str] = mapped_column(Text)
    model_id: Mapped[int] = mapped_column(ForeignKey("embedding_models.id", ondelete="CASCADE"))
    language: Mapped[str | None] = mapped_column(String(16))
    source_group: Mapped[str] = mapped_column(Text, server_default="default")
    watermark: Mapped[int] = mapped_column(BigInteger, server_default="0")
    clock: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Topic(Base):
    """A group of stories (the coarse level); ids are chosen by the clusterer and persist."""

    __tablename__ = "topics"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    partition_id: Mapped[int | None] = mapped_column(ForeignKey("trend_partitions.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), server_default="active")
    label: Mapped[str] = mapped_column(Text, server_default="")
    keywords: Mapped[list[Any]] = mapped_column(JSONB, server_default=sql_text("'[]'::jsonb"))
    size: Mapped[int] = mapped_column(Integer, server_default="0")
    story_count: Mapped[int] = mapped_column(Integer, server_default="0")
    first_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Story(Base):
    """A story: documents about one event, with its identity status, lifecycle state and analytics."""

    __tablename__ = "stories"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    partition_id: Mapped[int | None] = mapped_column(ForeignKey("trend_partitions.id", ondelete="CASCADE"))
    topic_id: Mapped[int | None] = mapped_column(ForeignKey("topics.id", ondelete="SET NULL"))
    language: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), server_default="active")
    merged_into: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), server_default="emerging")
    label: Mapped[str] = mapped_column(Text, server_default="")
    keywords: Mapped[list[Any]] = mapped_column(JSONB, server_default=sql_text("'[]'::jsonb"))
    representative_ids: Mapped[list[Any]] = mapped_column(JSONB, server_default=sql_text("'[]'::jsonb"))
    size: Mapped[int] = mapped_column(Integer, server_default="0")
    first_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    volume: Mapped[int] = mapped_column(Integer, server_default="0")
    velocity: Mapped[float] = mapped_column(Float, server_default="0")
    acceleration: Mapped[float] = mapped_column(Float, server_default="0")
    score: Mapped[float] = mapped_column(Float, server_default="0")
    burst: Mapped[bool] = mapped_column(Boolean, server_default=sql_text("false"))
    burst_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    emerging_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    peak_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class StoryDocument(Base):
    """Which story a document belongs to now, the first story it was given, and when."""

    __tablename__ = "story_documents"

    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE"))
    first_story_id: Mapped[int] = mapped_column(BigInteger)
    partition_id: Mapped[int | None] = mapped_column(ForeignKey("trend_partitions.id", ondelete="CASCADE"))
    document_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    assigned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    similarity: Mapped[float | None] = mapped_column(Float)
    method: Mapped[str] = mapped_column(String(16))


class DocumentTopic(Base):
    """Which topic a document belongs to now (every document the clusterer has placed, in a story or not)."""

    __tablename__ = "document_topics"

    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"))
    partition_id: Mapped[int | None] = mapped_column(ForeignKey("trend_partitions.id", ondelete="CASCADE"))
    document_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    assigned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class StoryLineage(Base):
    """A birth, merge, split or death of a story or topic (``level``). ``event_key`` makes a replayed
    event a no-op."""

    __tablename__ = "story_lineage"
    __table_args__ = (UniqueConstraint("partition_id", "event_key", name="uq_story_lineage_event"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    partition_id: Mapped[int | None] = mapped_column(ForeignKey("trend_partitions.id", ondelete="CASCADE"))
    level: Mapped[str] = mapped_column(String(8), server_default="story")
    kind: Mapped[str] = mapped_column(String(8))
    subject_id: Mapped[int] = mapped_column(BigInteger)
    related_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), server_default="{}")
    documents: Mapped[int] = mapped_column(Integer, server_default="0")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    event_key: Mapped[str] = mapped_column(Text)


class StoryBucket(Base):
    """How many of a story's documents fall in one hour or day (by document time)."""

    __tablename__ = "story_buckets"

    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE"), primary_key=True)
    granularity: Mapped[str] = mapped_column(String(4), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


class StorySummary(Base):
    """A story's summary as generated (LLM or extractive), keyed by what it was generated from."""

    __tablename__ = "story_summaries"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE"))
    fingerprint: Mapped[str] = mapped_column(Text)
    method: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(Text, server_default="")
    prompt_version: Mapped[str] = mapped_column(Text, server_default="")
    summary: Mapped[str] = mapped_column(Text)
    story_size: Mapped[int] = mapped_column(Integer, server_default="0")
    keywords: Mapped[list[Any]] = mapped_column(JSONB, server_default=sql_text("'[]'::jsonb"))
    input_tokens: Mapped[int] = mapped_column(Integer, server_default="0")
    output_tokens: Mapped[int] = mapped_column(Integer, server_default="0")
    cost_usd: Mapped[float] = mapped_column(Float, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
