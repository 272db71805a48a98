"""Users (admin): create, list, change role or status, delete. The last active admin stays (409)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response

from cluster.ground.passwords import PasswordPolicyError, check_password_policy, hash_password
from serve_apps.cms import schemas as s
from serve_apps.cms.deps import Caller, Cms
from serve_apps.errors import ErrorResponse, InvalidRequest, NotFound, error_responses
from serve_apps.inputs import Id
from storage.cms_actions import AuditAction
from storage.cms_users import RefreshTokenRepository, UserRepository

router = APIRouter()

#: OpenAPI entry of the 409 that the last-admin rule answers.
LAST_ADMIN_RESPONSE: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorResponse, "description": "the user is the last active admin (code last_admin)"}
}
#: Who may manage users.
PERMISSION = "user.manage"


@router.post(
    "/users",
    response_model=s.UserOut,
    status_code=201,
    summary="Create a user (admin)",
    responses=error_responses(409),
)
async def create_user(request: Request, body: s.UserCreate, principal: Caller, cms: Cms) -> s.UserOut:
    target = f"email:{body.email.lower()}"
    async with cms.write(request, principal, AuditAction.USER_CREATE, target, permission=PERMISSION) as w:
        try:
            check_password_policy(body.password)
        except PasswordPolicyError as exc:
            raise InvalidRequest(f"password: {exc}") from exc
        password_hash = await asyncio.to_thread(hash_password, body.password)
        user = await UserRepository(w.session).create(body.email, body.display_name, password_hash, body.role)
        w.target, w.after = f"user:{user.id}", {"email": user.email, "role": user.role}
    return s.UserOut.model_validate(user)


@router.get("/users", response_model=list[s.UserOut], summary="Every user (admin)")
async def users(request: Request, principal: Caller, cms: Cms) -> list[s.UserOut]:
    async with cms.read(request, principal, PERMISSION, AuditAction.USER_LIST, "users") as session:
        return [s.UserOut.model_validate(u) for u in await UserRepository(session).list()]


@router.patch(
    "/users/{user_id}",
    response_model=s.UserOut,
    summary="Change a user's role or status (admin)",
    responses={**error_responses(404), **LAST_ADMIN_RESPONSE},
)
async def update_user(
    request: Request, user_id: Id, body: s.UserUpdate, principal: Caller, cms: Cms
) -> s.UserOut:
    target = f"user:{user_id}"
    async with cms.write(request, principal, AuditAction.USER_UPDATE, target, permission=PERMISSION) as w:
        repo = UserRepository(w.session)
        before = await repo.get(user_id)
        if before is None:
            raise NotFound(f"no user {user_id}", code="user_not_found")
        after = await repo.update(user_id, **body.model_dump(exclude_unset=True))
        if body.active is False or (body.role and body.role != before.role):
            await RefreshTokenRepository(w.session).revoke_all(user_id)
        w.before = {"role": before.role, "active": before.active}
        w.after = {"role": after.role, "active": after.active}
    return s.UserOut.model_validate(after)


@router.delete(
    "/users/{user_id}",
    status_code=204,
    summary="Delete a user; the items it wrote stay (admin)",
    responses={**error_responses(404), **LAST_ADMIN_RESPONSE},
)
async def delete_user(request: Request, user_id: Id, principal: Caller, cms: Cms) -> Response:
    target = f"user:{user_id}"
    async with cms.write(request, principal, AuditAction.USER_DELETE, target, permission=PERMISSION) as w:
        user = await UserRepository(w.session).delete(user_id)
        w.before = {"email": user.email, "role": user.role, "active": user.active}
    return Response(status_code=204)
