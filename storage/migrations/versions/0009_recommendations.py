"""Recommendations: interaction events (partitioned by month), their ids, served lists, experiments and
reader cursors.

``rec_events`` is partitioned by RANGE (occurred_at), one partition per UTC month named
``rec_events_pYYYYMM``. This migration creates none: the writer (``storage.rec_events.store_events``) adds
the months it needs. ``seq`` comes from ``rec_events_seq`` (owned by the column) and is the watermark
readers follow.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

EVENT_TYPES = ("view", "click", "like", "dislike", "share", "dwell", "impression")


def _now(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.execute("CREATE SEQUENCE rec_events_seq")
    op.create_table(
        "rec_events",
        sa.Column("seq", sa.BigInteger, nullable=False, server_default=sa.text("nextval('rec_events_seq')")),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text),
        sa.Column("session_id", sa.Text),
        sa.Column("document_id", sa.BigInteger, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("list_id", postgresql.UUID(as_uuid=True)),
        sa.Column("experiment", sa.Text),
        sa.Column("variant", sa.Text),
        sa.Column("posted_by", sa.Text, nullable=False),
        _now("received_at"),
        sa.PrimaryKeyConstraint("event_id", "occurred_at", name="rec_events_pkey"),
        sa.CheckConstraint(
            "type IN (" + ", ".join(f"'{t}'" for t in EVENT_TYPES) + ")", name="ck_rec_events_type"
        ),
        sa.CheckConstraint("char_length(event_id) BETWEEN 1 AND 128", name="ck_rec_events_event_id"),
        postgresql_partition_by="RANGE (occurred_at)",
    )
    op.execute("ALTER SEQUENCE rec_events_seq OWNED BY rec_events.seq")
    op.create_index("ix_rec_events_seq", "rec_events", ["seq"])
    op.create_index("ix_rec_events_subject_occurred", "rec_events", ["subject", "occurred_at"])
    op.create_index("ix_rec_events_document", "rec_events", ["document_id"])
    op.create_index(
        "ix_rec_events_list", "rec_events", ["list_id"], postgresql_where=sa.text("list_id IS NOT NULL")
    )
    op.create_table(
        "rec_event_ids",
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "rec_served",
        sa.Column("list_id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("experiment", sa.Text),
        sa.Column("variant", sa.Text),
        sa.Column("document_ids", postgresql.ARRAY(sa.BigInteger), nullable=False),
        sa.Column("params", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        _now("served_at"),
    )
    op.create_index("ix_rec_served_experiment_variant", "rec_served", ["experiment", "variant"])
    op.create_index("ix_rec_served_served_at", "rec_served", ["served_at"])
    op.create_table(
        "rec_experiments",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("variants", postgresql.JSONB, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.text("true")),
        _now("created_at"),
        _now("updated_at"),
        sa.CheckConstraint("name ~ '^[a-z0-9_-]{1,64}$'", name="ck_rec_experiments_name"),
        sa.CheckConstraint("jsonb_typeof(variants) = 'array'", name="ck_rec_experiments_variants"),
    )
    op.create_table(
        "rec_cursors",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
        _now("updated_at"),
    )


def downgrade() -> None:
    op.drop_table("rec_cursors")
    op.drop_table("rec_experiments")
    op.drop_table("rec_served")
    op.drop_table("rec_event_ids")
    # Drops every month partition and the sequence the table owns.
    op.execute("DROP TABLE rec_events")
    op.execute("DROP SEQUENCE IF EXISTS rec_events_seq")
