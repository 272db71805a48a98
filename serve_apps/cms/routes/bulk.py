"""Bulk: create, update, publish or archive many items in one transaction, all or nothing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from serve_apps.cms import schemas as s
from serve_apps.cms.deps import Caller, Cms
from serve_apps.cms.item_views import derived
from serve_apps.cms.security import Principal
from serve_apps.errors import InvalidRequest, error_responses
from storage.cms_actions import AuditAction, EventType
from storage.cms_content import ContentRepository
from storage.cms_items import ItemRow
from storage.errors import CmsError

router = APIRouter()


class BulkRolledBack(InvalidRequest):
    """A bulk request with failing items: nothing was changed (HTTP 409, each failure in details)."""

    status_code = 409
    code = "bulk_rolled_back"

    def __init__(self, failed: int, total: int, details: list[dict[str, Any]]) -> None:
        super().__init__(
            f"{failed} of {total} items failed; nothing was changed (all or nothing). Fix them and resend",
            details=details,
        )


async def _one(
    repo: ContentRepository, action: str, work: Any, principal: Principal, ip: str | None
) -> ItemRow:
    if action == "create":
        return await repo.create(
            derived(work.model_dump(exclude_unset=True)),
            actor=principal.label,
            author_id=principal.id if principal.kind == "user" else None,
            ip=ip,
            emit=False,
        )
    if action == "update":
        fields = derived(work.fields.model_dump(exclude_unset=True)) if work.fields else {}
        _, after = await repo.update(
            work.id, fields, actor=principal.label, expected_version=work.version, ip=ip, emit=False
        )
        return after
    target = "published" if action == "publish" else "archived"
    _, after = await repo.transition(
        work.id, target, actor=principal.label, expected_version=work.version, ip=ip, emit=False
    )
    return after


@router.post(
    "/bulk",
    response_model=s.BulkOut,
    summary="Create, update, publish or archive many items at once",
    responses=error_responses(409),
)
async def bulk(request: Request, body: s.BulkIn, principal: Caller, cms: Cms) -> s.BulkOut:
    """All or nothing: one transaction; on any failure nothing changes and the error lists each item."""
    results: list[s.BulkResult] = []
    failures: list[dict[str, Any]] = []
    action = AuditAction(f"bulk.{body.action}")
    async with cms.write(request, principal, action, "bulk", permission="bulk") as w:
        repo = ContentRepository(w.session)
        for index, work in enumerate(body.create or body.items or []):
            try:
                async with w.session.begin_nested():
                    item = await _one(repo, body.action, work, principal, w.ip)
                results.append(
                    s.BulkResult(index=index, id=item.id, ok=True, status=item.status, version=item.version)
                )
            except CmsError as exc:  # reported per item; the whole bulk is rolled back below
                results.append(
                    s.BulkResult(index=index, id=getattr(work, "id", None), ok=False, error=str(exc))
                )
                failures.append({"field": f"items[{index}]", "reason": str(exc)})
        if failures:
            raise BulkRolledBack(len(failures), len(results), failures)
        ids = [r.id for r in results if r.id is not None]
        payload = {
            "action": body.action,
            "actor": principal.label,
            "results": [r.model_dump() for r in results],
        }
        w.event = (EventType(f"bulk.{body.action}"), ids, payload)
        w.after = {"items": ids}
    return s.BulkOut(action=body.action, count=len(results), results=results)
