"""Idempotency keys of CMS writes: the pure parts (serve_apps/cms/idempotency.py): the fingerprint, what a
retry meets, the header's checks and the middleware that keeps answers, with no database or network."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import Request

from serve_apps.cms import idempotency
from serve_apps.cms.idempotency import (
    STATE_KEY,
    AnswerRecorder,
    KeyInFlight,
    KeyReused,
    Requested,
    fingerprint,
    judge,
    replay_response,
    requested,
)
from serve_apps.cms.security import Principal
from serve_apps.errors import InvalidRequest
from storage.cms_idempotency import KeptWrite

AUTHOR = Principal("user", 3, "author")


def wanted(**changes: Any) -> Requested:
    base = {
        "principal": "user:3",
        "key": "k-1",
        "method": "POST",
        "path": "/v1/cms/items",
        "fingerprint": fingerprint("POST", "/v1/cms/items", "", b'{"title_en": "A"}'),
    }
    return Requested(**{**base, **changes})


def kept(status: int | None = 201, **changes: Any) -> KeptWrite:
    want = wanted()
    base = {
        "method": want.method,
        "path": want.path,
        "fingerprint": want.fingerprint,
        "status": status,
        "headers": {"content-type": "application/json", "etag": '"1"'},
        "body": b'{"id": 7}',
        "created_at": datetime.now(UTC),
    }
    return KeptWrite(**{**base, **changes})


def test_the_fingerprint_tells_bodies_paths_and_methods_apart_but_not_query_order() -> None:
    one = fingerprint("POST", "/items", "a=1&b=2", b"{}")
    assert one == fingerprint("post", "/items", "b=2&a=1", b"{}")
    others = {
        fingerprint("PUT", "/items", "a=1&b=2", b"{}"),
        fingerprint("POST", "/items/1", "a=1&b=2", b"{}"),
        fingerprint("POST", "/items", "a=1", b"{}"),
        fingerprint("POST", "/items", "a=1&b=2", b"{ }"),
    }
    assert one not in others and len(others) == 4


def test_a_retry_gets_the_kept_answer_marked_as_a_replay() -> None:
    replay = judge(kept(), wanted(), age_s=3)
    response = replay_response(replay.kept)
    assert response.status_code == 201 and response.body == b'{"id": 7}'
    assert response.headers["etag"] == '"1"' and response.headers["idempotent-replayed"] == "true"
    deleted = replay_response(kept(status=204, body=b"", headers={}))
    assert deleted.status_code == 204 and deleted.body == b""


@pytest.mark.parametrize(
    "changes",
    [
        {"fingerprint": fingerprint("POST", "/v1/cms/items", "", b'{"title_en": "B"}')},
        {"path": "/v1/cms/users"},
        {"method": "PUT"},
    ],
)
def test_the_same_key_for_another_request_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(KeyReused) as refused:
        judge(kept(), wanted(**changes), age_s=1)
    assert refused.value.status_code == 422 and refused.value.code == "idempotency_key_reused"


def test_a_key_without_an_answer_is_in_flight_then_lost() -> None:
    with pytest.raises(KeyInFlight) as busy:
        judge(kept(status=None), wanted(), age_s=0.5)
    assert busy.value.status_code == 409 and busy.value.headers == {"Retry-After": "1"}
    with pytest.raises(KeyInFlight) as lost:
        judge(kept(status=None), wanted(), age_s=idempotency.UNANSWERED_AFTER_S + 1)
    assert "lost" in lost.value.message and "Retry-After" not in lost.value.headers


def request(method: str, headers: dict[str, str], body: bytes = b"{}") -> Request:
    scope = {
        "type": "http",
        "method": method,
        "path": "/v1/cms/items",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


def test_the_header_is_read_on_writes_of_known_callers_and_checked() -> None:
    async def read(method: str, headers: dict[str, str], who: Principal = AUTHOR) -> Requested | None:
        return await requested(request(method, headers), who)

    got = asyncio.run(read("POST", {"Idempotency-Key": "9b2e"}))
    assert got is not None and got.principal == "user:3" and got.key == "9b2e"
    assert got.fingerprint == fingerprint("POST", "/v1/cms/items", "", b"{}")
    assert asyncio.run(read("POST", {})) is None
    assert asyncio.run(read("GET", {"Idempotency-Key": "k"})) is None
    assert asyncio.run(read("POST", {"Idempotency-Key": "k"}, Principal.anonymous())) is None
    for bad in ("", "x" * 256, "with space", "tab\there"):
        with pytest.raises(InvalidRequest) as refused:
            asyncio.run(read("POST", {"Idempotency-Key": bad}))
        assert refused.value.details == [
            {"field": "header.Idempotency-Key", "reason": refused.value.details[0]["reason"]}
        ]


def run_app(claim: Requested | None, *, store_fails: bool = False) -> tuple[list[Any], list[Any]]:
    """Run ``AnswerRecorder`` around an app answering in two body messages; (stored, sent)."""
    stored: list[Any] = []
    sent: list[Any] = []

    async def store(principal: str, key: str, status: int, headers: dict[str, str], body: bytes) -> None:
        if store_fails:
            raise RuntimeError("database down")
        stored.append((principal, key, status, headers, body, list(sent)))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if claim is not None:
            scope["state"][STATE_KEY] = claim
        headers = [(b"content-type", b"application/json"), (b"x-other", b"1"), (b"location", b"/items/7")]
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"id":', "more_body": True})
        await send({"type": "http.response.body", "body": b" 7}"})

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    recorder = AnswerRecorder(app, store=store)
    asyncio.run(recorder({"type": "http", "method": "POST"}, receive, send))
    return stored, sent


def test_the_answer_of_a_claiming_write_is_kept_before_it_is_sent() -> None:
    stored, sent = run_app(wanted())
    assert stored == [
        ("user:3", "k-1", 201, {"content-type": "application/json", "location": "/items/7"}, b'{"id": 7}', [])
    ]
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body", "http.response.body"]


def test_other_requests_pass_through_and_a_failed_store_still_answers() -> None:
    stored, sent = run_app(None)
    assert stored == [] and len(sent) == 3
    stored, sent = run_app(wanted(), store_fails=True)
    assert stored == [] and sent[-1]["body"] == b" 7}"
