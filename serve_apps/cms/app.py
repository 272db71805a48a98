"""The CMS application under ``/v1/cms``: bilingual content, workflow, revisions, auth, bulk, webhooks.

One Serve deployment (``CmsIngress``, FastAPI) on PostgreSQL through ``storage``. Callers are users
(``Authorization: Bearer <access token>`` from ``POST /auth/login``), services (``X-API-Key``) or
anonymous readers of published content. Every action is checked against the permission matrix
(``serve_apps/cms/permissions.py``); a refusal is a 403 naming who may do it, and is audit-logged like
every write. Scheduled publishing, webhooks and the search sync run in the CMS scheduler actor, which
keeps all its state in PostgreSQL (``jobs/cms``).
"""

import asyncio
import base64
import binascii
import json
import logging
import secrets
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request, Response
from pydantic import BaseModel, Field
from ray import serve
from sqlalchemy.ext.asyncio import async_sessionmaker

from actors.cms_scheduler_actor import CmsSchedulerConfig, get_or_create_cms_scheduler
from jobs.cms.scheduler import EmbedCmsDocuments
from jobs.embed.pipeline import EmbedJobConfig
from serve_apps.cms import schemas as s
from serve_apps.cms.limits import BodySizeLimit, RateLimits, html_to_text, sanitize_html
from serve_apps.cms.permissions import Decision, allowed_transitions, decide, transition_action
from serve_apps.cms.security import (
    InvalidToken,
    PasswordPolicyError,
    Principal,
    TokenIssuer,
    check_password_policy,
    hash_password,
    verify_password,
)
from serve_apps.errors import (
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    Unauthorized,
    install_error_handlers,
)
from serve_apps.schemas import ErrorResponse
from serve_apps.search_params import fingerprint
from storage.cms_audit import list_audit, record_audit
from storage.cms_content import ContentRepository, ItemQuery, ItemRow, TaxonomyRepository
from storage.cms_events import DeliveryRepository, WebhookRepository, append_event
from storage.cms_models import LOCALES
from storage.cms_users import ApiKeyRepository, RefreshTokenRepository, UserRepository
from storage.database import make_async_engine
from storage.errors import CmsError

logger = logging.getLogger(__name__)

#: Deepest listing page (items).
MAX_PAGE = 100


class CmsArgs(BaseModel):
    """Builder arguments (``serve run`` / the Serve config's ``args``)."""

    database_url: str
    jwt_secret: str = Field(min_length=32, description="Signs access and refresh tokens")
    access_ttl_s: int = 900
    refresh_ttl_s: int = 1_209_600
    max_body_bytes: int = 1_048_576
    rate_per_key: str = "600/minute"
    rate_per_ip: str = "300/minute"
    max_ongoing_requests: int = 256
    replicas: int = 1
    pool_size: int = 10
    storage_uri: str = Field(default="var/storage", description="Where published items' vectors are written")
    namespace: str = "pulse"
    public_base_url: str = "https://cms.pulse.local"
    scheduler: bool = Field(default=True, description="Start the CMS scheduler actor (get-or-create)")
    scheduler_interval_s: float = 2.0
    webhook_max_attempts: int = 8
    embed_on_publish: bool = True
    admin_email: str = "admin@pulse.local"
    admin_password: str | None = Field(default=None, description="First admin's password (bootstrap)")


def etag(version: int) -> str:
    return f'"{version}"'


def if_match_version(header: str | None) -> int | None:
    """The version an ``If-Match`` header names (``None``: no header or ``*``); 422 when malformed."""
    if header is None or header.strip() == "*":
        return None
    raw = header.strip().removeprefix("W/").strip('"')
    if not raw.isdigit():
        raise InvalidRequest(f'If-Match: expected an ETag such as "3" (from a GET), got {header!r}')
    return int(raw)


def derived(fields: dict[str, Any]) -> dict[str, Any]:
    """Fields as stored: SEO as a dict, and the bodies' text for full-text search."""
    out = dict(fields)
    if isinstance(out.get("seo"), BaseModel):
        out["seo"] = out["seo"].model_dump()
    for locale in LOCALES:
        if f"body_{locale}" in out:
            body = out[f"body_{locale}"]
            out[f"body_text_{locale}"] = html_to_text(body) if body else None
    return out


def _view(item: ItemRow, locale: str) -> s.LocaleView:
    f = item.fields
    body = f.get(f"body_{locale}")
    return s.LocaleView(
        title=f.get(f"title_{locale}"),
        summary=f.get(f"summary_{locale}"),
        body=sanitize_html(body) if body else None,
        slug=f.get(f"slug_{locale}"),
    )


def item_out(item: ItemRow, principal: Principal, locale: str | None = None) -> s.ItemOut:
    en, ar = _view(item, "en"), _view(item, "ar")
    localized = None
    if locale is not None:
        mine, other = (en, ar) if locale == "en" else (ar, en)
        values: dict[str, Any] = {}
        fallbacks = []
        for name in ("title", "summary", "body", "slug"):
            value = getattr(mine, name)
            if not value and getattr(other, name):
                value = getattr(other, name)
                fallbacks.append(name)
            values[name] = value
        localized = s.Localized(locale=locale, fallbacks=fallbacks, **values)  # type: ignore[arg-type]
    owner = principal.kind == "user" and principal.id == item.author_id
    return s.ItemOut(
        id=item.id,
        type=item.type,
        status=item.status,  # type: ignore[arg-type]
        author_id=item.author_id,
        category=item.category,
        tags=list(item.tags),
        en=en,
        ar=ar,
        featured_image_url=item.fields.get("featured_image_url"),
        seo=item.fields.get("seo") or {},
        publish_at=item.publish_at,
        unpublish_at=item.unpublish_at,
        published_at=item.published_at,
        version=item.version,
        created_at=item.created_at,
        updated_at=item.updated_at,
        allowed_transitions=allowed_transitions(principal.role, item.status, owner),
        localized=localized,
    )


class BulkRolledBack(InvalidRequest):
    """A bulk request with failing items: nothing was changed (HTTP 409, each failure in details)."""

    status_code = 409
    code = "bulk_rolled_back"

    def __init__(self, failed: int, total: int, details: list[dict[str, Any]]) -> None:
        super().__init__(
            f"{failed} of {total} items failed; nothing was changed (all or nothing). Fix them and resend",
            details=details,
        )


def _expected_bulk_error(exc: Exception) -> bool:
    return isinstance(exc, CmsError)


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


def _encode_keyset(after: tuple[Any, int], digest: str) -> str:
    """An opaque cursor: the last row's sort value and id, bound to the query that produced it."""
    value, last_id = after
    kind = "datetime" if isinstance(value, datetime) else "float" if isinstance(value, float) else "str"
    raw = value.isoformat() if isinstance(value, datetime) else value
    data = json.dumps(
        {"k": kind, "v": raw, "i": last_id, "f": digest}, separators=(",", ":"), ensure_ascii=False
    )
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


def _decode_keyset(token: str, digest: str) -> tuple[Any, int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        kind, raw, last_id, stamp = data["k"], data["v"], int(data["i"]), str(data["f"])
        value: Any = (
            datetime.fromisoformat(raw) if kind == "datetime" else float(raw) if kind == "float" else str(raw)
        )
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidRequest("cursor: malformed; pass next_cursor of the previous page as is") from exc
    if stamp != digest:
        raise InvalidRequest("cursor: it belongs to another listing; send the same filters, sort and limit")
    return value, last_id


api = FastAPI(
    title="Pulse CMS API",
    version="0.1.0",
    description="Bilingual (Arabic/English) headless CMS: content, workflow, revisions, bulk, webhooks.",
    responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
)
install_error_handlers(api)


class ConfiguredBodySizeLimit(BodySizeLimit):
    """``BodySizeLimit`` with the replica's configured limit (``app.state.max_body_bytes``): Serve builds
    the middleware stack before the deployment's constructor runs, so the limit is read per request."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        app = scope.get("app")
        limit = getattr(getattr(app, "state", None), "max_body_bytes", None)
        if limit:
            self.max_bytes = int(limit)
        await super().__call__(scope, receive, send)


#: Request bodies over the limit are refused with 413 before they reach a route (chunked ones too).
api.add_middleware(ConfiguredBodySizeLimit, max_bytes=1_048_576)


async def current_principal(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Principal:
    """FastAPI dependency: the caller, resolved by the replica's ingress (``CmsIngress.principal``)."""
    ingress: CmsIngress = request.app.state.cms
    return await ingress.principal(request, authorization, x_api_key)


@serve.ingress(api)
class CmsIngress:
    def __init__(self, args: dict[str, Any]) -> None:
        self._args = CmsArgs.model_validate(args)
        api.state.max_body_bytes = self._args.max_body_bytes
        api.state.cms = self
        self._engine = make_async_engine(self._args.database_url, pool_size=self._args.pool_size)
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
        self._tokens = TokenIssuer(
            self._args.jwt_secret,
            access_ttl_s=self._args.access_ttl_s,
            refresh_ttl_s=self._args.refresh_ttl_s,
        )
        self._limits = RateLimits(per_key=self._args.rate_per_key, per_ip=self._args.rate_per_ip)
        self._scheduler = self._start_scheduler() if self._args.scheduler else None
        self._bootstrapped = False

    def _start_scheduler(self) -> Any:
        """The detached scheduler actor (one per namespace): scheduled publishing, webhooks, search sync."""
        a = self._args
        embed = EmbedCmsDocuments(
            job=EmbedJobConfig(database_url=a.database_url, storage_uri=a.storage_uri, model_name="default"),
            namespace=a.namespace,
        )
        config = CmsSchedulerConfig(
            database_url=a.database_url,
            public_base_url=a.public_base_url,
            namespace=a.namespace,
            interval_s=a.scheduler_interval_s,
            embed=a.embed_on_publish,
            max_attempts=a.webhook_max_attempts,
        )
        return get_or_create_cms_scheduler(config, embed if a.embed_on_publish else None)

    # ----------------------------------------------------------------------------- who is calling
    async def principal(
        self, request: Request, authorization: str | None, x_api_key: str | None
    ) -> Principal:
        ip = request.client.host if request.client else None
        who = Principal.anonymous()
        if x_api_key:
            async with self._sessions() as session, session.begin():
                key = await ApiKeyRepository(session).authenticate(x_api_key)
            if key is None:
                raise Unauthorized("X-API-Key: unknown or revoked key; ask an admin for a new one")
            who = Principal("key", key.id, key.role)
        elif authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise Unauthorized(
                    "Authorization: expected `Bearer <access token>` (POST /v1/cms/auth/login)"
                )
            try:
                who = self._tokens.decode_access(token.strip())
            except InvalidToken as exc:
                raise Unauthorized(
                    f"access token {exc.reason}; log in again or use your refresh token"
                ) from exc
        retry = self._limits.check(None if who.kind == "anonymous" else who.label, ip)
        if retry is not None:
            raise RateLimited(retry.message, retry_after_s=retry.seconds)
        return who

    async def _allow(
        self, request: Request, principal: Principal, decision: Decision, action: str, target: str
    ) -> None:
        """Raise 403 (401 for an anonymous caller), audit-logged, unless ``decision`` allows."""
        if decision.allowed:
            return
        async with self._sessions() as session, session.begin():
            await record_audit(
                session,
                actor=principal.label,
                ip=request.client.host if request.client else None,
                action=action,
                target=target,
                outcome="denied",
                reason=decision.reason,
            )
        if principal.kind == "anonymous":
            raise Unauthorized(f"log in or send an API key: {decision.reason}")
        raise Forbidden(decision.reason)

    @staticmethod
    def _ip(request: Request) -> str | None:
        return request.client.host if request.client else None

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

    # ------------------------------------------------------------------------------------ items
    @api.post("/items", response_model=s.ItemOut, status_code=201, summary="Create a draft")
    async def create_item(
        self,
        request: Request,
        response: Response,
        body: s.ItemCreate,
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> s.ItemOut:
        await self._allow(
            request, principal, decide(principal.role, "item.create"), "item.create", "item:new"
        )
        fields = body.model_dump(exclude_unset=True)
        if fields.get("publish_at") or fields.get("unpublish_at"):
            await self._allow(
                request, principal, decide(principal.role, "item.schedule"), "item.schedule", "item:new"
            )
        async with self._sessions() as session, session.begin():
            item = await ContentRepository(session).create(
                derived(fields),
                actor=principal.label,
                author_id=principal.id if principal.kind == "user" else None,
                ip=self._ip(request),
            )
        response.headers["ETag"] = etag(item.version)
        response.headers["Location"] = f"/v1/cms/items/{item.id}"
        return item_out(item, principal)

    async def _readable(self, request: Request, principal: Principal, item_id: int) -> ItemRow:
        async with self._sessions() as session:
            item = await ContentRepository(session).get(item_id)
        if item is None:
            raise NotFound(f"no item {item_id}", code="item_not_found")
        owner = principal.kind == "user" and principal.id == item.author_id
        decision = decide(principal.role, "item.read", owner=owner, status=item.status, item_id=item_id)
        if not decision.allowed and principal.kind == "anonymous":
            raise NotFound(f"no item {item_id}", code="item_not_found")  # do not reveal drafts' existence
        await self._allow(request, principal, decision, "item.read", f"item:{item_id}")
        return item

    @api.get("/items/{item_id}", response_model=s.ItemOut, summary="One item (ETag = its version)")
    async def get_item(
        self,
        request: Request,
        response: Response,
        item_id: Annotated[int, Path(ge=1)],
        principal: Annotated[Principal, Depends(current_principal)],
        locale: Annotated[
            s.Locale | None, Query(description="Add a view in this locale, with fallback")
        ] = None,
    ) -> s.ItemOut:
        item = await self._readable(request, principal, item_id)
        response.headers["ETag"] = etag(item.version)
        return item_out(item, principal, locale)

    @api.get("/items", response_model=s.ItemPageOut, summary="List and search items")
    async def list_items(
        self,
        principal: Annotated[Principal, Depends(current_principal)],
        q: Annotated[
            str | None, Query(max_length=500, description="Full-text query (websearch syntax)")
        ] = None,
        locale: Annotated[s.Locale | None, Query(description="Search and show this locale")] = None,
        status: Annotated[list[s.Status], Query()] = [],  # noqa: B006
        type: Annotated[str | None, Query(pattern="^(article|page)$")] = None,
        category: Annotated[str | None, Query(max_length=100)] = None,
        tag: Annotated[str | None, Query(max_length=100)] = None,
        author: Annotated[int | None, Query(ge=1)] = None,
        since: Annotated[datetime | None, Query(description="Updated at or after")] = None,
        until: Annotated[datetime | None, Query(description="Updated before")] = None,
        sort: Annotated[
            str, Query(pattern="^(updated_at|created_at|published_at|title|relevance)$")
        ] = "updated_at",
        order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
        cursor: Annotated[str | None, Query()] = None,
    ) -> s.ItemPageOut:
        if sort == "relevance" and not q:
            raise InvalidRequest("sort: relevance needs a query (q)")
        statuses = tuple(status)
        visible_to_author = None
        if principal.role in (None, "viewer"):
            statuses = ("published",)  # anonymous callers and viewers read published content only
        elif principal.role == "author":
            visible_to_author = principal.id if principal.kind == "user" else -1
        digest = fingerprint(
            q, locale, statuses, type, category, tag, author, since, until, sort, order, limit
        )
        after = None
        if cursor is not None:
            after = _decode_keyset(cursor, digest)
        query = ItemQuery(
            q=q,
            locale=locale,
            statuses=statuses,
            type=type,
            category=category,
            tag=tag,
            author_id=author,
            since=since,
            until=until,
            sort=sort,
            descending=order == "desc",
            limit=limit,
            after=after,
            visible_to_author=visible_to_author,
        )
        async with self._sessions() as session:
            page = await ContentRepository(session).search(query)
        next_cursor = _encode_keyset(page.next_after, digest) if page.next_after else None
        return s.ItemPageOut(
            items=[item_out(i, principal, locale) for i in page.items], next_cursor=next_cursor
        )

    async def _write_check(
        self, request: Request, principal: Principal, item: ItemRow, action: str, fields: dict[str, Any]
    ) -> None:
        owner = principal.kind == "user" and principal.id == item.author_id
        decision = decide(principal.role, action, owner=owner, status=item.status, item_id=item.id)
        await self._allow(request, principal, decision, action, f"item:{item.id}")
        scheduling = {"publish_at", "unpublish_at"} & set(fields)
        if scheduling:
            decision = decide(principal.role, "item.schedule", item_id=item.id)
            await self._allow(request, principal, decision, "item.schedule", f"item:{item.id}")

    async def _update(
        self,
        request: Request,
        response: Response,
        principal: Principal,
        item_id: int,
        fields: dict[str, Any],
        if_match: str | None,
    ) -> s.ItemOut:
        expected = if_match_version(if_match)
        item = await self._readable(request, principal, item_id)
        await self._write_check(request, principal, item, "item.update", fields)
        async with self._sessions() as session, session.begin():
            _, after = await ContentRepository(session).update(
                item_id,
                derived(fields),
                actor=principal.label,
                expected_version=expected,
                ip=self._ip(request),
            )
        response.headers["ETag"] = etag(after.version)
        return item_out(after, principal)

    @api.patch(
        "/items/{item_id}", response_model=s.ItemOut, summary="Change some fields (If-Match: the ETag)"
    )
    async def patch_item(
        self,
        request: Request,
        response: Response,
        item_id: Annotated[int, Path(ge=1)],
        body: s.ItemFields,
        principal: Annotated[Principal, Depends(current_principal)],
        if_match: Annotated[str | None, Header()] = None,
    ) -> s.ItemOut:
        return await self._update(
            request, response, principal, item_id, body.model_dump(exclude_unset=True), if_match
        )

    @api.put("/items/{item_id}", response_model=s.ItemOut, summary="Replace every editable field (If-Match)")
    async def put_item(
        self,
        request: Request,
        response: Response,
        item_id: Annotated[int, Path(ge=1)],
        body: s.ItemCreate,
        principal: Annotated[Principal, Depends(current_principal)],
        if_match: Annotated[str | None, Header()] = None,
    ) -> s.ItemOut:
        fields = body.model_dump()
        fields["tags"] = fields["tags"] or []
        fields["seo"] = fields["seo"] or {}
        fields["type"] = fields["type"] or "article"
        return await self._update(request, response, principal, item_id, fields, if_match)

    @api.delete("/items/{item_id}", status_code=204, summary="Delete an item and its history")
    async def delete_item(
        self,
        request: Request,
        item_id: Annotated[int, Path(ge=1)],
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Response:
        item = await self._readable(request, principal, item_id)
        await self._write_check(request, principal, item, "item.delete", {})
        async with self._sessions() as session, session.begin():
            await ContentRepository(session).delete(item_id, actor=principal.label, ip=self._ip(request))
        return Response(status_code=204)

    @api.post("/items/{item_id}/transition", response_model=s.ItemOut, summary="Move an item in the workflow")
    async def transition(
        self,
        request: Request,
        response: Response,
        item_id: Annotated[int, Path(ge=1)],
        body: s.TransitionIn,
        principal: Annotated[Principal, Depends(current_principal)],
        if_match: Annotated[str | None, Header()] = None,
    ) -> s.ItemOut:
        expected = if_match_version(if_match)
        item = await self._readable(request, principal, item_id)
        owner = principal.kind == "user" and principal.id == item.author_id
        action = transition_action(item.status, body.to)
        await self._allow(
            request,
            principal,
            decide(principal.role, action, owner=owner, item_id=item_id),
            action,
            f"item:{item_id}",
        )
        async with self._sessions() as session, session.begin():
            _, after = await ContentRepository(session).transition(
                item_id, body.to, actor=principal.label, expected_version=expected, ip=self._ip(request)
            )
        response.headers["ETag"] = etag(after.version)
        return item_out(after, principal)

    # -------------------------------------------------------------------------------- revisions
    async def _history_check(
        self, request: Request, principal: Principal, item_id: int, action: str
    ) -> ItemRow:
        item = await self._readable(request, principal, item_id)
        owner = principal.kind == "user" and principal.id == item.author_id
        decision = decide(principal.role, action, owner=owner, status=item.status, item_id=item_id)
        await self._allow(request, principal, decision, action, f"item:{item_id}")
        return item

    @api.get("/items/{item_id}/revisions", response_model=list[s.RevisionOut], summary="Every saved version")
    async def revisions(
        self,
        request: Request,
        item_id: Annotated[int, Path(ge=1)],
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> list[s.RevisionOut]:
        await self._history_check(request, principal, item_id, "item.revisions")
        async with self._sessions() as session:
            rows = await ContentRepository(session).revisions(item_id)
        return [
            s.RevisionOut(version=r.version, actor=r.actor, note=r.note, created_at=r.created_at, data=r.data)
            for r in rows
        ]

    @api.get(
        "/items/{item_id}/diff", response_model=s.DiffOut, summary="Field-by-field difference of two versions"
    )
    async def diff(
        self,
        request: Request,
        item_id: Annotated[int, Path(ge=1)],
        principal: Annotated[Principal, Depends(current_principal)],
        from_version: Annotated[int, Query(alias="from", ge=1)],
        to_version: Annotated[int, Query(alias="to", ge=1)],
    ) -> s.DiffOut:
        await self._history_check(request, principal, item_id, "item.revisions")
        async with self._sessions() as session:
            repo = ContentRepository(session)
            old, new = await repo.revision(item_id, from_version), await repo.revision(item_id, to_version)
        names = list(dict.fromkeys([*old.data, *new.data]))
        changes = [
            s.FieldChange(field=n, before=old.data.get(n), after=new.data.get(n))
            for n in names
            if old.data.get(n) != new.data.get(n)
        ]
        return s.DiffOut(item_id=item_id, from_version=from_version, to_version=to_version, changes=changes)

    @api.post(
        "/items/{item_id}/revisions/{version}/restore",
        response_model=s.ItemOut,
        summary="Make a past version current again (as a new version)",
    )
    async def restore(
        self,
        request: Request,
        response: Response,
        item_id: Annotated[int, Path(ge=1)],
        version: Annotated[int, Path(ge=1)],
        principal: Annotated[Principal, Depends(current_principal)],
        if_match: Annotated[str | None, Header()] = None,
    ) -> s.ItemOut:
        expected = if_match_version(if_match)
        await self._history_check(request, principal, item_id, "item.restore")
        async with self._sessions() as session, session.begin():
            _, after = await ContentRepository(session).restore(
                item_id, version, actor=principal.label, expected_version=expected, ip=self._ip(request)
            )
        response.headers["ETag"] = etag(after.version)
        return item_out(after, principal)

    # ------------------------------------------------------------------------------------- bulk
    @api.post(
        "/bulk", response_model=s.BulkOut, summary="Create, update, publish or archive many items at once"
    )
    async def bulk(
        self,
        request: Request,
        body: s.BulkIn,
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> s.BulkOut:
        """All or nothing: one transaction; on any failure nothing changes and the error lists each item."""
        await self._allow(request, principal, decide(principal.role, "bulk"), f"bulk.{body.action}", "bulk")
        results: list[s.BulkResult] = []
        failures: list[dict[str, Any]] = []
        ip = self._ip(request)
        async with self._sessions() as session, session.begin():
            repo = ContentRepository(session)
            for index, work in enumerate(body.create or body.items or []):
                try:
                    async with session.begin_nested():
                        item = await self._bulk_one(repo, body.action, work, principal, ip)
                    results.append(
                        s.BulkResult(
                            index=index, id=item.id, ok=True, status=item.status, version=item.version
                        )
                    )
                except Exception as exc:  # reported per item; the whole bulk is rolled back below
                    if not _expected_bulk_error(exc):
                        raise
                    ident = getattr(work, "id", None)
                    results.append(s.BulkResult(index=index, id=ident, ok=False, error=str(exc)))
                    failures.append({"field": f"items[{index}]", "reason": str(exc)})
            if failures:
                await session.rollback()
            else:
                ids = [r.id for r in results if r.id is not None]
                await append_event(
                    session,
                    type=f"bulk.{body.action}",
                    item_ids=ids,
                    payload={
                        "action": body.action,
                        "actor": principal.label,
                        "results": [r.model_dump() for r in results],
                    },
                )
                await record_audit(
                    session,
                    actor=principal.label,
                    ip=ip,
                    action=f"bulk.{body.action}",
                    target="bulk",
                    after={"items": ids},
                )
        if failures:
            raise BulkRolledBack(len(failures), len(results), failures)
        return s.BulkOut(action=body.action, count=len(results), results=results)

    async def _bulk_one(
        self, repo: ContentRepository, action: str, work: Any, principal: Principal, ip: str | None
    ) -> ItemRow:
        if action == "create":
            fields = derived(work.model_dump(exclude_unset=True))
            return await repo.create(
                fields,
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

    # ----------------------------------------------------------------------------------- taxonomy
    @api.post("/categories", response_model=s.TaxonomyOut, status_code=201, summary="Create a category")
    async def create_category(
        self, request: Request, body: s.Taxonomy, principal: Annotated[Principal, Depends(current_principal)]
    ) -> s.TaxonomyOut:
        return await self._create_taxonomy(request, "category", body, principal)

    @api.post("/tags", response_model=s.TaxonomyOut, status_code=201, summary="Create a tag")
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
    async def _admin(self, request: Request, principal: Principal, action: str, target: str) -> None:
        permission = "key.manage" if action.startswith("key.") else "user.manage"
        if action.startswith("audit."):
            permission = "audit.read"
        await self._allow(request, principal, decide(principal.role, permission), action, target)

    @api.post("/users", response_model=s.UserOut, status_code=201, summary="Create a user (admin)")
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

    @api.patch("/users/{user_id}", response_model=s.UserOut, summary="Change a user's role or status (admin)")
    async def update_user(
        self,
        request: Request,
        user_id: Annotated[int, Path(ge=1)],
        body: s.UserUpdate,
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> s.UserOut:
        await self._admin(request, principal, "user.update", f"user:{user_id}")
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
        return s.UserOut(**after.__dict__)

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

    @api.delete("/keys/{key_id}", status_code=204, summary="Revoke an API key (admin)")
    async def revoke_key(
        self,
        request: Request,
        key_id: Annotated[int, Path(ge=1)],
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
        before_id: Annotated[int | None, Query(ge=1)] = None,
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

    @api.delete("/webhooks/{webhook_id}", status_code=204, summary="Unsubscribe (admin)")
    async def delete_webhook(
        self,
        request: Request,
        webhook_id: Annotated[int, Path(ge=1)],
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
    )
    async def deliveries(
        self,
        request: Request,
        webhook_id: Annotated[int, Path(ge=1)],
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


def app_builder(args: dict[str, Any]) -> serve.Application:
    parsed = CmsArgs.model_validate(args)
    ingress = serve.deployment(
        name="CmsIngress",
        num_replicas=parsed.replicas,
        max_ongoing_requests=parsed.max_ongoing_requests,
        ray_actor_options={"num_cpus": 0},
    )(CmsIngress)
    app: serve.Application = ingress.bind(parsed.model_dump())
    return app
