"""``Idempotency-Key`` on CMS writes: a retried write answers what the first one answered instead of
applying twice.

A client that may retry a write (a timeout, a dropped connection) sends ``Idempotency-Key: <1-255 visible
ASCII characters>`` with it, a fresh key per intended change. HAProxy replaying a request whose replica
died (``RAY_SERVE_HAPROXY_RETRY_ON=... empty-response``) resends the same header, so such a replay is safe
too. Keys belong to their caller (user or API key) and live ``PULSE_CMS__IDEMPOTENCY_TTL_S``.

How (``CmsContext.write``):

1. Before the write, ``requested`` reads the key and fingerprints the request (method, path, query,
   body); ``judge`` compares it with a claim of the same key (``storage.cms_idempotency.find``). A claim
   with an answer is replayed (``IdempotentReplay``: the first status, body, ``Content-Type``, ``ETag``
   and ``Location``, plus ``Idempotent-Replayed: true``); one for another request is 422
   ``idempotency_key_reused``; one still without an answer is 409 ``idempotency_key_in_flight``.
2. The write claims the key in its own transaction (``storage.cms_idempotency.claim``): the claim exists
   exactly when the write committed, and of two concurrent requests with one key, the second waits for the
   first's commit and gets 409 (its own changes roll back).
3. ``AnswerRecorder`` (ASGI middleware) keeps the answer of a request whose write claimed a key before
   sending it to the client, so a client that saw an answer can always have it replayed.

Writes without the header behave as before. Anonymous callers, and the ``/auth`` routes (which do not go
through ``write``), are not affected.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_apps.cms.security import Principal
from serve_apps.errors import ApiError, InvalidRequest
from storage.cms_idempotency import KeptWrite

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
#: Set on a replayed answer.
REPLAYED_HEADER = "Idempotent-Replayed"
#: Methods whose requests may carry a key (others ignore it).
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Visible ASCII, 1-255 characters (a UUID is the usual choice).
KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")
#: Response headers kept with an answer and replayed.
KEPT_HEADERS = ("content-type", "etag", "location")
#: A claim without an answer this old lost its answer (its replica stopped between commit and answer).
UNANSWERED_AFTER_S = 60.0
#: The 409 of a write whose key is being applied (in routes that had no 409 of their own).
CONFLICT = (
    "Conflicts with the current state; with an Idempotency-Key, also: the first request with the key is "
    "being applied (code idempotency_key_in_flight)"
)
#: Where the claiming write leaves its claim for ``AnswerRecorder`` (the request scope's ``state``).
STATE_KEY = "pulse_idempotency_claim"


class KeyReused(ApiError):
    status_code = 422
    code = "idempotency_key_reused"


class KeyInFlight(ApiError):
    status_code = 409
    code = "idempotency_key_in_flight"


@dataclass(frozen=True)
class Requested:
    """A write's ``Idempotency-Key``, its caller, and what identifies the request."""

    principal: str
    key: str
    method: str
    path: str
    fingerprint: str


class IdempotentReplay(Exception):
    """A retry of a write that already answered: the app answers ``replay_response(kept)``."""

    def __init__(self, kept: KeptWrite) -> None:
        super().__init__("replayed")
        self.kept = kept


def replay_response(kept: KeptWrite) -> Response:
    """The kept answer, marked as a replay."""
    return Response(
        content=kept.body,
        status_code=kept.status or 200,
        headers={**kept.headers, REPLAYED_HEADER: "true"},
    )


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    """sha256 of what makes two requests the same request (the query's parameters in sorted order)."""
    digest = hashlib.sha256()
    for part in (method.upper(), path, "&".join(sorted(query.split("&"))) if query else ""):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\n")
    digest.update(body)
    return digest.hexdigest()


async def requested(request: Request, principal: Principal) -> Requested | None:
    """The request's key (None without one, for an anonymous caller, or on a read); 422 when malformed."""
    raw = request.headers.get(HEADER)
    if raw is None or principal.kind == "anonymous" or request.method not in WRITE_METHODS:
        return None
    if not KEY_PATTERN.fullmatch(raw):
        reason = "1 to 255 visible ASCII characters (a UUID, say), one per intended change"
        raise InvalidRequest(
            f"{HEADER} must be {reason}",
            details=[{"field": f"header.{HEADER}", "reason": reason}],
        )
    body = await request.body()
    path = request.url.path
    return Requested(
        principal=principal.label,
        key=raw,
        method=request.method,
        path=path,
        fingerprint=fingerprint(request.method, path, request.url.query, body),
    )


def judge(kept: KeptWrite, wanted: Requested, *, age_s: float) -> IdempotentReplay:
    """What a request meets when its key is claimed: the replay to answer (returned), or an error."""
    if (kept.method, kept.path, kept.fingerprint) != (wanted.method, wanted.path, wanted.fingerprint):
        raise KeyReused(
            f"this {HEADER} was used for another request ({kept.method} {kept.path} with another body "
            "or query); send a new key for a new change",
            details=[{"field": f"header.{HEADER}", "reason": "used for another request"}],
        )
    if kept.status is None:
        if age_s >= UNANSWERED_AFTER_S:
            raise KeyInFlight(
                "the write with this key was applied, but its answer was lost (its replica stopped); read "
                "the resource to see its state, and send a new key for a new change"
            )
        raise KeyInFlight(
            "a request with this key is being applied; retry in a second to get its answer",
            headers={"Retry-After": "1"},
        )
    return IdempotentReplay(kept)


#: Keeps one answer: (principal, key, status, headers, body).
StoreAnswer = Callable[[str, str, int, dict[str, str], bytes], Awaitable[None]]


class AnswerRecorder:
    """ASGI middleware: the answer of a write that claimed a key is kept (``store``) before it is sent.

    Requests without a claim pass through untouched. With one, the response is held until its last body
    message (CMS answers are small JSON), stored, then sent; a failure to store is logged and the answer
    still sent (a retry then meets 409 ``idempotency_key_in_flight``, never a second write).
    """

    def __init__(self, app: ASGIApp, *, store: StoreAnswer) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        held: list[Message] = []

        async def holding_send(message: Message) -> None:
            claim: Requested | None = state.get(STATE_KEY)
            if claim is None:
                await send(message)
                return
            held.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                await self._keep(claim, held)
                for item in held:
                    await send(item)
                held.clear()

        await self.app(scope, receive, holding_send)

    async def _keep(self, claim: Requested, messages: list[Message]) -> None:
        start = messages[0]
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in start.get("headers", [])
        }
        kept = {name: headers[name] for name in KEPT_HEADERS if name in headers}
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        try:
            await self.store(claim.principal, claim.key, int(start["status"]), kept, body)
        except Exception:
            logger.exception(
                "could not keep the answer of idempotency key %r of %s", claim.key, claim.principal
            )


#: The header as an OpenAPI parameter of every write.
OPENAPI_PARAMETER: dict[str, Any] = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": (
        "Makes a retry safe: a second request with this key (same caller, method, path, query and body) "
        f"gets the first one's answer, marked `{REPLAYED_HEADER}: true`, instead of applying twice. One "
        "fresh key (a UUID) per intended change; kept PULSE_CMS__IDEMPOTENCY_TTL_S. The same key with "
        "another request is 422 idempotency_key_reused; while the first is being applied, 409 "
        "idempotency_key_in_flight (Retry-After)."
    ),
    "schema": {"type": "string", "pattern": "^[!-~]{1,255}$", "minLength": 1, "maxLength": 255},
}


def document(api: FastAPI, *, skip_prefix: str = "/auth/") -> None:
    """Declare the header (and its 409) on every write of ``api``'s OpenAPI document, but those under
    ``skip_prefix`` (the /auth routes do not go through ``CmsContext.write``)."""
    build = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is not None:
            return api.openapi_schema
        schema = build()
        for path, operations in schema.get("paths", {}).items():
            if path.startswith(skip_prefix):
                continue
            for method, operation in operations.items():
                if method.upper() in WRITE_METHODS:
                    operation.setdefault("parameters", []).append(OPENAPI_PARAMETER)
                    responses = operation.setdefault("responses", {})
                    if "409" not in responses and "422" in responses:
                        responses["409"] = {**responses["422"], "description": CONFLICT}
        api.openapi_schema = schema
        return schema

    api.openapi = openapi  # type: ignore[method-assign]
