"""Input that PostgreSQL cannot store is a 422 naming the field, never a 500 (issue 15, found by fuzzing):
NUL and lone surrogates anywhere in a request, ids beyond BIGINT and versions beyond INTEGER."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, FastAPI, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel

from serve_apps.errors import install_error_handlers
from serve_apps.inputs import (
    MAX_ID,
    MAX_VERSION,
    Id,
    IsoDateTime,
    Version,
    reject_unstorable_text,
    unstorable_text,
)


class Body(BaseModel):
    title: str
    tags: list[str] = []
    meta: dict[str, str] = {}


def make_client() -> TestClient:
    app = FastAPI(dependencies=[Depends(reject_unstorable_text)])
    install_error_handlers(app)

    @app.get("/documents/{document_id}")
    def document(document_id: Id, target: Annotated[str | None, Query()] = None) -> dict[str, int]:
        return {"id": document_id}

    @app.get("/items/{item_id}/revisions/{version}")
    def revision(item_id: Id, version: Version) -> dict[str, int]:
        return {"id": item_id, "version": version}

    @app.post("/items")
    def create(body: Body) -> dict[str, str]:
        return {"title": body.title}

    return TestClient(app, raise_server_exceptions=False)


def fields(resp: object) -> list[str]:
    body = resp.json()  # type: ignore[attr-defined]
    assert resp.status_code == 422, body  # type: ignore[attr-defined]
    assert body["error"]["code"] == "invalid_request"
    return [d["field"] for d in body["error"]["details"]]


def test_unstorable_text_names_each_place() -> None:
    value = {"title": "ok", "tags": ["a", "b\x00"], "meta": {"k\x00": "v", "x": "\ud800"}}
    found = dict(unstorable_text(value, ("body",)))
    assert set(found) == {("body", "tags", 1), ("body", "meta", "k\x00"), ("body", "meta", "x")}
    assert "NUL" in found[("body", "tags", 1)]
    assert "surrogate" in found[("body", "meta", "x")] and "U+D800" in found[("body", "meta", "x")]
    assert list(unstorable_text({"title": "مرحبا", "n": 3, "tags": ["é", None]}, ())) == []


def test_nul_in_a_query_parameter_is_422_naming_it() -> None:
    client = make_client()
    assert fields(client.get("/documents/1", params={"target": "user:\x001"})) == ["target"]
    assert client.get("/documents/1", params={"target": "user:1"}).status_code == 200


def test_nul_in_body_strings_is_422_naming_each_field() -> None:
    client = make_client()
    resp = client.post("/items", json={"title": "t\x00", "tags": ["ok", "\x00"]})
    assert fields(resp) == ["title", "tags.1"]
    assert "NUL" in resp.json()["error"]["message"]
    lone = client.post(
        "/items", content=b'{"title": "\\ud800"}', headers={"content-type": "application/json"}
    )
    assert fields(lone) == ["title"]
    assert client.post("/items", json={"title": "fine", "tags": ["x"]}).status_code == 200


def test_nul_in_a_header_is_422_naming_it() -> None:
    resp = make_client().get("/documents/1", headers={"X-Api-Key": "abc\x00"})
    assert fields(resp) == ["header.x-api-key"]


def test_ids_beyond_bigint_and_versions_beyond_integer_are_422() -> None:
    client = make_client()
    assert client.get(f"/documents/{MAX_ID}").status_code == 200
    assert fields(client.get(f"/documents/{MAX_ID + 1}")) == ["document_id"]
    assert fields(client.get(f"/documents/{2**64}")) == ["document_id"]
    assert fields(client.get("/documents/0")) == ["document_id"]
    assert client.get(f"/items/1/revisions/{MAX_VERSION}").status_code == 200
    assert fields(client.get(f"/items/1/revisions/{MAX_VERSION + 1}")) == ["version"]


def test_a_body_that_is_not_utf8_is_422_naming_the_body() -> None:
    # FastAPI answers 400 "There was an error parsing the body"; the API's invalid input is 422 (fuzzing).
    resp = make_client().post("/items", content=b"\xff\xfe{", headers={"content-type": "application/json"})
    assert fields(resp) == ["body"]


def test_a_date_time_is_iso_text_never_a_number() -> None:
    """Found by fuzzing (issue 20): Pydantic reads ``until=0.5`` as Unix seconds; ``IsoDateTime`` refuses
    numbers and numeric strings with a 422 and keeps ISO dates and date-times."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/since")
    def since(at: Annotated[IsoDateTime | None, Query()] = None) -> dict[str, str | None]:
        return {"at": at.isoformat() if isinstance(at, datetime) else None}

    client = TestClient(app)
    assert client.get("/since", params={"at": "2018-02-01"}).json() == {"at": "2018-02-01T00:00:00"}
    assert client.get("/since", params={"at": "2018-02-01T12:00:00Z"}).json() == {
        "at": "2018-02-01T12:00:00+00:00"
    }
    for number in ("0.5", "1700000000", "-3", "1e9", " 7 "):
        resp = client.get("/since", params={"at": number})
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["code"] == "invalid_request" and "not a number" in resp.text
    assert client.get("/since").json() == {"at": None}
