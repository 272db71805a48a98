"""Items: create a draft, read, list and search (keyset pages), change, delete, move in the workflow.

Every change names the version it saw (``If-Match``: the ETag of a GET); the permission check runs on
the locked row inside the write's transaction, so it judges the item as it is when the write happens.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from serve_apps.cms import schemas as s
from serve_apps.cms.deps import Caller, Cms, ItemChange, VersionedItem
from serve_apps.cms.item_views import (
    SCHEDULE_FIELDS,
    check_move,
    check_write,
    derived,
    etag,
    item_out,
    item_response,
    readable,
)
from serve_apps.cms.security import Principal
from serve_apps.cursors import decode_cursor, encode_cursor, fingerprint
from serve_apps.errors import InvalidRequest, error_responses
from serve_apps.inputs import MAX_ID, Id, IsoDateTime
from storage.cms_actions import AuditAction
from storage.cms_content import ContentRepository
from storage.cms_items import ItemQuery

router = APIRouter()

#: Deepest listing page (items).
MAX_PAGE = 100


def _encode_keyset(after: tuple[Any, int], digest: str) -> str:
    """An opaque cursor: the last row's sort value and id, bound to the query that produced it."""
    value, last_id = after
    kind = "datetime" if isinstance(value, datetime) else "float" if isinstance(value, float) else "str"
    raw = value.isoformat() if isinstance(value, datetime) else value
    return encode_cursor({"k": kind, "v": raw, "i": last_id}, digest)


def _keyset(data: dict[str, Any]) -> tuple[Any, int]:
    kind, raw, last_id = data["k"], data["v"], int(data["i"])
    value: Any = (
        datetime.fromisoformat(raw) if kind == "datetime" else float(raw) if kind == "float" else str(raw)
    )
    return value, last_id


def _decode_keyset(token: str, digest: str) -> tuple[Any, int]:
    return decode_cursor(
        token,
        digest,
        _keyset,
        malformed="pass next_cursor of the previous page as is",
        foreign="it belongs to another listing; send the same filters, sort and limit",
    )


@router.post(
    "/items",
    response_model=s.ItemOut,
    status_code=201,
    summary="Create a draft",
    responses=error_responses(409),
)
async def create_item(
    request: Request, response: Response, body: s.ItemCreate, principal: Caller, cms: Cms
) -> s.ItemOut:
    fields = body.model_dump(exclude_unset=True)
    await cms.allow_to(request, principal, "item.create", AuditAction.ITEM_CREATE, "item:new")
    if SCHEDULE_FIELDS & {name for name, value in fields.items() if value}:
        await cms.allow_to(request, principal, "item.schedule", AuditAction.ITEM_SCHEDULE, "item:new")
    async with cms.write(request, principal) as w:
        item = await ContentRepository(w.session).create(
            derived(fields),
            actor=w.actor,
            author_id=principal.id if principal.kind == "user" else None,
            ip=w.ip,
        )
    out = item_response(response, item, principal)
    response.headers["Location"] = f"/v1/cms/items/{item.id}"
    return out


@router.get(
    "/items/{item_id}",
    response_model=s.ItemOut,
    summary="One item (ETag = its version)",
    responses=error_responses(404),
)
async def get_item(
    request: Request,
    response: Response,
    item_id: Id,
    principal: Caller,
    cms: Cms,
    locale: Annotated[s.Locale | None, Query(description="Add a view in this locale, with fallback")] = None,
) -> s.ItemOut:
    item = await readable(cms, request, principal, item_id)
    response.headers["ETag"] = etag(item.version)
    return item_out(item, principal, locale)


@router.get("/items", response_model=s.ItemPageOut, summary="List and search items")
async def list_items(
    principal: Caller,
    cms: Cms,
    q: Annotated[str | None, Query(max_length=500, description="Full-text query (websearch syntax)")] = None,
    locale: Annotated[s.Locale | None, Query(description="Search and show this locale")] = None,
    status: Annotated[list[s.Status], Query()] = [],  # noqa: B006
    type: Annotated[str | None, Query(pattern="^(article|page)$")] = None,
    category: Annotated[str | None, Query(max_length=100)] = None,
    tag: Annotated[str | None, Query(max_length=100)] = None,
    author: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    since: Annotated[IsoDateTime | None, Query(description="Updated at or after")] = None,
    until: Annotated[IsoDateTime | None, Query(description="Updated before")] = None,
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
    digest = fingerprint(q, locale, statuses, type, category, tag, author, since, until, sort, order, limit)
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
        after=_decode_keyset(cursor, digest) if cursor is not None else None,
        visible_to_author=visible_to_author,
    )
    async with cms.sessions() as session:
        page = await ContentRepository(session).search(query)
    next_cursor = _encode_keyset(page.next_after, digest) if page.next_after else None
    return s.ItemPageOut(items=[item_out(i, principal, locale) for i in page.items], next_cursor=next_cursor)


def _update(principal: Principal, item_id: int, fields: dict[str, Any]) -> ItemChange:
    check = check_write(principal, AuditAction.ITEM_UPDATE, fields)
    return lambda repo, journal: repo.update(item_id, derived(fields), check=check, **journal)


@router.patch(
    "/items/{item_id}",
    response_model=s.ItemOut,
    summary="Change some fields (If-Match: the ETag)",
    responses=error_responses(404, 409, 412),
)
async def patch_item(item: VersionedItem, body: s.ItemFields) -> s.ItemOut:
    fields = body.model_dump(exclude_unset=True)
    return await item.apply(_update(item.principal, item.item_id, fields))


@router.put(
    "/items/{item_id}",
    response_model=s.ItemOut,
    summary="Replace every editable field (If-Match)",
    responses=error_responses(404, 409, 412),
)
async def put_item(item: VersionedItem, body: s.ItemCreate) -> s.ItemOut:
    fields = body.model_dump()
    fields["tags"] = fields["tags"] or []
    fields["seo"] = fields["seo"] or {}
    fields["type"] = fields["type"] or "article"
    return await item.apply(_update(item.principal, item.item_id, fields))


@router.delete(
    "/items/{item_id}",
    status_code=204,
    summary="Delete an item and its history",
    responses=error_responses(404),
)
async def delete_item(request: Request, item_id: Id, principal: Caller, cms: Cms) -> Response:
    async with cms.write(request, principal) as w:
        await ContentRepository(w.session).delete(
            item_id, actor=w.actor, ip=w.ip, check=check_write(principal, AuditAction.ITEM_DELETE)
        )
    return Response(status_code=204)


@router.post(
    "/items/{item_id}/transition",
    response_model=s.ItemOut,
    summary="Move an item in the workflow",
    responses=error_responses(404, 409, 412),
)
async def transition(item: VersionedItem, body: s.TransitionIn) -> s.ItemOut:
    check = check_move(item.principal, body.to)
    return await item.apply(
        lambda repo, journal: repo.transition(item.item_id, body.to, check=check, **journal)
    )
