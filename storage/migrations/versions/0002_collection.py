"""Collection: source settings, the crawl frontier, collect runs, URL aliases and near-duplicate
fingerprints (MinHash signatures with their LSH band buckets).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sources", sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()))
    op.add_column("sources", sa.Column("language", sa.String(16)))
    op.add_column("sources", sa.Column("category", sa.Text))
    op.add_column("sources", sa.Column("interval_s", sa.Integer, nullable=False, server_default="3600"))
    op.add_column("sources", sa.Column("max_items", sa.Integer))
    op.add_column(
        "sources",
        sa.Column("url_patterns", postgresql.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    )
    op.add_column("sources", sa.Column("last_collected_at", sa.DateTime(timezone=True)))

    op.create_table(
        "collect_runs",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("status", sa.String(16), nullable=False, server_default="running"),
        sa.Column("summary", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    )
    op.create_table(
        "crawl_urls",
        sa.Column("url", sa.Text, primary_key=True),
        sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("depth", sa.SmallInteger, nullable=False, server_default="0"),
        sa.Column("hint", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("etag", sa.Text),
        sa.Column("last_modified", sa.Text),
        sa.Column("http_status", sa.SmallInteger),
        sa.Column("error", sa.Text),
        sa.Column("document_id", sa.BigInteger, sa.ForeignKey("documents.id", ondelete="SET NULL")),
        sa.Column("run_id", sa.BigInteger, sa.ForeignKey("collect_runs.id", ondelete="SET NULL")),
        sa.Column("discovered_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("fetched_at", sa.DateTime(timezone=True)),
        sa.Column("retry_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "ix_crawl_urls_pending",
        "crawl_urls",
        ["kind", "depth"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_crawl_urls_source", "crawl_urls", ["source_id"])
    op.create_table(
        "document_aliases",
        sa.Column("url", sa.Text, primary_key=True),
        sa.Column(
            "document_id", sa.BigInteger, sa.ForeignKey("documents.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("similarity", sa.Float),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_document_aliases_document", "document_aliases", ["document_id"])
    op.create_table(
        "document_minhashes",
        sa.Column(
            "document_id",
            sa.BigInteger,
            sa.ForeignKey("documents.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("signature", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "document_lsh",
        sa.Column("band", sa.SmallInteger, primary_key=True),
        sa.Column("bucket", sa.BigInteger, primary_key=True),
        sa.Column(
            "document_id",
            sa.BigInteger,
            sa.ForeignKey("documents.id", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    op.create_index("ix_document_lsh_document", "document_lsh", ["document_id"])
    op.create_index("ix_documents_content_hash", "documents", ["content_hash"])


def downgrade() -> None:
    op.drop_index("ix_documents_content_hash", table_name="documents")
    op.drop_table("document_lsh")
    op.drop_table("document_minhashes")
    op.drop_table("document_aliases")
    op.drop_table("crawl_urls")
    op.drop_table("collect_runs")
    for column in (
        "last_collected_at",
        "url_patterns",
        "max_items",
        "interval_s",
        "category",
        "language",
        "enabled",
    ):
        op.drop_column("sources", column)
