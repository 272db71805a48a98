"""Login, token refresh (rotation, with reuse detection) and logout; the configured first admin is created
on first login."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response

from cluster.ground.passwords import hash_password, verify_password
from serve_apps.cms import schemas as s
from serve_apps.cms.context import CmsContext
from serve_apps.cms.deps import Caller, Cms
from serve_apps.cms.security import InvalidToken, Principal
from serve_apps.errors import Unauthorized
from storage.cms_actions import AuditAction
from storage.cms_audit import record_audit
from storage.cms_users import RefreshTokenRepository, UserRepository

logger = logging.getLogger(__name__)

router = APIRouter()


async def bootstrap_admin(cms: CmsContext) -> None:
    """Create the configured first admin when the CMS has no admin (once per replica, idempotent)."""
    if cms.bootstrapped or not cms.args.admin_password:
        return
    async with cms.sessions() as session, session.begin():
        users = UserRepository(session)
        if await users.count(role="admin") == 0 and await users.by_email(cms.args.admin_email) is None:
            password_hash = await asyncio.to_thread(hash_password, cms.args.admin_password)
            user = await users.create(cms.args.admin_email, "Admin", password_hash, "admin")
            await record_audit(
                session, actor="system:bootstrap", action=AuditAction.USER_CREATE, target=f"user:{user.id}"
            )
            logger.info("created the first CMS admin %s", user.email)
    cms.bootstrapped = True


async def issue(cms: CmsContext, user_id: int, role: str) -> s.Tokens:
    refresh, jti, expires_at = cms.tokens.refresh_token(user_id)
    async with cms.sessions() as session, session.begin():
        await RefreshTokenRepository(session).issue(jti, user_id, expires_at)
    return s.Tokens(
        access_token=cms.tokens.access_token(user_id, role),
        refresh_token=refresh,
        expires_in=cms.args.access_ttl_s,
    )


@router.post("/auth/login", response_model=s.Tokens, summary="Exchange email and password for tokens")
async def login(request: Request, body: s.Login, cms: Cms) -> s.Tokens:
    await bootstrap_admin(cms)
    cms.check_rate(Principal.anonymous(), cms.ip(request))
    async with cms.sessions() as session:
        creds = await UserRepository(session).credentials(body.email)
    ok = (
        creds is not None
        and creds.user.active
        and await asyncio.to_thread(verify_password, creds.password_hash, body.password)
    )
    if not ok or creds is None:
        await cms.audit_denied(
            request,
            "anonymous",
            AuditAction.AUTH_LOGIN,
            f"email:{body.email.lower()}",
            "wrong email or password, or inactive user",
        )
        raise Unauthorized("wrong email or password (or the user is deactivated)")
    return await issue(cms, creds.user.id, creds.user.role)


@router.post("/auth/refresh", response_model=s.Tokens, summary="Rotate a refresh token into new tokens")
async def refresh(body: s.Refresh, cms: Cms) -> s.Tokens:
    """Each refresh token works once. One used again (already rotated, or logged out) is refused and
    revokes every refresh token of its user: whoever copied it and the user both log in again."""
    try:
        user_id, jti = cms.tokens.decode_refresh(body.refresh_token)
    except InvalidToken as exc:
        raise Unauthorized(f"refresh token {exc.reason}; log in again") from exc
    async with cms.sessions() as session, session.begin():
        tokens = RefreshTokenRepository(session)
        owner = await tokens.consume(jti)
        user = await UserRepository(session).get(user_id) if owner == user_id else None
        reused = await tokens.reused(jti) if owner is None else None
        if reused is not None:
            # Reuse detection (OAuth 2.0 Security BCP): a rotated or logged-out token came back, so someone
            # holds a copy; every session of its user ends, the thief's and the user's alike.
            revoked = await tokens.revoke_all(reused)
            logger.warning("refresh token of user %s reused; revoked its %d live tokens", reused, revoked)
    if user is None or not user.active:
        raise Unauthorized("refresh token already used, revoked or expired; log in again")
    return await issue(cms, user.id, user.role)


@router.post("/auth/logout", status_code=204, summary="Revoke every refresh token of the caller")
async def logout(principal: Caller, cms: Cms) -> Response:
    if principal.kind != "user" or principal.id is None:
        raise Unauthorized("log in first: logout ends a user's sessions")
    async with cms.sessions() as session, session.begin():
        await RefreshTokenRepository(session).revoke_all(principal.id)
    return Response(status_code=204)
