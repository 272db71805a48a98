"""Trends query parameters without a server: cursors round-trip their sort value exactly and refuse
anything else with a 422; date windows are UTC and ordered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from serve_apps.cursors import encode_cursor
from serve_apps.errors import InvalidRequest
from serve_apps.trends.params import build_story_filter, build_topic_filter, decode_after, encode_after

DIGEST = "0123456789abcdef"


@pytest.mark.parametrize(
    ("sort", "value"),
    [
        ("score", 0.1 + 0.2),  # a float that does not print short: must come back bit for bit
        ("velocity", -3.5),
        ("volume", 2**40),
        ("size", 0),
        ("recency", datetime(2026, 5, 1, 12, 30, 1, 123456, tzinfo=UTC)),
        ("time", datetime(2026, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=3)))),
    ],
)
def test_a_cursor_gives_back_the_exact_position(sort: str, value: object) -> None:
    token = encode_after((value, 2**62), DIGEST)
    assert decode_after(token, DIGEST, sort) == (value, 2**62)


@pytest.mark.parametrize(
    "token",
    [
        "not base64 at all!",
        encode_cursor({"v": 1.0}, DIGEST),  # no id
        encode_cursor({"v": "x", "i": 1}, DIGEST),  # not a number
        encode_cursor({"v": 1.0, "i": 2**64}, DIGEST),  # an id beyond BIGINT
        encode_cursor({"v": 1.0, "i": float("inf")}, DIGEST),
        encode_cursor({"v": None, "i": 1}, DIGEST),
    ],
)
def test_a_malformed_cursor_is_refused(token: str) -> None:
    with pytest.raises(InvalidRequest, match="cursor: malformed"):
        decode_after(token, DIGEST, "score")


def test_a_cursor_of_another_listing_or_sort_kind_is_refused() -> None:
    token = encode_after((1.5, 7), DIGEST)
    with pytest.raises(InvalidRequest, match="another listing"):
        decode_after(token, "fedcba9876543210", "score")
    with pytest.raises(InvalidRequest, match="cursor: malformed"):
        decode_after(token, DIGEST, "recency")  # a number where a time is expected


def test_dates_are_utc_by_default_and_since_may_not_follow_until() -> None:
    flt = build_story_filter(
        None,
        datetime(2026, 5, 1),
        datetime(2026, 5, 1),
        ["growing", "growing"],
        ["active", "dead"],
        None,
        None,
        None,
    )
    assert flt.since == flt.until == datetime(2026, 5, 1, tzinfo=UTC)
    assert flt.states == ("growing",) and flt.statuses == ("active", "dead")
    with pytest.raises(InvalidRequest, match="since must not be later than until"):
        build_topic_filter(
            None, datetime(2026, 5, 2, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC), ["active"]
        )
