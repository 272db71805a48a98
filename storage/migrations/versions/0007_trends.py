"""Trends: clusterer partitions, stories, topics, document -> story assignments, lineage, per-story
counts per hour and day, and the summary cache.

Story and topic ids are chosen by the clusterer of their partition (``partition id * 10^9 + n``), so
a replay after a restart writes the same ids again: every write here is an idempotent upsert.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trend_partitions",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column(
            "model_id",
            sa.Integer,
            sa.ForeignKey("embedding_models.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("language", sa.String(16)),
        sa.Column("source_group", sa.Text, nullable=False, server_default="default"),
        sa.Column("watermark", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("clock", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("model_id", "key", name="uq_trend_partitions_model_key"),
    )
    op.create_table(
        "topics",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("partition_id", sa.Integer, sa.ForeignKey("trend_partitions.id", ondelete="CASCADE")),
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),
        sa.Column("label", sa.Text, nullable=False, server_default=""),
        sa.Column("keywords", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("size", sa.Integer, nullable=False, server_default="0"),
        sa.Column("story_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("first_seen", sa.DateTime(timezone=True)),
        sa.Column("last_seen", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("status IN ('active', 'merged', 'dead')", name="ck_topics_status"),
    )
    op.create_table(
        "stories",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("partition_id", sa.Integer, sa.ForeignKey("trend_partitions.id", ondelete="CASCADE")),
        sa.Column("topic_id", sa.BigInteger, sa.ForeignKey("topics.id", ondelete="SET NULL")),
        sa.Column("language", sa.String(16)),
        # Identity: active, merged (into merged_into), dead (no documents left in the window).
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),
        sa.Column("merged_into", sa.BigInteger),
        # Lifecycle (storage.trends docstring): emerging, growing, peaking, fading, dormant.
        sa.Column("state", sa.String(16), nullable=False, server_default="emerging"),
        sa.Column("label", sa.Text, nullable=False, server_default=""),
        sa.Column("keywords", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("representative_ids", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("size", sa.Integer, nullable=False, server_default="0"),
        sa.Column("first_seen", sa.DateTime(timezone=True)),
        sa.Column("last_seen", sa.DateTime(timezone=True)),
        sa.Column("volume", sa.Integer, nullable=False, server_default="0"),
        sa.Column("velocity", sa.Float, nullable=False, server_default="0"),
        sa.Column("acceleration", sa.Float, nullable=False, server_default="0"),
        sa.Column("score", sa.Float, nullable=False, server_default="0"),
        sa.Column("burst", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("burst_at", sa.DateTime(timezone=True)),
        sa.Column("emerging_at", sa.DateTime(timezone=True)),
        sa.Column("peak_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("status IN ('active', 'merged', 'dead')", name="ck_stories_status"),
        sa.CheckConstraint(
            "state IN ('emerging', 'growing', 'peaking', 'fading', 'dormant')", name="ck_stories_state"
        ),
    )
    op.create_index("ix_stories_partition_status", "stories", ["partition_id", "status"])
    op.create_index("ix_stories_topic", "stories", ["topic_id"])
    op.create_index("ix_stories_score", "stories", ["score"])
    op.create_index("ix_stories_last_seen", "stories", ["last_seen"])
    op.create_table(
        "story_documents",
        sa.Column(
            "document_id",
            sa.BigInteger,
            sa.ForeignKey("documents.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("story_id", sa.BigInteger, sa.ForeignKey("stories.id", ondelete="CASCADE"), nullable=False),
        sa.Column("first_story_id", sa.BigInteger, nullable=False),
        sa.Column("partition_id", sa.Integer, sa.ForeignKey("trend_partitions.id", ondelete="CASCADE")),
        sa.Column("document_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("similarity", sa.Float),
        sa.Column("method", sa.String(16), nullable=False),
        sa.CheckConstraint("method IN ('assign', 'recluster', 'job')", name="ck_story_documents_method"),
    )
    op.create_index("ix_story_documents_story_time", "story_documents", ["story_id", "document_time"])
    op.create_index("ix_story_documents_partition", "story_documents", ["partition_id"])
    op.create_table(
        "story_lineage",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("partition_id", sa.Integer, sa.ForeignKey("trend_partitions.id", ondelete="CASCADE")),
        sa.Column("level", sa.String(8), nullable=False, server_default="story"),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("subject_id", sa.BigInteger, nullable=False),
        sa.Column("related_ids", pg.ARRAY(sa.BigInteger), nullable=False, server_default="{}"),
        sa.Column("documents", sa.Integer, nullable=False, server_default="0"),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("event_key", sa.Text, nullable=False),
        sa.UniqueConstraint("partition_id", "event_key", name="uq_story_lineage_event"),
        sa.CheckConstraint("level IN ('story', 'topic')", name="ck_story_lineage_level"),
        sa.CheckConstraint("kind IN ('birth', 'merge', 'split', 'death')", name="ck_story_lineage_kind"),
    )
    op.create_index("ix_story_lineage_subject", "story_lineage", ["level", "subject_id"])
    op.create_index("ix_story_lineage_related", "story_lineage", ["related_ids"], postgresql_using="gin")
    op.create_table(
        "story_buckets",
        sa.Column(
            "story_id", sa.BigInteger, sa.ForeignKey("stories.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("granularity", sa.String(4), primary_key=True),
        sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.CheckConstraint("granularity IN ('hour', 'day')", name="ck_story_buckets_granularity"),
    )
    op.create_table(
        "story_summaries",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("story_id", sa.BigInteger, sa.ForeignKey("stories.id", ondelete="CASCADE"), nullable=False),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("model", sa.Text, nullable=False, server_default=""),
        sa.Column("prompt_version", sa.Text, nullable=False, server_default=""),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("story_size", sa.Integer, nullable=False, server_default="0"),
        sa.Column("keywords", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("input_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("method IN ('llm', 'extractive')", name="ck_story_summaries_method"),
    )
    op.create_index("ix_story_summaries_story", "story_summaries", ["story_id", "id"])
    op.create_index("ix_story_summaries_created", "story_summaries", ["created_at"])


def downgrade() -> None:
    for table in (
        "story_summaries",
        "story_buckets",
        "story_lineage",
        "story_documents",
        "stories",
        "topics",
        "trend_partitions",
    ):
        op.drop_table(table)
