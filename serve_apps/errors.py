"""The one place that maps errors to HTTP, with one body shape everywhere::

    {"error": {"code": "document_not_found", "message": "...", "details": [...]}}

Hierarchy of the API's own errors::

    ApiError
    ├── InvalidRequest (422)     input that passed type checks but is still unusable (e.g. a blank query)
    ├── NotFound (404)           an unknown id; ``code`` names what was not found (document_not_found...)
    ├── Unauthorized (401)       missing, expired or invalid credentials
    ├── Forbidden (403)          the caller's role may not do this; the message says who may
    ├── RateLimited (429)        too many requests; carries Retry-After
    └── NotReady (503)           a dependency is still starting; carries Retry-After

Storage's CMS errors map too: CmsNotFound 404, StaleVersion 412, CmsConflict and InvalidTransition 409,
LastAdmin 409 (code ``last_admin``), UnknownReference 422.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from actors.errors import IndexNotReady
from storage.documents import map_json_strings
from storage.errors import (
    CmsConflict,
    CmsNotFound,
    DatabaseUnavailable,
    InvalidTransition,
    InvalidWebhook,
    LastAdmin,
    StaleVersion,
    UnknownReference,
)


class ErrorDetail(BaseModel):
    field: str
    reason: str


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_request")
    message: str = Field(description="What failed and what to do")
    details: list[ErrorDetail] | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo


logger = logging.getLogger(__name__)


class ApiError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        self.details = details


class InvalidRequest(ApiError):
    status_code = 422
    code = "invalid_request"


class NotFound(ApiError):
    status_code = 404

    def __init__(self, message: str, *, code: str = "not_found") -> None:
        super().__init__(message)
        self.code = code


class Unauthorized(ApiError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ApiError):
    status_code = 403
    code = "forbidden"


class RateLimited(ApiError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class NotReady(ApiError):
    status_code = 503
    code = "not_ready"

    def __init__(self, message: str, *, retry_after_s: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


#: What each error status means, in the OpenAPI of the routes that can answer it.
_MEANING = {
    401: "Missing, expired or invalid credentials (code unauthorized)",
    403: "The caller's role may not do this; the message says who may (code forbidden)",
    404: "No such id (code <thing>_not_found)",
    409: "Conflicts with the current state: a duplicate, a refused workflow move, a rolled-back bulk",
    412: "Stale If-Match: the item changed since it was read (code stale_version; ETag: the current one)",
    413: "The request body is over the size limit (code payload_too_large)",
    422: "Invalid input; details name each field (code invalid_request)",
    429: "Too many requests; Retry-After says when to retry (code rate_limited)",
    503: "A dependency (the index, the database) is not ready; Retry-After says when to retry",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for a route or an app: each status with the one error body."""
    return {status: {"model": ErrorResponse, "description": _MEANING[status]} for status in statuses}


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"error": _encodable(body)}


def _encodable(value: Any) -> Any:
    """``value`` with each lone surrogate (which UTF-8 cannot encode) written as its JSON escape text
    (``\\ud800``): an error naming a field such as ``"title\\ud800"`` must render, not fail with a 500."""
    return map_json_strings(value, lambda text: _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


#: A lone surrogate (U+D800-U+DFFF).
_SURROGATE = re.compile("[\ud800-\udfff]")


def _json(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_body(code, message, details), headers=headers)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 429: "rate_limited"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {
                "field": ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "body", "path")),
                "reason": err.get("msg", ""),
            }
            for err in exc.errors()
        ]
        message = "; ".join(f"{d['field']}: {d['reason']}" for d in details) or "invalid request"
        return _json(422, "invalid_request", message, details)

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return _json(exc.status_code, exc.code, exc.message, exc.details, headers=exc.headers)

    @app.exception_handler(IndexNotReady)
    async def _index_not_ready(_: Request, exc: IndexNotReady) -> JSONResponse:
        return _json(503, "index_not_ready", str(exc), headers={"Retry-After": "5"})

    @app.exception_handler(CmsNotFound)
    async def _cms_not_found(_: Request, exc: CmsNotFound) -> JSONResponse:
        return _json(404, f"{exc.kind}_not_found", str(exc))

    @app.exception_handler(StaleVersion)
    async def _stale(_: Request, exc: StaleVersion) -> JSONResponse:
        return _json(412, "stale_version", str(exc), headers={"ETag": f'"{exc.current}"'})

    @app.exception_handler(CmsConflict)
    @app.exception_handler(InvalidTransition)
    async def _conflict(_: Request, exc: Exception) -> JSONResponse:
        code = "invalid_transition" if isinstance(exc, InvalidTransition) else "conflict"
        return _json(409, code, str(exc))

    @app.exception_handler(LastAdmin)
    async def _last_admin(_: Request, exc: LastAdmin) -> JSONResponse:
        return _json(409, "last_admin", str(exc))

    @app.exception_handler(UnknownReference)
    @app.exception_handler(InvalidWebhook)
    async def _unknown_reference(_: Request, exc: UnknownReference | InvalidWebhook) -> JSONResponse:
        return _json(422, "invalid_request", str(exc), [{"field": exc.field, "reason": str(exc)}])

    @app.exception_handler(DatabaseUnavailable)
    @app.exception_handler(sqlalchemy.exc.OperationalError)
    @app.exception_handler(sqlalchemy.exc.InterfaceError)
    async def _db(_: Request, exc: Exception) -> JSONResponse:
        logger.error("database unavailable: %s", exc)
        return _json(
            503,
            "database_unavailable",
            "the database is unavailable; retry later",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's one 400: a body it cannot parse (bytes that are not UTF-8). Invalid input is 422 here.
            reason = f"{exc.detail}; send JSON encoded as UTF-8"
            return _json(422, "invalid_request", f"body: {reason}", [{"field": "body", "reason": reason}])
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return _json(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return _json(500, "internal_error", "internal error; the server log has the details")
