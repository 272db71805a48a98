"""Query parameters of the trends API, validated into 422s: the story and topic filters, page sizes and
keyset cursors.

``state`` and ``status`` take one value or the parameter repeated (``state=emerging&state=growing``);
an unknown value is a 422 naming the allowed ones. ``since`` and ``until`` take an ISO date or date-time
(UTC when no offset is given): a story or topic is shown when it was last seen at or after ``since`` and
first seen at or before ``until``. A cursor is opaque (``serve_apps.cursors``): the last row's sort value
and id, bound to a fingerprint of the listing's filters, sort and limit, so a cursor sent with another
listing is refused instead of paging something else.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Query

from serve_apps import cursors
from serve_apps.errors import InvalidRequest
from serve_apps.inputs import MAX_ID, IsoDateTime
from storage.trend_queries import After, Granularity, Status, StoryFilter, StoryState, TopicFilter

#: How a listing's sort value is written in a cursor.
ValueKind = Literal["float", "int", "time"]
#: The sort value's kind of each sort (``time``: the story documents' listing).
SORT_KINDS: dict[str, ValueKind] = {
    "score": "float",
    "volume": "int",
    "velocity": "float",
    "recency": "time",
    "size": "int",
    "time": "time",
}
#: Longest language code (``stories.language``).
MAX_LANGUAGE = 16

Since = Annotated[
    IsoDateTime | None,
    Query(description="Last seen at or after this time (ISO date or date-time, UTC by default)"),
]
Until = Annotated[
    IsoDateTime | None, Query(description="First seen at or before this time (ISO date or date-time)")
]
Language = Annotated[
    str | None, Query(min_length=1, max_length=MAX_LANGUAGE, description="Language code (en, ar...)")
]
GranularityParam = Annotated[
    Granularity, Query(description="Buckets of the time series: day (default) or hour")
]
#: Longest cursor token accepted (a real one is under 200 characters).
MAX_CURSOR = 1000
Cursor = Annotated[str | None, Query(max_length=MAX_CURSOR, description="next_cursor of the previous page")]
Statuses = Annotated[
    list[Status],
    Query(
        description=(
            "Identity statuses shown (repeat for several); default active and dead (ended: every "
            "document left the window), not merged"
        )
    ),
]


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _window(since: datetime | None, until: datetime | None) -> tuple[datetime | None, datetime | None]:
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and since > until:
        raise InvalidRequest("since/until: since must not be later than until")
    return since, until


async def story_filter(
    language: Language = None,
    since: Since = None,
    until: Until = None,
    state: Annotated[
        list[StoryState],
        Query(description="Lifecycle states shown (repeat for several); default all"),
    ] = [],  # noqa: B006 (FastAPI copies defaults)
    status: Statuses = ["active", "dead"],  # noqa: B006
    topic: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only stories of this topic")] = None,
    source: Annotated[
        str | None, Query(min_length=1, description="Only stories with a document from this source (name)")
    ] = None,
    category: Annotated[
        str | None, Query(min_length=1, description="Only stories with a document of this category")
    ] = None,
) -> StoryFilter:
    """FastAPI dependency: the stories a listing shows (unknown values and malformed dates are 422)."""
    return build_story_filter(language, since, until, state, status, topic, source, category)


def build_story_filter(
    language: str | None,
    since: datetime | None,
    until: datetime | None,
    state: list[StoryState],
    status: list[Status],
    topic: int | None,
    source: str | None,
    category: str | None,
) -> StoryFilter:
    """The story filter of these parameters (422 when since is later than until)."""
    since, until = _window(since, until)
    return StoryFilter(
        states=tuple(dict.fromkeys(state)),
        statuses=tuple(dict.fromkeys(status)),
        topic_id=topic,
        language=language,
        source=source,
        category=category,
        since=since,
        until=until,
    )


async def topic_filter(
    language: Language = None,
    since: Since = None,
    until: Until = None,
    status: Statuses = ["active"],  # noqa: B006
) -> TopicFilter:
    """FastAPI dependency: the topics a listing shows."""
    return build_topic_filter(language, since, until, status)


def build_topic_filter(
    language: str | None, since: datetime | None, until: datetime | None, status: list[Status]
) -> TopicFilter:
    """The topic filter of these parameters (422 when since is later than until)."""
    since, until = _window(since, until)
    return TopicFilter(statuses=tuple(dict.fromkeys(status)), language=language, since=since, until=until)


# ------------------------------------------------------------------------------------------ cursors
def _write(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _bounded(value: int) -> int:
    if not -MAX_ID <= value <= MAX_ID:
        raise ValueError(f"{value} is out of range")
    return value


def _reader(kind: ValueKind) -> Callable[[Any], Any]:
    if kind == "time":
        return lambda raw: _utc(datetime.fromisoformat(str(raw)))
    if kind == "int":
        return lambda raw: _bounded(int(raw))
    return float


def encode_after(after: After, digest: str) -> str:
    """The cursor of the page after ``after`` (last sort value, last id) in the listing ``digest``."""
    value, last_id = after
    return cursors.encode_cursor({"v": _write(value), "i": last_id}, digest)


def decode_after(token: str, digest: str, sort: str) -> After:
    """The position in ``token``, checked against the listing's fingerprint ``digest``; 422 when invalid."""
    read = _reader(SORT_KINDS[sort])

    def position(data: dict[str, Any]) -> After:
        try:
            return read(data["v"]), _bounded(int(data["i"]))
        except OverflowError as exc:  # an infinite number
            raise ValueError(str(exc)) from exc

    return cursors.decode_cursor(
        token,
        digest,
        position,
        malformed="pass the next_cursor of the previous page as is",
        foreign="it belongs to another listing; send the same filters, sort and limit",
    )
