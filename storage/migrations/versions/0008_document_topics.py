"""Trends: every document's topic (``document_topics``), not only through its story.

Topics are broad subjects: a document in no story (one of a kind) still has one, and a story's documents
may lie in more than one. A topic's size and first/last times now count its documents. Existing
assignments are carried over: each document in a story gets its story's topic.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "document_topics",
        sa.Column(
            "document_id",
            sa.BigInteger,
            sa.ForeignKey("documents.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("topic_id", sa.BigInteger, sa.ForeignKey("topics.id", ondelete="CASCADE"), nullable=False),
        sa.Column("partition_id", sa.Integer, sa.ForeignKey("trend_partitions.id", ondelete="CASCADE")),
        sa.Column("document_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_document_topics_topic_time", "document_topics", ["topic_id", "document_time"])
    op.create_index("ix_document_topics_partition", "document_topics", ["partition_id"])
    op.execute(
        "INSERT INTO document_topics (document_id, topic_id, partition_id, document_time) "
        "SELECT sd.document_id, s.topic_id, sd.partition_id, sd.document_time FROM story_documents sd "
        "JOIN stories s ON s.id = sd.story_id WHERE s.topic_id IS NOT NULL"
    )
    op.execute(
        "UPDATE topics t SET size = agg.size, first_seen = agg.first_seen, last_seen = agg.last_seen "
        "FROM (SELECT topic_id, count(*) AS size, min(document_time) AS first_seen, "
        "max(document_time) AS last_seen FROM document_topics GROUP BY topic_id) AS agg "
        "WHERE t.id = agg.topic_id"
    )


def downgrade() -> None:
    op.drop_table("document_topics")
