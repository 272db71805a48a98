"""FastAPI dependencies of the CMS routes: the replica's ``CmsContext``, the caller, and ``Versioned``, a
change to one item at the version the caller saw.

Credentials go through FastAPI's security classes, so the OpenAPI document declares both schemes (and
``/docs`` has its Authorize button); neither refuses by itself (``auto_error=False``): anonymous callers
read published content, and a bad credential is answered by ``CmsContext.principal`` with the CMS's own
401 (``WWW-Authenticate: Bearer``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, TypedDict

from fastapi import Depends, Request, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from serve_apps.cms import schemas as s
from serve_apps.cms.context import CmsContext
from serve_apps.cms.item_views import IfMatch, if_match_version, item_response
from serve_apps.cms.security import Principal
from serve_apps.inputs import Id
from storage.cms_content import ContentRepository
from storage.cms_items import ItemRow

#: ``Authorization: Bearer <access token>`` (``POST /auth/login``).
BEARER = HTTPBearer(
    auto_error=False, description="An access token from POST /auth/login (expires; renew at /auth/refresh)"
)
#: ``X-API-Key: <key>`` (``POST /keys``): services.
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="A service's API key (POST /keys)")


async def get_cms(request: Request) -> CmsContext:
    """The replica's CMS, hung on its app by ``serve_apps.cms.app.build_api``. (Every dependency is a
    coroutine function: FastAPI runs a plain one in a worker thread, a thread hop on every request.)"""
    cms: CmsContext = request.app.state.cms
    return cms


Cms = Annotated[CmsContext, Depends(get_cms)]


async def current_principal(
    request: Request,
    cms: Cms,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    api_key: Annotated[str | None, Depends(API_KEY)],
) -> Principal:
    """The caller (anonymous without credentials), counted against its rate limit."""
    return await cms.principal(request, bearer, api_key)


Caller = Annotated[Principal, Depends(current_principal)]


class Journal(TypedDict):
    """What a versioned item write records: who, from where, and the version the caller saw."""

    actor: str
    ip: str | None
    expected_version: int | None


#: One versioned write: the repository call, given the repository and the ``Journal`` keywords; it
#: returns the item before and after.
ItemChange = Callable[[ContentRepository, Journal], Awaitable[tuple[ItemRow, ItemRow]]]


@dataclass
class Versioned:
    """A change to item ``item_id`` at the version named by ``If-Match`` (the ETag of a GET). ``apply``
    reads the header (422 when malformed), runs the change in one write and answers the item as it is
    after, with its new ETag."""

    request: Request
    response: Response
    item_id: int
    principal: Principal
    cms: CmsContext
    if_match: str | None = None

    async def apply(self, change: ItemChange) -> s.ItemOut:
        expected = if_match_version(self.if_match)
        async with self.cms.write(self.request, self.principal) as w:
            journal = Journal(actor=w.actor, ip=w.ip, expected_version=expected)
            _, after = await change(ContentRepository(w.session), journal)
        return item_response(self.response, after, self.principal)


async def versioned(
    request: Request,
    response: Response,
    item_id: Id,
    principal: Caller,
    cms: Cms,
    if_match: IfMatch = None,
) -> Versioned:
    """FastAPI dependency: the ``Versioned`` change of the request (a coroutine function: a class given
    to ``Depends`` would be constructed in a worker thread)."""
    return Versioned(request, response, item_id, principal, cms, if_match)


VersionedItem = Annotated[Versioned, Depends(versioned)]
