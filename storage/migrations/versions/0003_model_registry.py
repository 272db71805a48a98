"""Model registry and chunked embeddings: each model row carries its loading path, pooling, maximum
sequence length, text recipe and a status (building, active, retired) with exactly one active model per
index; document embeddings record how many chunk vectors they have; embed runs are recorded so a
``--full`` run can resume after a crash.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("embedding_models", sa.Column("path", sa.Text, nullable=False, server_default=""))
    op.add_column("embedding_models", sa.Column("max_seq_length", sa.Integer))
    op.add_column("embedding_models", sa.Column("pooling", sa.Text, nullable=False, server_default="mean"))
    op.add_column(
        "embedding_models",
        sa.Column("recipe", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    )
    op.add_column("embedding_models", sa.Column("recipe_key", sa.Text, nullable=False, server_default=""))
    op.add_column(
        "embedding_models", sa.Column("index_name", sa.Text, nullable=False, server_default="default")
    )
    op.add_column(
        "embedding_models", sa.Column("status", sa.String(16), nullable=False, server_default="building")
    )
    op.add_column("embedding_models", sa.Column("activated_at", sa.DateTime(timezone=True)))
    op.add_column("embedding_models", sa.Column("retired_at", sa.DateTime(timezone=True)))
    # Set by `pulse models activate`, cleared by the switch: `pulse up` resumes what a restart cut off.
    op.add_column("embedding_models", sa.Column("activation_requested_at", sa.DateTime(timezone=True)))
    op.execute(
        "UPDATE embedding_models SET status = CASE WHEN is_active THEN 'active' ELSE 'retired' END, "
        "activated_at = CASE WHEN is_active THEN now() END"
    )
    op.drop_index("uq_embedding_models_one_active", table_name="embedding_models")
    op.drop_constraint("uq_embedding_models_name_revision", "embedding_models", type_="unique")
    op.drop_column("embedding_models", "is_active")
    op.create_unique_constraint(
        "uq_embedding_models_identity", "embedding_models", ["name", "revision", "recipe_key", "index_name"]
    )
    op.create_index(
        "uq_embedding_models_one_active_per_index",
        "embedding_models",
        ["index_name"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_check_constraint(
        "ck_embedding_models_status", "embedding_models", "status IN ('building', 'active', 'retired')"
    )

    op.add_column(
        "document_embeddings", sa.Column("chunk_count", sa.SmallInteger, nullable=False, server_default="1")
    )

    op.create_table(
        "embed_runs",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "model_id",
            sa.Integer,
            sa.ForeignKey("embedding_models.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("full", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("status", sa.String(16), nullable=False, server_default="running"),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("cutoff", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("summary", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    )


def downgrade() -> None:
    op.drop_table("embed_runs")
    op.drop_column("document_embeddings", "chunk_count")
    op.drop_constraint("ck_embedding_models_status", "embedding_models", type_="check")
    op.drop_index("uq_embedding_models_one_active_per_index", table_name="embedding_models")
    op.drop_constraint("uq_embedding_models_identity", "embedding_models", type_="unique")
    op.add_column(
        "embedding_models", sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.execute(
        "UPDATE embedding_models SET is_active = (status = 'active' AND index_name = 'default')"
    )
    # Keep one row per (name, revision) so the old unique constraint can come back.
    op.execute(
        "DELETE FROM embedding_models a USING embedding_models b "
        "WHERE a.name = b.name AND a.revision = b.revision AND a.id > b.id"
    )
    op.create_unique_constraint(
        "uq_embedding_models_name_revision", "embedding_models", ["name", "revision"]
    )
    op.create_index(
        "uq_embedding_models_one_active",
        "embedding_models",
        ["is_active"],
        unique=True,
        postgresql_where=sa.text("is_active"),
    )
    for column in (
        "activation_requested_at",
        "retired_at",
        "activated_at",
        "status",
        "index_name",
        "recipe_key",
        "recipe",
        "pooling",
        "max_seq_length",
        "path",
    ):
        op.drop_column("embedding_models", column)
