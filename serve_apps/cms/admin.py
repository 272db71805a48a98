"""CMS routes for accounts and administration: login and tokens, users, API keys, categories and tags,
webhooks and the audit log (mixed into ``CmsIngress``)."""

import asyncio
import logging
import secrets
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response

from cluster.ground.passwords import (
    PasswordPolicyError,
    check_password_policy,
    hash_password,
    verify_password,
)
from cluster.ground.webhook_targets import refusal as webhook_refusal
from serve_apps.cms import schemas as s
from serve_apps.cms.base import CmsBase, api, current_principal
from serve_apps.cms.permissions import decide
from serve_apps.cms.security import InvalidToken, Principal
from serve_apps.errors import (
    ErrorResponse,
    InvalidRequest,
    NotFound,
    RateLimited,
    Unauthorized,
    error_responses,
)
from serve_apps.inputs import MAX_ID, Id
from storage.cms_audit import list_audit, record_audit
from storage.cms_content import TaxonomyRepository
from storage.cms_events import DeliveryRepository, WebhookRepository
from storage.cms_users import ApiKeyRepository, RefreshTokenRepository, UserRepository
from storage.errors import LastAdmin

logger = logging.getLogger(__name__)

#: OpenAPI entry of the 409 that the last-admin rule answers.
LAST_ADMIN_RESPONSE: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorResponse, "description": "the user is the last active admin (code last_admin)"}
}


def _webhook_fields(hook: Any) -> dict[str, Any]:
    return {
        "id": hook.id,
        "url": hook.url,
        "events": hook.events,
        "active": hook.active,
        "created_at": hook.created_at,
    }


def _key_fields(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "role": row.role,
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
        "revoked_at": row.revoked_at,
    }


class AdminRoutes(CmsBase):
    # ------------------------------------------------------------------------------------- auth
    async def _bootstrap_admin(self) -> None:
        """Create the configured first admin when the CMS has no admin (once per replica, idempotent)."""
        if self._bootstrapped or not self._args.admin_password:
            return
        async with self._sessions() as session, session.begin():
            users = UserRepository(session)
            if await users.count(role="admin") == 0 and await users.by_email(self._args.admin_email) is None:
                password_hash = await asyncio.to_thread(hash_password, self._args.admin_password)
                user = await users.create(self._args.admin_email, "Admin", password_hash, "admin")
                await record_audit(
                    session, actor="system:bootstrap", action="user.create", target=f"user:{user.id}"
                )
                logger.info("created the first CMS admin %s", user.email)
        self._bootstrapped = True

    @api.post("/auth/login", response_model=s.Tokens, summary="Exchange email and password for tokens")
    async def login(self, request: Request, body: s.Login) -> s.Tokens:
        await self._bootstrap_admin()
        retry = self._limits.check(None, self._ip(request))
        if retry is not None:
            raise RateLimited(retry.message, retry_after_s=retry.seconds)
        async with self._sessions() as session, session.begin():
            creds = await UserRepository(session).credentials(body.email)
            ok = (
                creds is not None
                and creds.user.active
                and await asyncio.to_thread(verify_password, creds.password_hash, body.password)
            )
            if not ok or creds is None:
                await record_audit(
                    session,
                    actor="anonymous",
                    ip=self._ip(request),
                    action="auth.login",
                    target=f"email:{body.email.lower()}",
                    outcome="denied",
                    reason="wrong email or password, or inactive user",
                )
        if not ok or creds is None:
            raise Unauthorized("wrong email or password (or the user is deactivated)")
        return await self._issue(creds.user.id, creds.user.role)

    async def _issue(self, user_id: int, role: str) -> s.Tokens:
        refresh, jti, expires_at = self._tokens.refresh_token(user_id)
        async with self._sessions() as session, session.begin():
            await RefreshTokenRepository(session).issue(jti, user_id, expires_at)
        return s.Tokens(
            access_token=self._tokens.access_token(user_id, role),
            refresh_token=refresh,
            expires_in=self._args.access_ttl_s,
        )

    @api.post("/auth/refresh", response_model=s.Tokens, summary="Rotate a refresh token into new tokens")
    async def refresh(self, body: s.Refresh) -> s.Tokens:
        try:
            user_id, jti = self._tokens.decode_refresh(body.refresh_token)
        except InvalidToken as exc:
            raise Unauthorized(f"refresh token {exc.reason}; log in again") from exc
        async with self._sessions() as session, session.begin():
            owner = await RefreshTokenRepository(session).consume(jti)
            user = await UserRepository(session).get(user_id) if owner == user_id else None
        if user is None or not user.active:
            raise Unauthorized("refresh token already used, revoked or expired; log in again")
        return await self._issue(user.id, user.role)

    @api.post("/auth/logout", status_code=204, summary="Revoke every refresh token of the caller")
    async def logout(self, principal: Annotated[Principal, Depends(current_principal)]) -> Response:
        if principal.kind != "user" or principal.id is None:
            raise Unauthorized("log in first: logout ends a user's sessions")
        async with self._sessions() as session, session.begin():
            await RefreshTokenRepository(session).revoke_all(principal.id)
        return Response(status_code=204)

    # ----------------------------------------------------------------------------------- taxonomy
    @api.post(
        "/categories",
        response_model=s.TaxonomyOut,
        status_code=201,
        summary="Create a category",
        responses=error_responses(409),
    )
    async def create_category(
        self, request: Request, body: s.Taxonomy, principal: Annotated[Principal, Depends(current_principal)]
    ) -> s.TaxonomyOut:
        return await self._create_taxonomy(request, "category", body, principal)

    @api.post(
        "/tags",
        response_model=s.TaxonomyOut,
        status_code=201,
        summary="Create a tag",
        responses=error_responses(409),
    )
    async def create_tag(
        self, request: Request, body: s.Taxonomy, principal: Annotated[Principal, Depends(current_principal)]
    ) -> s.TaxonomyOut:
        return await self._create_taxonomy(request, "tag", body, principal)

    async def _create_taxonomy(
        self, request: Request, kind: str, body: s.Taxonomy, principal: Principal
    ) -> s.TaxonomyOut:
        await self._allow(
            request, principal, decide(principal.role, "taxonomy.manage"), f"{kind}.create", kind
        )
        if not (body.slug or body.name_en or body.name_ar):
            raise InvalidRequest(f"a {kind} needs a slug or a name (name_en or name_ar)")
        async with self._sessions() as session, session.begin():
            row = await TaxonomyRepository(session).create(
                kind, slug=body.slug, name_en=body.name_en, name_ar=body.name_ar
            )
            await record_audit(
                session,
                actor=principal.label,
                ip=self._ip(request),
                action=f"{kind}.create",
                target=f"{kind}:{row['id']}",
                after=row,
            )
        return s.TaxonomyOut(**row)

    @api.get("/categories", response_model=list[s.TaxonomyOut], summary="Every category")
    async def categories(
        self, principal: Annotated[Principal, Depends(current_principal)]
    ) -> list[s.TaxonomyOut]:
        async with self._sessions() as session:
            return [s.TaxonomyOut(**r) for r in await TaxonomyRepository(session).list("category")]

    @api.get("/tags", response_model=list[s.TaxonomyOut], summary="Every tag")
    async def tags(self, principal: Annotated[Principal, Depends(current_principal)]) -> list[s.TaxonomyOut]:
        async with self._sessions() as session:
            return [s.TaxonomyOut(**r) for r in await TaxonomyRepository(session).list("tag")]

    # ------------------------------------------------------------------------------ users and keys
    @api.post(
        "/users",
        response_model=s.UserOut,
        status_code=201,
        summary="Create a user (admin)",
        responses=error_responses(409),
    )
    async def create_user(
        self,
        request: Request,
        body: s.UserCreate,
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> s.UserOut:
        await self._admin(request, principal, "user.create", f"email:{body.email.lower()}")
        try:
            check_password_policy(body.password)
        except PasswordPolicyError as exc:
            raise InvalidRequest(f"password: {exc}") from exc
        password_hash = await asyncio.to_thread(hash_password, body.password)
        async with self._sessions() as session, session.begin():
            user = await UserRepository(session).create(
                body.email, body.display_name, password_hash, body.role
            )
            await record_audit(
                session,
                actor=principal.label,
                ip=self._ip(request),
                action="user.create",
                target=f"user:{user.id}",
                after={"email": user.email, "role": user.role},
            )
        return s.UserOut(**user.__dict__)

    @api.get("/users", response_model=list[s.UserOut], summary="Every user (admin)")
    async def users(
        self, request: Request, principal: Annotated[Principal, Depends(current_principal)]
    ) -> list[s.UserOut]:
        await self._admin(request, principal, "user.list", "users")
        async with self._sessions() as session:
            return [s.UserOut(**u.__dict__) for u in await UserRepository(session).list()]

    @api.patch(
        "/users/{user_id}",
        response_model=s.UserOut,
        summary="Change a user's role or status (admin)",
        responses={**error_responses(404), **LAST_ADMIN_RESPONSE},
    )
    async def update_user(
        self,
        request: Request,
        user_id: Id,
        body: s.UserUpdate,
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> s.UserOut:
        await self._admin(request, principal, "user.update", f"user:{user_id}")
        try:
            async with self._sessions() as session, session.begin():
                repo = UserRepository(session)
                before = await repo.get(user_id)
                if before is None:
                    raise NotFound(f"no user {user_id}", code="user_not_found")
                after = await repo.update(user_id, **body.model_dump(exclude_unset=True))
                if body.active is False or (body.role and body.role != before.role):
                    await RefreshTokenRepository(session).revoke_all(user_id)
                await record_audit(
                    session,
                    actor=principal.label,
                    ip=self._ip(request),
                    action="user.update",
                    target=f"user:{user_id}",
                    before={"role": before.role, "active": before.active},
                    after={"role": after.role, "active": after.active},
                )
        except LastAdmin as exc:
            await self._audit_last_admin(request, principal, "user.update", exc)
            raise
        return s.UserOut(**after.__dict__)

    @api.delete(
        "/users/{user_id}",
        status_code=204,
        summary="Delete a user; the items it wrote stay (admin)",
        responses={**error_responses(404), **LAST_ADMIN_RESPONSE},
    )
    async def delete_user(
        self,
        request: Request,
        user_id: Id,
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Response:
        await self._admin(request, principal, "user.delete", f"user:{user_id}")
        try:
            async with self._sessions() as session, session.begin():
                user = await UserRepository(session).delete(user_id)
                await record_audit(
                    session,
                    actor=principal.label,
                    ip=self._ip(request),
                    action="user.delete",
                    target=f"user:{user_id}",
                    before={"email": user.email, "role": user.role, "active": user.active},
                )
        except LastAdmin as exc:
            await self._audit_last_admin(request, principal, "user.delete", exc)
            raise
        return Response(status_code=204)

    async def _audit_last_admin(
        self, request: Request, principal: Principal, action: str, exc: LastAdmin
    ) -> None:
        """Audit-log a change that the last-admin rule refused (the change itself was rolled back)."""
        async with self._sessions() as session, session.begin():
            await record_audit(
                session,
                actor=principal.label,
                ip=self._ip(request),
                action=action,
                target=f"user:{exc.user_id}",
                outcome="denied",
                reason=str(exc),
            )

    @api.post("/keys", response_model=s.KeyCreated, status_code=201, summary="Create an API key (shown once)")
    async def create_key(
        self, request: Request, body: s.KeyCreate, principal: Annotated[Principal, Depends(current_principal)]
    ) -> s.KeyCreated:
        await self._admin(request, principal, "key.create", f"key:{body.name}")
        async with self._sessions() as session, session.begin():
            row, plaintext = await ApiKeyRepository(session).create(
                body.name, body.role, principal.id if principal.kind == "user" else None
            )
            await record_audit(
                session,
                actor=principal.label,
                ip=self._ip(request),
                action="key.create",
                target=f"key:{row.id}",
                after={"name": row.name, "role": row.role, "prefix": row.prefix},
            )
        return s.KeyCreated(key=plaintext, **_key_fields(row))

    @api.get("/keys", response_model=list[s.KeyOut], summary="Every API key, without the keys (admin)")
    async def keys(
        self, request: Request, principal: Annotated[Principal, Depends(current_principal)]
    ) -> list[s.KeyOut]:
        await self._admin(request, principal, "key.list", "keys")
        async with self._sessions() as session:
            return [s.KeyOut(**_key_fields(k)) for k in await ApiKeyRepository(session).list()]

    @api.delete(
        "/keys/{key_id}",
        status_code=204,
        summary="Revoke an API key (admin)",
        responses=error_responses(404),
    )
    async def revoke_key(
        self,
        request: Request,
        key_id: Id,
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Response:
        await self._admin(request, principal, "key.revoke", f"key:{key_id}")
        async with self._sessions() as session, session.begin():
            if await ApiKeyRepository(session).get(key_id) is None:
                raise NotFound(f"no API key {key_id}", code="key_not_found")
            await ApiKeyRepository(session).revoke(key_id)
            await record_audit(
                session,
                actor=principal.label,
                ip=self._ip(request),
                action="key.revoke",
                target=f"key:{key_id}",
            )
        return Response(status_code=204)

    @api.get("/audit", response_model=list[s.AuditOut], summary="The audit log, newest first (admin)")
    async def audit(
        self,
        request: Request,
        principal: Annotated[Principal, Depends(current_principal)],
        target: Annotated[str | None, Query(max_length=200)] = None,
        actor: Annotated[str | None, Query(max_length=200)] = None,
        outcome: Annotated[str | None, Query(pattern="^(ok|denied)$")] = None,
        before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[s.AuditOut]:
        await self._admin(request, principal, "audit.read", "audit")
        async with self._sessions() as session:
            rows = await list_audit(
                session, target=target, actor=actor, outcome=outcome, before_id=before_id, limit=limit
            )
        return [s.AuditOut(**r.__dict__) for r in rows]

    # ----------------------------------------------------------------------------------- webhooks
    @api.post(
        "/webhooks", response_model=s.WebhookCreated, status_code=201, summary="Subscribe a URL (admin)"
    )
    async def create_webhook(
        self,
        request: Request,
        body: s.WebhookCreate,
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> s.WebhookCreated:
        await self._allow(
            request, principal, decide(principal.role, "webhook.manage"), "webhook.create", "webhooks"
        )
        if not self._args.webhook_private_targets:
            refused = await webhook_refusal(body.url)
            if refused is not None:
                raise InvalidRequest(f"url: {refused}")
        secret = body.secret or secrets.token_urlsafe(32)
        async with self._sessions() as session, session.begin():
            hook = await WebhookRepository(session).create(body.url, secret, body.events)
            await record_audit(
                session,
                actor=principal.label,
                ip=self._ip(request),
                action="webhook.create",
                target=f"webhook:{hook.id}",
                after={"url": hook.url, "events": hook.events},
            )
        return s.WebhookCreated(secret=secret, **_webhook_fields(hook))

    @api.get("/webhooks", response_model=list[s.WebhookOut], summary="Every webhook, without secrets (admin)")
    async def webhooks(
        self, request: Request, principal: Annotated[Principal, Depends(current_principal)]
    ) -> list[s.WebhookOut]:
        await self._allow(
            request, principal, decide(principal.role, "webhook.manage"), "webhook.list", "webhooks"
        )
        async with self._sessions() as session:
            return [s.WebhookOut(**_webhook_fields(h)) for h in await WebhookRepository(session).list()]

    @api.delete(
        "/webhooks/{webhook_id}",
        status_code=204,
        summary="Unsubscribe (admin)",
        responses=error_responses(404),
    )
    async def delete_webhook(
        self,
        request: Request,
        webhook_id: Id,
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Response:
        target = f"webhook:{webhook_id}"
        await self._allow(
            request, principal, decide(principal.role, "webhook.manage"), "webhook.delete", target
        )
        async with self._sessions() as session, session.begin():
            if await WebhookRepository(session).get(webhook_id) is None:
                raise NotFound(f"no webhook {webhook_id}", code="webhook_not_found")
            await WebhookRepository(session).delete(webhook_id)
            await record_audit(
                session, actor=principal.label, ip=self._ip(request), action="webhook.delete", target=target
            )
        return Response(status_code=204)

    @api.get(
        "/webhooks/{webhook_id}/deliveries",
        response_model=list[s.DeliveryOut],
        summary="The delivery log of a webhook, newest first (admin)",
        responses=error_responses(404),
    )
    async def deliveries(
        self,
        request: Request,
        webhook_id: Id,
        principal: Annotated[Principal, Depends(current_principal)],
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[s.DeliveryOut]:
        target = f"webhook:{webhook_id}"
        await self._allow(request, principal, decide(principal.role, "webhook.manage"), "webhook.log", target)
        async with self._sessions() as session:
            if await WebhookRepository(session).get(webhook_id) is None:
                raise NotFound(f"no webhook {webhook_id}", code="webhook_not_found")
            rows = await DeliveryRepository(session).log(webhook_id, limit)
        return [s.DeliveryOut(**r.__dict__) for r in rows]

    @api.get("/healthz", summary="Liveness")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}
