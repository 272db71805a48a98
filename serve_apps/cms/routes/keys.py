"""API keys (admin): create (the key is shown once), list without the keys, revoke."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request, Response

from serve_apps.cms import schemas as s
from serve_apps.cms.deps import Caller, Cms
from serve_apps.errors import NotFound, error_responses
from serve_apps.inputs import Id
from storage.cms_actions import AuditAction
from storage.cms_users import ApiKeyRepository

router = APIRouter()

#: Who may manage API keys.
PERMISSION = "key.manage"


@router.post("/keys", response_model=s.KeyCreated, status_code=201, summary="Create an API key (shown once)")
async def create_key(request: Request, body: s.KeyCreate, principal: Caller, cms: Cms) -> s.KeyCreated:
    target = f"key:{body.name}"
    async with cms.write(request, principal, AuditAction.KEY_CREATE, target, permission=PERMISSION) as w:
        row, plaintext = await ApiKeyRepository(w.session).create(
            body.name, body.role, principal.id if principal.kind == "user" else None
        )
        w.target, w.after = f"key:{row.id}", {"name": row.name, "role": row.role, "prefix": row.prefix}
    return s.KeyCreated.model_validate({**asdict(row), "key": plaintext})


@router.get("/keys", response_model=list[s.KeyOut], summary="Every API key, without the keys (admin)")
async def keys(request: Request, principal: Caller, cms: Cms) -> list[s.KeyOut]:
    async with cms.read(request, principal, PERMISSION, AuditAction.KEY_LIST, "keys") as session:
        return [s.KeyOut.model_validate(k) for k in await ApiKeyRepository(session).list()]


@router.delete(
    "/keys/{key_id}", status_code=204, summary="Revoke an API key (admin)", responses=error_responses(404)
)
async def revoke_key(request: Request, key_id: Id, principal: Caller, cms: Cms) -> Response:
    missing = NotFound(f"no API key {key_id}", code="key_not_found")
    action, target = AuditAction.KEY_REVOKE, f"key:{key_id}"
    return await cms.remove(
        request,
        principal,
        PERMISSION,
        action,
        target,
        missing,
        lambda db: ApiKeyRepository(db).revoke(key_id),
    )
