"""The CMS audit log: every write and every denied action (who, what, when, outcome, before/after)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.cms_actions import Action
from storage.cms_models import CmsAudit, table_of


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    ip: str | None
    action: str
    target: str | None
    outcome: str
    reason: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def audit_insert(
    *,
    actor: str,
    action: Action,
    outcome: str = "ok",
    target: str | None = None,
    ip: str | None = None,
    reason: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> Insert:
    """The INSERT of one audit row (``ContentRepository`` sends it in one statement with the write's
    revision and event)."""
    return insert(table_of(CmsAudit)).values(
        actor=actor,
        ip=ip,
        action=action,
        target=target,
        outcome=outcome,
        reason=reason,
        before=before,
        after=after,
    )


async def record_audit(session: AsyncSession, **row: Any) -> None:
    """Add an audit row (``audit_insert``'s fields) in the caller's transaction: a write and its audit
    row commit together."""
    await session.execute(audit_insert(**row))


async def list_audit(
    session: AsyncSession,
    *,
    target: str | None = None,
    actor: str | None = None,
    outcome: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[AuditRow]:
    """Newest first; page with ``before_id`` (the last id of the previous page)."""
    stmt = select(CmsAudit).order_by(CmsAudit.id.desc()).limit(limit)
    if target is not None:
        stmt = stmt.where(CmsAudit.target == target)
    if actor is not None:
        stmt = stmt.where(CmsAudit.actor == actor)
    if outcome is not None:
        stmt = stmt.where(CmsAudit.outcome == outcome)
    if before_id is not None:
        stmt = stmt.where(CmsAudit.id < before_id)
    rows = (await session.execute(stmt)).scalars().all()
    return [
        AuditRow(r.id, r.at, r.actor, r.ip, r.action, r.target, r.outcome, r.reason, r.before, r.after)
        for r in rows
    ]
