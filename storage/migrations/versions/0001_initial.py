"""Initial schema: sources, documents (with English and Arabic full-text columns), embedding models,
the vector file manifest, document embeddings and the quarantine.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TSV_EN_SQL = (
    "setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(text, '')), 'B')"
)
TSV_AR_SQL = (
    "setweight(to_tsvector('arabic'::regconfig, coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('arabic'::regconfig, coalesce(text, '')), 'B')"
)


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("uri", sa.Text),
        sa.Column("config", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "documents",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("source_id", sa.Integer, sa.ForeignKey("sources.id", ondelete="SET NULL")),
        sa.Column("external_id", sa.Text),
        sa.Column("canonical_url", sa.Text, nullable=False, unique=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("language", sa.String(16)),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("metadata", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("tsv_en", postgresql.TSVECTOR, sa.Computed(TSV_EN_SQL, persisted=True)),
        sa.Column("tsv_ar", postgresql.TSVECTOR, sa.Computed(TSV_AR_SQL, persisted=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_documents_source_external", "documents", ["source_id", "external_id"])
    op.create_index("ix_documents_published_at", "documents", ["published_at"])
    op.create_index("ix_documents_tsv_en", "documents", ["tsv_en"], postgresql_using="gin")
    op.create_index("ix_documents_tsv_ar", "documents", ["tsv_ar"], postgresql_using="gin")

    op.create_table(
        "embedding_models",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("revision", sa.Text, nullable=False),
        sa.Column("dimension", sa.Integer, nullable=False),
        sa.Column("normalize", sa.Boolean, nullable=False, server_default=sa.text("true")),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("name", "revision", name="uq_embedding_models_name_revision"),
    )
    op.create_index(
        "uq_embedding_models_one_active",
        "embedding_models",
        ["is_active"],
        unique=True,
        postgresql_where=sa.text("is_active"),
    )
    op.create_table(
        "vector_files",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "model_id", sa.Integer, sa.ForeignKey("embedding_models.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("path", sa.Text, nullable=False, unique=True),
        sa.Column("row_count", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_vector_files_model_id", "vector_files", ["model_id"])
    op.create_table(
        "document_embeddings",
        sa.Column(
            "model_id", sa.Integer, sa.ForeignKey("embedding_models.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column(
            "document_id", sa.BigInteger, sa.ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column(
            "file_id", sa.BigInteger, sa.ForeignKey("vector_files.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("embedded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_document_embeddings_file_id", "document_embeddings", ["file_id"])
    op.create_table(
        "quarantine",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("source_ref", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("payload", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_quarantine_job", "quarantine", ["job"])


def downgrade() -> None:
    for table in ("quarantine", "document_embeddings", "vector_files", "embedding_models", "documents", "sources"):
        op.drop_table(table)
