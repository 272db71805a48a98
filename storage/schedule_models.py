"""SQLAlchemy models of the scheduler's tables (migration 0010): schedules and their runs."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Text,
    Time,
    func,
)
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base

#: States of a schedule run (the CHECK constraint of ``schedule_runs.state``).
RUN_STATES: tuple[str, ...] = ("pending", "running", "succeeded", "failed", "stopped", "skipped")
#: States of a run whose job may still be going: at most one such run per schedule (a unique index).
LIVE_STATES: tuple[str, ...] = ("pending", "running")
#: SQL condition of the partial unique index that refuses a second live run of a schedule.
LIVE_CONDITION = "state IN ('pending', 'running')"


class Schedule(Base):
    """What the job scheduler submits (a job kind and its arguments) and when."""

    __tablename__ = "schedules"
    __table_args__ = (
        CheckConstraint("name ~ '^[a-z0-9_-]{1,64}$'", name="ck_schedules_name"),
        CheckConstraint("jsonb_typeof(args) = 'array'", name="ck_schedules_args"),
        CheckConstraint("every_s IS NULL OR every_s > 0", name="ck_schedules_every"),
        CheckConstraint(
            "(every_s IS NOT NULL)::int + (daily_at IS NOT NULL)::int + (on_event IS NOT NULL)::int = 1",
            name="ck_schedules_one_timing",
        ),
    )

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    args: Mapped[list[Any]] = mapped_column(JSONB, server_default=sql_text("'[]'::jsonb"))
    every_s: Mapped[int | None] = mapped_column(Integer)
    daily_at: Mapped[time | None] = mapped_column(Time)  # UTC
    on_event: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=sql_text("true"))
    paused: Mapped[bool] = mapped_column(Boolean, server_default=sql_text("false"))
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    run_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    event_mark: Mapped[str | None] = mapped_column(Text)  # the last event handled (on_event schedules)
    note: Mapped[str | None] = mapped_column(Text)  # why it is disabled, when it is
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ScheduleRun(Base):
    """One run of a schedule: a job submitted to Ray's job server (or a skipped start)."""

    __tablename__ = "schedule_runs"
    __table_args__ = (
        CheckConstraint(
            "state IN (" + ", ".join(f"'{s}'" for s in RUN_STATES) + ")", name="ck_schedule_runs_state"
        ),
        Index("ix_schedule_runs_schedule_id", "schedule", "id"),
        Index("uq_schedule_runs_live", "schedule", unique=True, postgresql_where=sql_text(LIVE_CONDITION)),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    schedule: Mapped[str] = mapped_column(Text, ForeignKey("schedules.name", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(Text)
    submission_id: Mapped[str | None] = mapped_column(Text, unique=True)
    state: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
