"""Items between the HTTP edge and storage: fields as stored, items as shown, versions as ETags, and who
may read or change an item (checked on the locked row inside the write's transaction)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Header, Request, Response
from pydantic import BaseModel

from serve_apps.cms import schemas as s
from serve_apps.cms.context import CmsContext, Refused
from serve_apps.cms.limits import html_to_text, sanitize_html
from serve_apps.cms.permissions import Decision, allowed_transitions, decide
from serve_apps.cms.security import Principal
from serve_apps.errors import InvalidRequest, NotFound
from storage.cms_actions import Action, AuditAction, transition_action
from storage.cms_content import Check, read_item
from storage.cms_items import ItemRow
from storage.cms_models import LOCALES

#: The ``If-Match`` header of a write: the ETag (version) the caller last saw.
IfMatch = Annotated[str | None, Header()]
#: Fields that schedule publishing (setting them needs ``item.schedule``).
SCHEDULE_FIELDS = frozenset({"publish_at", "unpublish_at"})


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


def _localized(en: s.LocaleView, ar: s.LocaleView, locale: str) -> s.Localized:
    """The view in ``locale``, each empty field filled from the other locale (and named in fallbacks)."""
    mine, other = (en, ar) if locale == "en" else (ar, en)
    values: dict[str, Any] = {"locale": locale, "fallbacks": []}
    for name in ("title", "summary", "body", "slug"):
        value = getattr(mine, name)
        if not value and getattr(other, name):
            value = getattr(other, name)
            values["fallbacks"].append(name)
        values[name] = value
    return s.Localized.model_validate(values)


def _owner(principal: Principal, item: ItemRow) -> bool:
    return principal.kind == "user" and principal.id == item.author_id


def item_out(item: ItemRow, principal: Principal, locale: str | None = None) -> s.ItemOut:
    """The item as the caller sees it: both locales (bodies sanitised), the moves the caller may make,
    and with ``locale`` a view in that locale with fallbacks."""
    en, ar = _view(item, "en"), _view(item, "ar")
    return s.ItemOut.model_validate(
        {
            **vars(item),
            **item.fields,
            "en": en,
            "ar": ar,
            "allowed_transitions": allowed_transitions(principal.role, item.status, _owner(principal, item)),
            "localized": _localized(en, ar, locale) if locale is not None else None,
        }
    )


def item_response(response: Response, item: ItemRow, principal: Principal) -> s.ItemOut:
    """``item_out`` of a written item, with its new version as the response's ETag."""
    response.headers["ETag"] = etag(item.version)
    return item_out(item, principal)


# ------------------------------------------------------------------------------------ permissions
def _require(decision: Decision, action: Action, item: ItemRow) -> None:
    if not decision.allowed:
        raise Refused(decision, action, f"item:{item.id}")


def check_read(principal: Principal, item: ItemRow) -> None:
    """Raise unless ``principal`` may read ``item`` (anonymous callers get 404 for unpublished items:
    their existence is not revealed)."""
    action = AuditAction.ITEM_READ
    decision = decide(
        principal.role, action, owner=_owner(principal, item), status=item.status, item_id=item.id
    )
    if not decision.allowed and principal.kind == "anonymous":
        raise NotFound(f"no item {item.id}", code="item_not_found")
    _require(decision, action, item)


def reschedules(item: ItemRow, fields: Mapping[str, Any]) -> bool:
    """Whether ``fields`` change the item's publishing times (a PUT that sends them unchanged, or unset,
    schedules nothing)."""
    return any(fields[name] != getattr(item, name) for name in SCHEDULE_FIELDS & set(fields))


def check_write(principal: Principal, action: AuditAction, fields: Mapping[str, Any] | None = None) -> Check:
    """The check a write runs on the locked item: may read it, may do ``action`` to it, and may schedule
    when ``fields`` change its publishing times."""

    def check(item: ItemRow) -> None:
        check_read(principal, item)
        owner = _owner(principal, item)
        _require(
            decide(principal.role, action, owner=owner, status=item.status, item_id=item.id), action, item
        )
        if fields and reschedules(item, fields):
            schedule = AuditAction.ITEM_SCHEDULE
            _require(decide(principal.role, schedule, item_id=item.id), schedule, item)

    return check


def check_move(principal: Principal, target: str) -> Check:
    """The check of a workflow move to ``target`` on the locked item: may read it, may make this move."""

    def check(item: ItemRow) -> None:
        check_read(principal, item)
        action = transition_action(item.status, target)
        _require(decide(principal.role, action, owner=_owner(principal, item), item_id=item.id), action, item)

    return check


async def readable(cms: CmsContext, request: Request, principal: Principal, item_id: int) -> ItemRow:
    """The item, if the caller may read it (404 when missing; a refusal is audit-logged)."""
    async with cms.engine.connect() as conn:
        item = await read_item(conn, item_id)
    if item is None:
        raise NotFound(f"no item {item_id}", code="item_not_found")
    try:
        check_read(principal, item)
    except Refused as refused:
        await cms.refuse(request, principal, refused.decision, refused.action, refused.target)
    return item
