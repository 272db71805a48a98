"""Query parameters shared by the search endpoints: filters and page cursors, validated into 422s.

Filters: ``lang``, ``source``, ``category`` take one value, several comma-separated values, or the
parameter repeated; ``since`` (inclusive) and ``until`` (exclusive) take an ISO date or date-time (UTC
when no offset is given). A cursor is opaque (``serve_apps.cursors``): the next offset and a fingerprint of
the query it belongs to, so a cursor used with another query is refused instead of silently skipping results.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Query

from actors.filters import SearchFilter
from serve_apps import cursors
from serve_apps.cursors import fingerprint
from serve_apps.errors import InvalidRequest
from serve_apps.inputs import IsoDateTime

__all__ = ["Cursor", "decode_cursor", "encode_cursor", "fingerprint", "search_filter"]

#: Largest number of values one filter parameter may list.
MAX_FILTER_VALUES = 50


def _values(name: str, raw: list[str]) -> tuple[str, ...]:
    values = tuple(v.strip() for item in raw for v in item.split(",") if v.strip())
    if len(values) > MAX_FILTER_VALUES:
        raise InvalidRequest(f"{name}: {len(values)} values; at most {MAX_FILTER_VALUES}")
    return values


def _epoch(value: datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


async def search_filter(
    lang: Annotated[
        list[str], Query(description="Only documents in these languages (ISO codes: en, ar...)")
    ] = [],  # noqa: B006 (FastAPI copies defaults)
    source: Annotated[list[str], Query(description="Only documents from these sources (names)")] = [],  # noqa: B006
    category: Annotated[list[str], Query(description="Only documents in these categories")] = [],  # noqa: B006
    since: Annotated[
        IsoDateTime | None, Query(description="Published at or after (ISO date or date-time, UTC by default)")
    ] = None,
    until: Annotated[
        IsoDateTime | None, Query(description="Published before (ISO date or date-time)")
    ] = None,
) -> SearchFilter:
    """FastAPI dependency: the request's filter (malformed dates are 422 by validation)."""
    return build_search_filter(lang, source, category, since, until)


def build_search_filter(
    lang: list[str],
    source: list[str],
    category: list[str],
    since: datetime | None,
    until: datetime | None,
) -> SearchFilter:
    """The filter of these parameters (422 when since is not before until)."""
    flt = SearchFilter(
        languages=_values("lang", lang),
        sources=_values("source", source),
        categories=_values("category", category),
        since=_epoch(since),
        until=_epoch(until),
    )
    if flt.since is not None and flt.until is not None and flt.since >= flt.until:
        raise InvalidRequest("since/until: since must be earlier than until")
    return flt


@dataclass(frozen=True)
class Cursor:
    offset: int
    fingerprint: str


def encode_cursor(cursor: Cursor) -> str:
    return cursors.encode_cursor({"o": cursor.offset}, cursor.fingerprint)


def decode_cursor(token: str, *, expected: str, max_depth: int) -> Cursor:
    """The cursor in ``token``, checked against the query's fingerprint; 422 when it is not valid."""
    cursor = cursors.decode_cursor(
        token,
        expected,
        lambda data: Cursor(offset=int(data["o"]), fingerprint=expected),
        malformed="pass the next_cursor of a previous response as is",
        foreign="it belongs to another query; send the same q, k, mode and filters",
    )
    if not 0 < cursor.offset < max_depth:
        raise InvalidRequest(
            f"cursor: offset {cursor.offset} is out of range (results page up to {max_depth})"
        )
    return cursor
