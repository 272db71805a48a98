"""Schedules: what the job scheduler submits and when, and every run it made.

``schedules`` holds one row per schedule: the job kind and its arguments, and when it runs: every
``every_s`` seconds, daily at ``daily_at`` (UTC), or on an event (``on_event``); exactly one of the three.
``enabled`` comes from the settings (a backup without a destination is disabled); ``paused`` is the
operator's (`pulse schedules pause`), kept across restarts and re-seeding. ``run_requested_at`` is
`pulse schedules run-now`: the scheduler runs the schedule at its next tick without moving ``next_run_at``.

``schedule_runs`` records each run: ``pending`` (recorded, being submitted), ``running`` (the job server has
it), then ``succeeded``, ``failed`` or ``stopped``; ``skipped`` when it was not started (a copy was live).
The partial unique index ``uq_schedule_runs_live`` lets at most one ``pending`` or ``running`` run exist
per schedule: the database itself refuses a second live copy.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

RUN_STATES = ("pending", "running", "succeeded", "failed", "stopped", "skipped")


def _now(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("args", postgresql.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("every_s", sa.Integer),
        sa.Column("daily_at", sa.Time),
        sa.Column("on_event", sa.Text),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.text("true")),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("next_run_at", sa.DateTime(timezone=True)),
        sa.Column("run_requested_at", sa.DateTime(timezone=True)),
        sa.Column("event_mark", sa.Text),
        sa.Column("note", sa.Text),
        _now("created_at"),
        _now("updated_at"),
        sa.CheckConstraint("name ~ '^[a-z0-9_-]{1,64}$'", name="ck_schedules_name"),
        sa.CheckConstraint("jsonb_typeof(args) = 'array'", name="ck_schedules_args"),
        sa.CheckConstraint("every_s IS NULL OR every_s > 0", name="ck_schedules_every"),
        sa.CheckConstraint(
            "(every_s IS NOT NULL)::int + (daily_at IS NOT NULL)::int + (on_event IS NOT NULL)::int = 1",
            name="ck_schedules_one_timing",
        ),
    )
    op.create_table(
        "schedule_runs",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("schedule", sa.Text, sa.ForeignKey("schedules.name", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("submission_id", sa.Text, unique=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("message", sa.Text),
        _now("created_at"),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(
            "state IN (" + ", ".join(f"'{s}'" for s in RUN_STATES) + ")", name="ck_schedule_runs_state"
        ),
    )
    op.create_index("ix_schedule_runs_schedule_id", "schedule_runs", ["schedule", "id"])
    op.create_index(
        "uq_schedule_runs_live",
        "schedule_runs",
        ["schedule"],
        unique=True,
        postgresql_where=sa.text("state IN ('pending', 'running')"),
    )


def downgrade() -> None:
    op.drop_table("schedule_runs")
    op.drop_table("schedules")
