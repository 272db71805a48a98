"""SQLAlchemy models of the recommendations tables (migration 0009): interaction events, their ids, the
lists served, experiments and reader cursors.

``rec_events`` is partitioned by month of ``occurred_at``; its partitions (``rec_events_pYYYYMM``) are not
modelled: ``storage.rec_events`` creates and drops them. Always write through the parent table.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    Index,
    Text,
    func,
)
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base

#: Interaction event types (the CHECK constraint of ``rec_events.type``).
EVENT_TYPES: tuple[str, ...] = ("view", "click", "like", "dislike", "share", "dwell", "impression")
#: The sequence ``rec_events.seq`` is drawn from.
EVENT_SEQUENCE = "rec_events_seq"


class RecEvent(Base):
    """One interaction event; ``seq`` is the watermark readers follow. Partitioned by month (UTC)."""

    __tablename__ = "rec_events"
    __table_args__ = (
        CheckConstraint(
            "type IN (" + ", ".join(f"'{t}'" for t in EVENT_TYPES) + ")", name="ck_rec_events_type"
        ),
        CheckConstraint("char_length(event_id) BETWEEN 1 AND 128", name="ck_rec_events_event_id"),
        Index("ix_rec_events_seq", "seq"),
        Index("ix_rec_events_subject_occurred", "subject", "occurred_at"),
        Index("ix_rec_events_document", "document_id"),
        Index("ix_rec_events_list", "list_id", postgresql_where=sql_text("list_id IS NOT NULL")),
        {"postgresql_partition_by": "RANGE (occurred_at)"},
    )

    seq: Mapped[int] = mapped_column(BigInteger, server_default=sql_text(f"nextval('{EVENT_SEQUENCE}')"))
    event_id: Mapped[str] = mapped_column(Text, primary_key=True)
    subject: Mapped[str] = mapped_column(Text)  # "user:<user_id>" or "session:<session_id>"
    user_id: Mapped[str | None] = mapped_column(Text)
    session_id: Mapped[str | None] = mapped_column(Text)
    document_id: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(Text)
    value: Mapped[float | None] = mapped_column(Float)  # dwell seconds
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    list_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    experiment: Mapped[str | None] = mapped_column(Text)  # copied from rec_served by list_id
    variant: Mapped[str | None] = mapped_column(Text)
    posted_by: Mapped[str] = mapped_column(Text)  # "key:7", "user:3"
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RecEventId(Base):
    """Every stored event id (across partitions): what makes storing an event idempotent."""

    __tablename__ = "rec_event_ids"

    event_id: Mapped[str] = mapped_column(Text, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RecServed(Base):
    """A list the recommender served, with the experiment variant that chose it."""

    __tablename__ = "rec_served"
    __table_args__ = (
        Index("ix_rec_served_experiment_variant", "experiment", "variant"),
        Index("ix_rec_served_served_at", "served_at"),
    )

    list_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    subject: Mapped[str] = mapped_column(Text)
    experiment: Mapped[str | None] = mapped_column(Text)
    variant: Mapped[str | None] = mapped_column(Text)
    document_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=sql_text("'{}'::jsonb"))
    served_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RecExperiment(Base):
    """An A/B experiment: ``variants`` is a JSON list of ``{"name", "weight", "params"}``."""

    __tablename__ = "rec_experiments"
    __table_args__ = (
        CheckConstraint("name ~ '^[a-z0-9_-]{1,64}$'", name="ck_rec_experiments_name"),
        CheckConstraint("jsonb_typeof(variants) = 'array'", name="ck_rec_experiments_variants"),
    )

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    variants: Mapped[list[Any]] = mapped_column(JSONB)
    active: Mapped[bool] = mapped_column(Boolean, server_default=sql_text("true"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RecCursor(Base):
    """A reader's persisted watermark in ``rec_events`` (a ``seq``)."""

    __tablename__ = "rec_cursors"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
