"""The CMS application's base: the FastAPI app, its arguments, who is calling, and refusals.

``CmsBase`` holds what every route needs (sessions, tokens, rate limits, the permission check that
audit-logs refusals); the routes live in ``serve_apps/cms/admin.py`` (auth, users, keys, taxonomy,
webhooks, audit) and ``serve_apps/cms/app.py`` (items, revisions, bulk), whose ``CmsIngress`` inherits
both and is the deployment.
"""

import logging
from typing import Annotated, Any, NoReturn

from fastapi import Depends, FastAPI, Header, Request
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import async_sessionmaker

from actors.cms_scheduler_actor import CmsSchedulerConfig, get_or_create_cms_scheduler
from cluster.ground.constants import DEFAULT_TRUSTED_PROXIES
from cluster.top.cms_embed_hook import EmbedCmsDocuments
from jobs.embed.pipeline import EmbedJobConfig
from serve_apps.cms.limits import BodySizeLimit, ClientAddress, RateLimits
from serve_apps.cms.permissions import Decision, decide
from serve_apps.cms.security import (
    InvalidToken,
    Principal,
    TokenIssuer,
)
from serve_apps.errors import (
    Forbidden,
    InvalidRequest,
    RateLimited,
    Unauthorized,
    error_responses,
    install_error_handlers,
)
from serve_apps.inputs import reject_unstorable_text
from storage.cms_audit import record_audit
from storage.cms_users import ApiKeyRepository
from storage.database import make_async_engine

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
    trusted_proxies: list[str] = Field(
        default=list(DEFAULT_TRUSTED_PROXIES),
        description="Peers whose X-Forwarded-For names the caller (addresses or CIDR networks)",
    )
    max_ongoing_requests: int = 256
    replicas: int = Field(default=1, ge=1)
    user_code_thread: bool = Field(
        default=False,
        description="Routes on a second event-loop thread (Serve's default), else on the replica's own loop",
    )
    pool_size: int = 10
    access_log: bool = Field(default=False, description="Serve's per-request access log")
    storage_uri: str = Field(default="var/storage", description="Where published items' vectors are written")
    namespace: str = "pulse"
    public_base_url: str = "https://cms.pulse.local"
    scheduler: bool = Field(default=True, description="Start the CMS scheduler actor (get-or-create)")
    scheduler_interval_s: float = 2.0
    webhook_max_attempts: int = 8
    webhook_private_targets: bool = Field(
        default=False, description="Webhooks may POST to loopback, private and link-local addresses"
    )
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


api = FastAPI(
    title="Pulse CMS API",
    version="0.1.0",
    description="Bilingual (Arabic/English) headless CMS: content, workflow, revisions, bulk, webhooks.",
    # Every route: credentials (401, 403), the body limit (413), input (422), rate limits (429), the database.
    responses=error_responses(401, 403, 413, 422, 429, 503),
    dependencies=[Depends(reject_unstorable_text)],
)
install_error_handlers(api)


#: This replica's ingress and settings, set by its constructor. Serve hands the replica its own copy of
#: the FastAPI app (built before the constructor runs), so per-replica state is kept here, in the module
#: that the middleware and the dependencies below are imported from.
REPLICA: dict[str, Any] = {}


class ConfiguredBodySizeLimit(BodySizeLimit):
    """``BodySizeLimit`` with the replica's configured limit, read per request (the middleware stack is
    built before the deployment's constructor runs)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.max_bytes = int(REPLICA.get("max_body_bytes", self.max_bytes))
        await super().__call__(scope, receive, send)


#: Request bodies over the limit are refused with 413 before they reach a route (chunked ones too).
api.add_middleware(ConfiguredBodySizeLimit, max_bytes=1_048_576)


async def current_principal(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Principal:
    """FastAPI dependency: the caller, resolved by the replica's ingress (``CmsIngress.principal``)."""
    ingress: CmsBase = REPLICA["ingress"]
    return await ingress.principal(request, authorization, x_api_key)


class CmsBase:
    def __init__(self, args: dict[str, Any]) -> None:
        self._args = CmsArgs.model_validate(args)
        REPLICA.update(max_body_bytes=self._args.max_body_bytes, ingress=self)
        self._engine = make_async_engine(self._args.database_url, pool_size=self._args.pool_size)
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
        self._tokens = TokenIssuer(
            self._args.jwt_secret,
            access_ttl_s=self._args.access_ttl_s,
            refresh_ttl_s=self._args.refresh_ttl_s,
        )
        self._limits = RateLimits(per_key=self._args.rate_per_key, per_ip=self._args.rate_per_ip)
        self._client_address = ClientAddress(self._args.trusted_proxies)
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
            private_targets=a.webhook_private_targets,
        )
        return get_or_create_cms_scheduler(config, embed if a.embed_on_publish else None)

    # ----------------------------------------------------------------------------- who is calling
    async def principal(
        self, request: Request, authorization: str | None, x_api_key: str | None
    ) -> Principal:
        ip = self._ip(request)
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
        if not decision.allowed:
            await self._refuse(request, principal, decision, action, target)

    async def _refuse(
        self, request: Request, principal: Principal, decision: Decision, action: str, target: str
    ) -> NoReturn:
        """Audit-log the refusal, then raise 403 (401 for an anonymous caller)."""
        async with self._sessions() as session, session.begin():
            await record_audit(
                session,
                actor=principal.label,
                ip=self._ip(request),
                action=action,
                target=target,
                outcome="denied",
                reason=decision.reason,
            )
        if principal.kind == "anonymous":
            raise Unauthorized(f"log in or send an API key: {decision.reason}")
        raise Forbidden(decision.reason)

    def _ip(self, request: Request) -> str | None:
        """The caller's address (``ClientAddress``: X-Forwarded-For from a trusted proxy, else the peer)."""
        peer = request.client.host if request.client else None
        return self._client_address.resolve(peer, request.headers.get("x-forwarded-for"))

    async def _admin(self, request: Request, principal: Principal, action: str, target: str) -> None:
        permission = "key.manage" if action.startswith("key.") else "user.manage"
        if action.startswith("audit."):
            permission = "audit.read"
        await self._allow(request, principal, decide(principal.role, permission), action, target)
