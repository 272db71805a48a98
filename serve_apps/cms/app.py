"""The CMS application under ``/v1/cms``: bilingual content, workflow, revisions, auth, bulk, webhooks.

One Serve deployment (``CmsIngress``, FastAPI) on PostgreSQL through ``storage``: item, revision and
bulk routes here, accounts and administration in ``admin.py``, shared plumbing in ``base.py``.
Callers are users (``Authorization: Bearer <access token>`` from ``POST /auth/login``), services
(``X-API-Key``) or anonymous readers of published content. Every action is checked against the
permission matrix (``serve_apps/cms/permissions.py``); a refusal is a 403 naming who may do it, and is
audit-logged like every write. Scheduled publishing, webhooks and the search sync run in the CMS
scheduler actor, which keeps all its state in PostgreSQL.
"""

import base64
import binascii
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request, Response
from pydantic import BaseModel
from ray import serve

from serve_apps.cms import schemas as s
from serve_apps.cms.admin import AdminRoutes
from serve_apps.cms.base import MAX_PAGE, CmsArgs, api, current_principal, etag, if_match_version
from serve_apps.cms.limits import html_to_text, sanitize_html
from serve_apps.cms.permissions import Decision, allowed_transitions, decide, transition_action
from serve_apps.cms.security import (
    Principal,
)
from serve_apps.errors import (
    InvalidRequest,
    NotFound,
    error_responses,
)
from serve_apps.inputs import MAX_ID, MAX_VERSION, Id, Version
from serve_apps.search.params import fingerprint
from storage.cms_audit import record_audit
from storage.cms_content import Check, ContentRepository, ItemQuery, ItemRow
from storage.cms_events import append_event
from storage.cms_models import LOCALES
from storage.errors import CmsError

logger = logging.getLogger(__name__)


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


class Refused(Exception):
    """A permission check inside a write transaction said no: the transaction rolls back, then the route
    audit-logs the refusal and answers 403 (``CmsIngress._refusals``)."""

    def __init__(self, decision: Decision, action: str, target: str) -> None:
        super().__init__(decision.reason)
        self.decision, self.action, self.target = decision, action, target


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


@serve.ingress(api)
class CmsIngress(AdminRoutes):
    """The CMS deployment: item, revision and bulk routes here; accounts and administration inherited."""

    # ------------------------------------------------------------------------------------ items
    @api.post(
        "/items",
        response_model=s.ItemOut,
        status_code=201,
        summary="Create a draft",
        responses=error_responses(409),
    )
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

    @staticmethod
    def _check_read(principal: Principal, item: ItemRow) -> None:
        """Raise unless ``principal`` may read ``item`` (anonymous callers get 404 for unpublished items:
        their existence is not revealed)."""
        owner = principal.kind == "user" and principal.id == item.author_id
        decision = decide(principal.role, "item.read", owner=owner, status=item.status, item_id=item.id)
        if decision.allowed:
            return
        if principal.kind == "anonymous":
            raise NotFound(f"no item {item.id}", code="item_not_found")
        raise Refused(decision, "item.read", f"item:{item.id}")

    def _check_action(self, principal: Principal, action: str, fields: dict[str, Any] | None = None) -> Check:
        """The check a write runs on the locked item: may read it, may do ``action`` to it (a workflow move
        when ``action`` is ``transition:<status>``), and may schedule when ``fields`` set times."""

        def check(item: ItemRow) -> None:
            self._check_read(principal, item)
            owner = principal.kind == "user" and principal.id == item.author_id
            if action.startswith("transition:"):
                name = transition_action(item.status, action.removeprefix("transition:"))
                decision = decide(principal.role, name, owner=owner, item_id=item.id)
            else:
                name = action
                decision = decide(principal.role, name, owner=owner, status=item.status, item_id=item.id)
            if not decision.allowed:
                raise Refused(decision, name, f"item:{item.id}")
            if fields and {"publish_at", "unpublish_at"} & set(fields):
                decision = decide(principal.role, "item.schedule", item_id=item.id)
                if not decision.allowed:
                    raise Refused(decision, "item.schedule", f"item:{item.id}")

        return check

    @contextlib.asynccontextmanager
    async def _refusals(self, request: Request, principal: Principal) -> AsyncIterator[None]:
        """Turn a ``Refused`` raised inside (its transaction rolled back) into an audit-logged 403."""
        try:
            yield
        except Refused as refused:
            await self._refuse(request, principal, refused.decision, refused.action, refused.target)

    async def _readable(self, request: Request, principal: Principal, item_id: int) -> ItemRow:
        async with self._sessions() as session:
            item = await ContentRepository(session).get(item_id)
        if item is None:
            raise NotFound(f"no item {item_id}", code="item_not_found")
        async with self._refusals(request, principal):
            self._check_read(principal, item)
        return item

    @api.get(
        "/items/{item_id}",
        response_model=s.ItemOut,
        summary="One item (ETag = its version)",
        responses=error_responses(404),
    )
    async def get_item(
        self,
        request: Request,
        response: Response,
        item_id: Id,
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
        author: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
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
        async with (
            self._refusals(request, principal),
            self._sessions() as session,
            session.begin(),
        ):
            _, after = await ContentRepository(session).update(
                item_id,
                derived(fields),
                actor=principal.label,
                expected_version=expected,
                ip=self._ip(request),
                check=self._check_action(principal, "item.update", fields),
            )
        response.headers["ETag"] = etag(after.version)
        return item_out(after, principal)

    @api.patch(
        "/items/{item_id}",
        response_model=s.ItemOut,
        summary="Change some fields (If-Match: the ETag)",
        responses=error_responses(404, 409, 412),
    )
    async def patch_item(
        self,
        request: Request,
        response: Response,
        item_id: Id,
        body: s.ItemFields,
        principal: Annotated[Principal, Depends(current_principal)],
        if_match: Annotated[str | None, Header()] = None,
    ) -> s.ItemOut:
        return await self._update(
            request, response, principal, item_id, body.model_dump(exclude_unset=True), if_match
        )

    @api.put(
        "/items/{item_id}",
        response_model=s.ItemOut,
        summary="Replace every editable field (If-Match)",
        responses=error_responses(404, 409, 412),
    )
    async def put_item(
        self,
        request: Request,
        response: Response,
        item_id: Id,
        body: s.ItemCreate,
        principal: Annotated[Principal, Depends(current_principal)],
        if_match: Annotated[str | None, Header()] = None,
    ) -> s.ItemOut:
        fields = body.model_dump()
        fields["tags"] = fields["tags"] or []
        fields["seo"] = fields["seo"] or {}
        fields["type"] = fields["type"] or "article"
        return await self._update(request, response, principal, item_id, fields, if_match)

    @api.delete(
        "/items/{item_id}",
        status_code=204,
        summary="Delete an item and its history",
        responses=error_responses(404),
    )
    async def delete_item(
        self,
        request: Request,
        item_id: Id,
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Response:
        async with (
            self._refusals(request, principal),
            self._sessions() as session,
            session.begin(),
        ):
            await ContentRepository(session).delete(
                item_id,
                actor=principal.label,
                ip=self._ip(request),
                check=self._check_action(principal, "item.delete"),
            )
        return Response(status_code=204)

    @api.post(
        "/items/{item_id}/transition",
        response_model=s.ItemOut,
        summary="Move an item in the workflow",
        responses=error_responses(404, 409, 412),
    )
    async def transition(
        self,
        request: Request,
        response: Response,
        item_id: Id,
        body: s.TransitionIn,
        principal: Annotated[Principal, Depends(current_principal)],
        if_match: Annotated[str | None, Header()] = None,
    ) -> s.ItemOut:
        expected = if_match_version(if_match)
        async with (
            self._refusals(request, principal),
            self._sessions() as session,
            session.begin(),
        ):
            _, after = await ContentRepository(session).transition(
                item_id,
                body.to,
                actor=principal.label,
                expected_version=expected,
                ip=self._ip(request),
                check=self._check_action(principal, f"transition:{body.to}"),
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

    @api.get(
        "/items/{item_id}/revisions",
        response_model=list[s.RevisionOut],
        summary="Every saved version",
        responses=error_responses(404),
    )
    async def revisions(
        self,
        request: Request,
        item_id: Id,
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
        "/items/{item_id}/diff",
        response_model=s.DiffOut,
        summary="Field-by-field difference of two versions",
        responses=error_responses(404),
    )
    async def diff(
        self,
        request: Request,
        item_id: Id,
        principal: Annotated[Principal, Depends(current_principal)],
        from_version: Annotated[int, Query(alias="from", ge=1, le=MAX_VERSION)],
        to_version: Annotated[int, Query(alias="to", ge=1, le=MAX_VERSION)],
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
        responses=error_responses(404, 409, 412),
    )
    async def restore(
        self,
        request: Request,
        response: Response,
        item_id: Id,
        version: Version,
        principal: Annotated[Principal, Depends(current_principal)],
        if_match: Annotated[str | None, Header()] = None,
    ) -> s.ItemOut:
        expected = if_match_version(if_match)
        async with (
            self._refusals(request, principal),
            self._sessions() as session,
            session.begin(),
        ):
            _, after = await ContentRepository(session).restore(
                item_id,
                version,
                actor=principal.label,
                expected_version=expected,
                ip=self._ip(request),
                check=self._check_action(principal, "item.restore"),
            )
        response.headers["ETag"] = etag(after.version)
        return item_out(after, principal)

    # ------------------------------------------------------------------------------------- bulk
    @api.post(
        "/bulk",
        response_model=s.BulkOut,
        summary="Create, update, publish or archive many items at once",
        responses=error_responses(409),
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


def app_builder(args: dict[str, Any]) -> serve.Application:
    parsed = CmsArgs.model_validate(args)
    options: dict[str, Any] = {"num_cpus": 0}
    if not parsed.user_code_thread:
        # Serve runs a replica's routes on a second event loop in another thread by default; every ASGI
        # message then crosses threads. The routes never block (password hashing is in a worker thread),
        # so they run on the replica's own loop (bench/cms.py, closed loop: 174 -> 200 writes/s and
        # 286 -> 415 reads/s).
        options["runtime_env"] = {"env_vars": {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}}
    ingress = serve.deployment(
        name="CmsIngress",
        num_replicas=parsed.replicas,
        max_ongoing_requests=parsed.max_ongoing_requests,
        ray_actor_options=options,
        logging_config={"enable_access_log": parsed.access_log},
    )(CmsIngress)
    app: serve.Application = ingress.bind(parsed.model_dump())
    return app
