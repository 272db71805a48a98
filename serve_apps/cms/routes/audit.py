"""The audit log (admin): every write and every refusal, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from serve_apps.cms import schemas as s
from serve_apps.cms.deps import Caller, Cms
from serve_apps.inputs import MAX_ID
from storage.cms_actions import AuditAction
from storage.cms_audit import list_audit

router = APIRouter()


@router.get("/audit", response_model=list[s.AuditOut], summary="The audit log, newest first (admin)")
async def audit(
    request: Request,
    principal: Caller,
    cms: Cms,
    target: Annotated[str | None, Query(max_length=200)] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    outcome: Annotated[str | None, Query(pattern="^(ok|denied)$")] = None,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[s.AuditOut]:
    async with cms.read(request, principal, "audit.read", AuditAction.AUDIT_READ, "audit") as session:
        rows = await list_audit(
            session, target=target, actor=actor, outcome=outcome, before_id=before_id, limit=limit
        )
    return [s.AuditOut.model_validate(r) for r in rows]
