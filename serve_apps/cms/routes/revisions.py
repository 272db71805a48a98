"""An item's history: every saved version, the difference of two, and restoring a past one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from serve_apps.cms import schemas as s
from serve_apps.cms.context import CmsContext
from serve_apps.cms.deps import Caller, Cms, Versioned
from serve_apps.cms.item_views import IfMatch, check_write, readable
from serve_apps.cms.permissions import decide
from serve_apps.cms.security import Principal
from serve_apps.errors import error_responses
from serve_apps.inputs import MAX_VERSION, Id, Version
from storage.cms_actions import AuditAction
from storage.cms_content import ContentRepository

router = APIRouter()


async def _history_check(cms: CmsContext, request: Request, principal: Principal, item_id: int) -> None:
    """404 unless the caller may read the item, 403 (audit-logged) unless it may see its history."""
    item = await readable(cms, request, principal, item_id)
    owner = principal.kind == "user" and principal.id == item.author_id
    action = AuditAction.ITEM_REVISIONS
    decision = decide(principal.role, action, owner=owner, status=item.status, item_id=item_id)
    await cms.allow(request, principal, decision, action, f"item:{item_id}")


@router.get(
    "/items/{item_id}/revisions",
    response_model=list[s.RevisionOut],
    summary="Every saved version",
    responses=error_responses(404),
)
async def revisions(request: Request, item_id: Id, principal: Caller, cms: Cms) -> list[s.RevisionOut]:
    await _history_check(cms, request, principal, item_id)
    async with cms.sessions() as session:
        rows = await ContentRepository(session).revisions(item_id)
    return [s.RevisionOut.model_validate(r) for r in rows]


@router.get(
    "/items/{item_id}/diff",
    response_model=s.DiffOut,
    summary="Field-by-field difference of two versions",
    responses=error_responses(404),
)
async def diff(
    request: Request,
    item_id: Id,
    principal: Caller,
    cms: Cms,
    from_version: Annotated[int, Query(alias="from", ge=1, le=MAX_VERSION)],
    to_version: Annotated[int, Query(alias="to", ge=1, le=MAX_VERSION)],
) -> s.DiffOut:
    await _history_check(cms, request, principal, item_id)
    async with cms.sessions() as session:
        repo = ContentRepository(session)
        old, new = await repo.revision(item_id, from_version), await repo.revision(item_id, to_version)
    names = list(dict.fromkeys([*old.data, *new.data]))
    changes = [
        s.FieldChange(field=n, before=old.data.get(n), after=new.data.get(n))
        for n in names
        if old.data.get(n) != new.data.get(n)
    ]
    return s.DiffOut(item_id=item_id, from_version=from_version, to_version=to_version, changes=changes)


@router.post(
    "/items/{item_id}/revisions/{version}/restore",
    response_model=s.ItemOut,
    summary="Make a past version current again (as a new version)",
    responses=error_responses(404, 409, 412),
)
async def restore(
    request: Request,
    response: Response,
    item_id: Id,
    version: Version,
    principal: Caller,
    cms: Cms,
    if_match: IfMatch = None,
) -> s.ItemOut:
    item = Versioned(request, response, item_id, principal, cms, if_match)
    check = check_write(principal, AuditAction.ITEM_RESTORE)
    return await item.apply(lambda repo, journal: repo.restore(item_id, version, check=check, **journal))
