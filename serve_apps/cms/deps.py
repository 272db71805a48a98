"""FastAPI dependencies of the CMS routes: the replica's ``CmsContext`` and the caller.

Credentials go through FastAPI's security classes, so the OpenAPI document declares both schemes (and
``/docs`` has its Authorize button); neither refuses by itself (``auto_error=False``): anonymous callers
read published content, and a bad credential is answered by ``CmsContext.principal`` with the CMS's own
401 (``WWW-Authenticate: Bearer``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from serve_apps.cms.context import CmsContext
from serve_apps.cms.security import Principal

#: ``Authorization: Bearer <access token>`` (``POST /auth/login``).
BEARER = HTTPBearer(
    auto_error=False, description="An access token from POST /auth/login (expires; renew at /auth/refresh)"
)
#: ``X-API-Key: <key>`` (``POST /keys``): services.
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="A service's API key (POST /keys)")


def get_cms(request: Request) -> CmsContext:
    """The replica's CMS, hung on its app by ``serve_apps.cms.app.build_api``."""
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
