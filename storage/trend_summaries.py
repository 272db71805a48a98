"""The story summary cache: one row per generated summary (LLM or extractive), newest last.

A story's current summary is its latest row. Rows are only added (a regeneration adds one), so the
history of what was spent stays: ``spent_since`` sums the cost of LLM rows for the per-day cost cap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from storage.models import StorySummary
from storage.rows import row_to

SummaryMethod = Literal["llm", "extractive"]


@dataclass(frozen=True)
class NewSummary:
    """A summary to store: what it says, what it was generated from, and what it cost."""

    story_id: int
    fingerprint: str
    method: SummaryMethod
    summary: str
    story_size: int
    keywords: tuple[str, ...]  # the story's top keywords when generated, strongest first
    created_at: datetime  # the summariser's clock (the cost cap counts by it)
    model: str = ""  # "" for extractive summaries
    prompt_version: str = ""  # "" for extractive summaries
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True, kw_only=True)
class SummaryRow(NewSummary):
    """A stored summary."""

    id: int

    @classmethod
    def of(cls, row: StorySummary) -> SummaryRow:
        return row_to(cls, row, keywords=tuple(str(k) for k in row.keywords or ()))


def latest_summary(session: Session, *, story_id: int) -> SummaryRow | None:
    """The story's current summary (its newest row), or ``None`` when it has none yet."""
    row = session.scalars(
        select(StorySummary)
        .where(StorySummary.story_id == story_id)
        .order_by(StorySummary.id.desc())
        .limit(1)
    ).first()
    return SummaryRow.of(row) if row is not None else None


def latest_statement(story_ids: Iterable[int]) -> Select[StorySummary]:
    """The SELECT of the newest summary row of each of ``story_ids`` (one query, both reads below)."""
    newest = (
        select(func.max(StorySummary.id))
        .where(StorySummary.story_id.in_(sorted(set(story_ids))))
        .group_by(StorySummary.story_id)
        .scalar_subquery()
    )
    return select(StorySummary).where(StorySummary.id.in_(newest))


def latest_summaries(session: Session, *, story_ids: Iterable[int]) -> dict[int, SummaryRow]:
    """Current summary by story id, in one query; stories without a summary are absent."""
    return {row.story_id: SummaryRow.of(row) for row in session.scalars(latest_statement(story_ids))}


async def read_latest_summaries(session: AsyncSession, *, story_ids: Iterable[int]) -> dict[int, SummaryRow]:
    """``latest_summaries`` for the asyncio sessions of Serve replicas."""
    rows = await session.scalars(latest_statement(story_ids))
    return {row.story_id: SummaryRow.of(row) for row in rows}


def save_summary(session: Session, *, row: NewSummary) -> SummaryRow:
    """Add ``row`` (in the caller's transaction) and return it as stored."""
    stored = StorySummary(
        story_id=row.story_id,
        fingerprint=row.fingerprint,
        method=row.method,
        model=row.model,
        prompt_version=row.prompt_version,
        summary=row.summary,
        story_size=row.story_size,
        keywords=list(row.keywords),
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cost_usd=row.cost_usd,
        created_at=row.created_at,
    )
    session.add(stored)
    session.flush()
    return SummaryRow.of(stored)


def spent_since(session: Session, *, since: datetime) -> float:
    """USD spent on LLM summaries created at or after ``since`` (the start of a UTC day for the cap)."""
    total = session.scalar(
        select(func.coalesce(func.sum(StorySummary.cost_usd), 0.0)).where(
            StorySummary.method == "llm", StorySummary.created_at >= since
        )
    )
    return float(total or 0.0)
