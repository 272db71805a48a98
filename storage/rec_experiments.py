"""Recommendation experiments (A/B variants with weights and parameters), the lists served under them,
and per-variant outcome counts.

An experiment's ``variants`` is a JSON list of ``{"name": str, "weight": float, "params": {...}}``; the
recommender picks a variant per subject and records each list it serves (``record_served``) with that
variant. Events answering a list (by ``list_id``) carry the list's experiment and variant
(``storage.rec_events.store_events`` copies them), which is what ``experiment_counts`` adds up.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.cms_models import table_of
from storage.rec_models import RecExperiment, RecServed

#: What an experiment name may be (the CHECK constraint of ``rec_experiments.name``).
EXPERIMENT_NAME = re.compile(r"[a-z0-9_-]{1,64}")
#: Event types that count as a click on a served list.
CLICK_TYPES = ("click", "like", "share")


@dataclass(frozen=True)
class Variant:
    name: str
    weight: float
    params: dict[str, Any]


@dataclass(frozen=True)
class ExperimentRow:
    name: str
    variants: list[Variant]
    active: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class VariantCounts:
    """One variant's outcomes: lists served, lists with at least one click (click, like or share), those
    click events, and impression events."""

    variant: str
    lists: int
    clicked_lists: int
    clicks: int
    impressions: int


def _experiment(row: Row[Any]) -> ExperimentRow:
    variants = [
        Variant(name=str(v["name"]), weight=float(v["weight"]), params=dict(v.get("params") or {}))
        for v in row.variants
    ]
    return ExperimentRow(row.name, variants, row.active, row.created_at, row.updated_at)


async def put_experiment(
    session: AsyncSession, *, name: str, variants: Sequence[Variant], active: bool
) -> ExperimentRow:
    """Create the experiment or replace its variants and state (``created_at`` kept), in the caller's
    transaction. ``ValueError`` for a name outside ``[a-z0-9_-]{1,64}``, no variants or a repeated
    variant name."""
    if not EXPERIMENT_NAME.fullmatch(name):
        raise ValueError(f"experiment name {name!r} must be 1-64 characters of a-z, 0-9, _ and -")
    names = [v.name for v in variants]
    if not names:
        raise ValueError(f"experiment {name!r} has no variants; give at least one")
    if len(set(names)) != len(names):
        raise ValueError(f"experiment {name!r} repeats a variant name: {names}")
    table = table_of(RecExperiment)
    new = insert(table).values(
        name=name,
        variants=[{"name": v.name, "weight": float(v.weight), "params": dict(v.params)} for v in variants],
        active=active,
    )
    stmt = new.on_conflict_do_update(
        index_elements=[table.c.name],
        set_={"variants": new.excluded.variants, "active": new.excluded.active, "updated_at": func.now()},
    ).returning(*table.c)
    return _experiment((await session.execute(stmt)).one())


async def get_experiment(session: AsyncSession, name: str) -> ExperimentRow | None:
    """The experiment of that name, or ``None``."""
    table = table_of(RecExperiment)
    row = (await session.execute(select(table).where(table.c.name == name))).one_or_none()
    return None if row is None else _experiment(row)


async def active_experiments(session: AsyncSession) -> list[ExperimentRow]:
    """The active experiments, by name."""
    table = table_of(RecExperiment)
    rows = await session.execute(select(table).where(table.c.active.is_(True)).order_by(table.c.name))
    return [_experiment(row) for row in rows.all()]


@dataclass(frozen=True)
class ServedList:
    """A list the recommender served."""

    list_id: uuid.UUID
    subject: str
    experiment: str | None
    variant: str | None
    document_ids: Sequence[int]
    params: dict[str, Any]


async def record_served(session: AsyncSession, lists: Sequence[ServedList]) -> None:
    """Record served lists in the caller's transaction, in one INSERT; recording a ``list_id`` again is a
    no-op."""
    if not lists:
        return
    await session.execute(
        insert(table_of(RecServed))
        .values(
            [
                {
                    "list_id": x.list_id,
                    "subject": x.subject,
                    "experiment": x.experiment,
                    "variant": x.variant,
                    "document_ids": list(x.document_ids),
                    "params": x.params,
                }
                for x in lists
            ]
        )
        .on_conflict_do_nothing()
    )


# Per variant of the experiment's definition, in its order: served lists, lists with at least one click
# event (joined by list_id), those events, and impression events tagged with the experiment and variant.
_COUNTS_SQL = text(
    """
    WITH variants AS (
        SELECT v.elem ->> 'name' AS variant, v.ord
        FROM rec_experiments x, jsonb_array_elements(x.variants) WITH ORDINALITY AS v(elem, ord)
        WHERE x.name = :name
    ), served AS (
        SELECT s.variant, count(e.seq) AS clicks
        FROM rec_served s
        LEFT JOIN rec_events e ON e.list_id = s.list_id AND e.type = ANY(:click_types)
        WHERE s.experiment = :name
        GROUP BY s.variant, s.list_id
    ), lists AS (
        SELECT variant, count(*) AS lists, count(*) FILTER (WHERE clicks > 0) AS clicked_lists,
               sum(clicks) AS clicks
        FROM served GROUP BY variant
    ), impressions AS (
        SELECT variant, count(*) AS impressions
        FROM rec_events WHERE experiment = :name AND type = 'impression'
        GROUP BY variant
    )
    SELECT v.variant, coalesce(l.lists, 0) AS lists, coalesce(l.clicked_lists, 0) AS clicked_lists,
           coalesce(l.clicks, 0) AS clicks, coalesce(i.impressions, 0) AS impressions
    FROM variants v
    LEFT JOIN lists l ON l.variant = v.variant
    LEFT JOIN impressions i ON i.variant = v.variant
    ORDER BY v.ord
    """
)


async def experiment_counts(session: AsyncSession, name: str) -> list[VariantCounts]:
    """Outcome counts of every variant of the experiment (zeros included), in the order its variants are
    listed; ``[]`` for an unknown experiment. Lists served under a variant no longer listed are left out."""
    rows = await session.execute(_COUNTS_SQL, {"name": name, "click_types": list(CLICK_TYPES)})
    return [
        VariantCounts(str(r.variant), int(r.lists), int(r.clicked_lists), int(r.clicks), int(r.impressions))
        for r in rows.all()
    ]
