"""What every request's input must satisfy beyond its schema, so that bad input is a 422, never a 500.

- **Ids fit their column.** Ids are PostgreSQL ``BIGINT`` and versions ``INTEGER``; a larger number
  would fail inside the query. ``Id`` / ``Version`` (path) and ``MAX_ID`` / ``MAX_VERSION`` (query and
  body fields) bound them, so FastAPI answers 422 before any SQL.
- **Text PostgreSQL can store.** ``text`` cannot hold NUL (U+0000), and a lone surrogate (U+D800 to
  U+DFFF, e.g. the JSON escape ``"\\ud800"``) cannot be encoded as UTF-8. ``reject_unstorable_text``, a
  dependency installed on every route of both apps, looks at every string a request carries (path and
  query parameters, header values, the JSON body at any depth, its keys too) and answers 422 naming
  each field that holds one.
- **Values of the type the OpenAPI names.** Pydantic's lax mode reads more than the schema says: a number
  (or a numeric string such as ``until=0.5``) as a date-time in Unix seconds, ``0`` / ``1`` as a boolean.
  ``IsoDateTime`` (query parameters and body fields) takes ISO 8601 text only; JSON booleans are
  ``StrictBool`` in the request schemas. Either mismatch is a 422 (found by schemathesis' negative data).
"""

import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BeforeValidator

from storage.documents import UNSTORABLE

#: Largest value of a PostgreSQL BIGINT: every id column.
MAX_ID = 2**63 - 1
#: Largest value of a PostgreSQL INTEGER: item versions.
MAX_VERSION = 2**31 - 1

#: A positive id in a path (``/items/{item_id}``).
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
#: A version number in a path.
Version = Annotated[int, Path(ge=1, le=MAX_VERSION)]

Loc = tuple[str | int, ...]

#: A number as a string (``0.5``, ``-3``, ``1e9``): what Pydantic would read as Unix seconds.
_NUMERIC = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _iso_text(value: Any) -> Any:
    """Refuse a number where an ISO 8601 date or date-time is expected (Pydantic reads it as Unix seconds)."""
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMERIC.fullmatch(value.strip())):
        raise ValueError(
            "expected an ISO 8601 date or date-time such as 2018-02-01 or 2018-02-01T12:00:00Z, not a number"
        )
    return value


#: A date-time in a query parameter or a body field: ISO 8601 text (a date alone is its midnight), never
#: a number; its OpenAPI stays ``type: string, format: date-time``.
IsoDateTime = Annotated[datetime, BeforeValidator(_iso_text)]

#: What a JSON body must contain to hold either: a NUL byte, or the escapes ``\u0000`` and ``\uD8..``-
#: ``\uDF..`` (valid JSON spells both as escapes; a surrogate in raw UTF-8 fails decoding before this).
_MAYBE_UNSTORABLE = re.compile(rb"\x00|\\u0000|\\u[dD][89a-fA-F]")


def _reason(char: str) -> str:
    if char == "\x00":
        return "contains a NUL character (\\x00), which text fields cannot hold; remove it"
    return f"contains a lone surrogate (U+{ord(char):04X}), which is not valid Unicode text; remove it"


def unstorable_text(value: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """``(location, reason)`` for each string in ``value`` (lists and dicts at any depth, dict keys too)
    that holds a character PostgreSQL text cannot store."""
    if isinstance(value, str):
        found = UNSTORABLE.search(value)
        if found:
            yield loc, _reason(found.group())
    elif isinstance(value, dict):
        for key, item in value.items():
            here = (*loc, str(key))
            if isinstance(key, str) and (found := UNSTORABLE.search(key)):
                yield here, f"the field name {_reason(found.group())}"
            yield from unstorable_text(item, here)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from unstorable_text(item, (*loc, i))


async def reject_unstorable_text(request: Request) -> None:
    """FastAPI dependency (every route): 422 naming each parameter, header or body field that holds NUL
    or a lone surrogate. A body is looked at only on routes that take one (FastAPI has read it already)."""
    found: list[tuple[Loc, str]] = []
    for name, value in request.path_params.items():
        found += unstorable_text(value, ("path", name))
    for name, value in request.query_params.multi_items():
        found += unstorable_text(value, ("query", name))
    for name, value in request.headers.items():
        found += unstorable_text(value, ("header", name))
    route = request.scope.get("route")
    if isinstance(route, APIRoute) and route.body_field is not None:
        raw = await request.body()
        # FastAPI has parsed the body already; parse it again only when it may hold one (almost never).
        if not _MAYBE_UNSTORABLE.search(raw):
            raw = b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:  # not JSON: the route's own validation answers
            body = None
        found += unstorable_text(body, ("body",))
    if found:
        raise RequestValidationError(
            [{"type": "unstorable_text", "loc": loc, "msg": reason, "input": None} for loc, reason in found]
        )
