"""What every CMS route needs, built once per replica: sessions, tokens, rate limits, who is calling, the
permission check that audit-logs refusals, and ``write``, the one way a route changes something.

``CmsContext`` is made by the deployment's constructor (``serve_apps.cms.app``) and hung on its FastAPI
app as ``app.state.cms``; routes receive it through the ``Cms`` dependency (``serve_apps.cms.deps``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from fastapi import Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import Scope

from serve_apps.cms import idempotency
from serve_apps.cms.args import CmsArgs
from serve_apps.cms.credentials import UserCache, authenticate
from serve_apps.cms.http_cache import AnswerCache
from serve_apps.cms.limits import ClientAddress, RateLimits
from serve_apps.cms.permissions import Decision, decide
from serve_apps.cms.security import Principal, TokenIssuer
from serve_apps.errors import Forbidden, NotFound, RateLimited, Unauthorized
from storage import cms_idempotency
from storage.cms_actions import Action, EventType
from storage.cms_audit import record_audit
from storage.cms_events import append_event, outbox_changes, outbox_head
from storage.database import make_async_engine
from storage.errors import CmsNotFound, LastAdmin

logger = logging.getLogger(__name__)

#: Seconds between two purges of expired idempotency keys by one replica.
IDEMPOTENCY_PURGE_EVERY_S = 300.0


class Refused(Exception):
    """A permission check inside a write transaction said no: the transaction rolls back, then ``write``
    audit-logs the refusal and answers 403 (401 for an anonymous caller)."""

    def __init__(self, decision: Decision, action: Action, target: str) -> None:
        super().__init__(decision.reason)
        self.decision, self.action, self.target = decision, action, target


@dataclass
class Write:
    """A write in progress (``CmsContext.write``): the route writes through ``session`` and may name what
    it changed (``target``, ``before``, ``after``) and the outbox event to send (``event``)."""

    session: AsyncSession
    actor: str
    ip: str | None
    action: Action | None
    target: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    event: tuple[EventType, list[int], dict[str, Any]] | None = None  # type, item ids, payload


class CmsContext:
    """One replica's CMS: its database, tokens, limits and the checks every route shares."""

    def __init__(self, args: CmsArgs) -> None:
        self.args = args
        self.engine = make_async_engine(args.database_url, pool_size=args.pool_size)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.tokens = TokenIssuer(
            args.jwt_secret, access_ttl_s=args.access_ttl_s, refresh_ttl_s=args.refresh_ttl_s
        )
        self.limits = RateLimits(per_key=args.rate_per_key, per_ip=args.rate_per_ip)
        self.client_address = ClientAddress(args.trusted_proxies)
        self.users = UserCache()
        self.bootstrapped = False
        self._purged_at = 0.0
        # The cache's outbox reads have a connection of their own: under load the requests' pool has a
        # queue, and a poll waiting in it would let cached answers outlive the changes they show.
        self._outbox_engine = make_async_engine(args.database_url, pool_size=1)
        self._outbox_sessions = async_sessionmaker(self._outbox_engine, expire_on_commit=False)
        self.answers = AnswerCache(
            read_start=self._outbox_head,
            read_events=self._outbox_changes,
            max_entries=args.cache_entries,
            ttl_s=args.cache_ttl_s,
            poll_s=args.cache_poll_s,
        )

    async def _outbox_head(self) -> tuple[int, list[int]]:
        async with self._outbox_sessions() as session:
            return await outbox_head(session)

    async def _outbox_changes(self, after: int, gaps: list[int]) -> list[tuple[int, list[int]]]:
        async with self._outbox_sessions() as session:
            return await outbox_changes(session, after, gaps)

    def rate_check_anonymous(self, scope: Scope) -> int | None:
        """Count an anonymous request (a cache hit, ``HttpCache``) against its IP's limit: None, or the
        seconds to wait."""
        retry = self.limits.check(None, self.ip(Request(scope)))
        return None if retry is None else retry.seconds

    def ip(self, request: Request) -> str | None:
        """The caller's address (``ClientAddress``: X-Forwarded-For from a trusted proxy, else the peer)."""
        peer = request.client.host if request.client else None
        return self.client_address.resolve(peer, request.headers.get("x-forwarded-for"))

    def check_rate(self, principal: Principal, ip: str | None) -> None:
        """Count the request against the caller's limit (its IP's when anonymous); 429 over it."""
        retry = self.limits.check(None if principal.kind == "anonymous" else principal.label, ip)
        if retry is not None:
            raise RateLimited(retry.message, retry_after_s=retry.seconds)

    # ----------------------------------------------------------------------------- who is calling
    async def principal(
        self, request: Request, bearer: HTTPAuthorizationCredentials | None, api_key: str | None
    ) -> Principal:
        """The caller (``serve_apps.cms.credentials.authenticate``), counted against its rate limit."""
        who = await authenticate(
            self.sessions,
            self.tokens,
            authorization=request.headers.get("authorization"),
            bearer=bearer,
            api_key=api_key,
            users=self.users,
        )
        self.check_rate(who, self.ip(request))
        return who

    # ---------------------------------------------------------------------------- may they do it
    async def allow(
        self, request: Request, principal: Principal, decision: Decision, action: Action, target: str
    ) -> None:
        """Raise 403 (401 for an anonymous caller), audit-logged, unless ``decision`` allows."""
        if not decision.allowed:
            await self.refuse(request, principal, decision, action, target)

    async def allow_to(
        self, request: Request, principal: Principal, permission: str, action: Action, target: str
    ) -> None:
        """``allow`` the matrix's answer for ``permission`` (one that ignores items' owner and status)."""
        await self.allow(request, principal, decide(principal.role, permission), action, target)

    async def refuse(
        self, request: Request, principal: Principal, decision: Decision, action: Action, target: str
    ) -> NoReturn:
        """Audit-log the refusal, then raise 403 (401 for an anonymous caller)."""
        await self.audit_denied(request, principal.label, action, target, decision.reason)
        if principal.kind == "anonymous":
            raise Unauthorized(f"log in or send an API key: {decision.reason}")
        raise Forbidden(decision.reason)

    async def audit_denied(
        self, request: Request, actor: str, action: Action, target: str, reason: str
    ) -> None:
        """An audit row for something refused (in a transaction of its own: the refused one rolled back)."""
        async with self.sessions() as session, session.begin():
            await record_audit(
                session,
                actor=actor,
                ip=self.ip(request),
                action=action,
                target=target,
                outcome="denied",
                reason=reason,
            )

    # ------------------------------------------------------------------------------------- reads
    @asynccontextmanager
    async def read(
        self, request: Request, principal: Principal, permission: str, action: Action, target: str
    ) -> AsyncIterator[AsyncSession]:
        """A session to read in, once the caller holds ``permission`` (``allow_to``: a refusal is
        audit-logged under ``action`` and ``target``)."""
        await self.allow_to(request, principal, permission, action, target)
        async with self.sessions() as session:
            yield session

    # ------------------------------------------------------------------------------------ writes
    @asynccontextmanager
    async def write(
        self,
        request: Request,
        principal: Principal,
        action: Action | None = None,
        target: str = "",
        *,
        permission: str | None = None,
    ) -> AsyncIterator[Write]:
        """One audited write: check ``permission`` (a refusal is audit-logged under ``action`` and
        ``target``), open a transaction, let the route write, then add the audit row of ``action`` and the
        outbox event the route named, and commit them with the write.

        Without ``action`` the route's repository journals the write itself (item writes add their
        revision, event and audit row in one statement) and checks permissions on the locked row, raising
        ``Refused``. A ``Refused`` or a last-admin refusal rolls the write back and is audit-logged.
        """
        if permission is not None and action is not None:
            await self.allow_to(request, principal, permission, action, target)
        claim = await self._idempotency(request, principal)
        try:
            async with self.sessions() as session, session.begin():
                if claim is not None and not await cms_idempotency.claim(
                    session,
                    claim.principal,
                    claim.key,
                    method=claim.method,
                    path=claim.path,
                    fingerprint=claim.fingerprint,
                    ttl_s=self.args.idempotency_ttl_s,
                ):
                    raise idempotency.KeyInFlight(
                        "a request with this key was applied just now; retry in a second to get its answer",
                        headers={"Retry-After": "1"},
                    )
                write = Write(session, principal.label, self.ip(request), action, target)
                yield write
                if write.event is not None:
                    event_type, item_ids, payload = write.event
                    await append_event(session, type=event_type, item_ids=item_ids, payload=payload)
                if write.action is not None:
                    await record_audit(
                        session,
                        actor=write.actor,
                        ip=write.ip,
                        action=write.action,
                        target=write.target,
                        before=write.before,
                        after=write.after,
                    )
        except Refused as refused:
            await self.refuse(request, principal, refused.decision, refused.action, refused.target)
        except LastAdmin as exc:
            if action is not None:
                await self.audit_denied(request, principal.label, action, f"user:{exc.user_id}", str(exc))
            raise
        if claim is not None:  # committed: AnswerRecorder keeps the answer before it goes out
            request.scope.setdefault("state", {})[idempotency.STATE_KEY] = claim
        self.answers.wake()  # this replica's cache reads the outbox now (the write does not wait)

    async def _idempotency(self, request: Request, principal: Principal) -> idempotency.Requested | None:
        """The key this write claims (None: no key, or an earlier write of this request claimed it);
        raises the kept answer's replay, or 422/409, when the key is already claimed
        (``serve_apps.cms.idempotency``)."""
        wanted = await idempotency.requested(request, principal)
        if wanted is None or request.scope.get("state", {}).get(idempotency.STATE_KEY) is not None:
            return None
        async with self.sessions() as session:
            kept = await cms_idempotency.find(
                session, wanted.principal, wanted.key, ttl_s=self.args.idempotency_ttl_s
            )
        if kept is None:
            return wanted
        raise idempotency.judge(kept, wanted, age_s=(datetime.now(UTC) - kept.created_at).total_seconds())

    async def keep_answer(
        self, principal: str, key: str, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        """Keep a claimed key's answer (``idempotency.AnswerRecorder``); now and then, purge expired keys."""
        async with self.sessions() as session, session.begin():
            await cms_idempotency.record_answer(
                session, principal, key, status=status, headers=headers, body=body
            )
            if time.monotonic() - self._purged_at >= IDEMPOTENCY_PURGE_EVERY_S:
                self._purged_at = time.monotonic()
                purged = await cms_idempotency.purge(session, ttl_s=self.args.idempotency_ttl_s)
                if purged:
                    logger.info("purged %d expired idempotency keys", purged)

    async def remove(
        self,
        request: Request,
        principal: Principal,
        permission: str,
        action: Action,
        target: str,
        missing: NotFound,
        delete: Callable[[AsyncSession], Awaitable[object]],
    ) -> Response:
        """An audited ``write`` that removes one row by ``delete`` (a repository call raising
        ``CmsNotFound`` when there is none): 204, or ``missing`` (404) for an unknown id."""
        async with self.write(request, principal, action, target, permission=permission) as w:
            try:
                await delete(w.session)
            except CmsNotFound as exc:
                raise missing from exc
        return Response(status_code=204)
