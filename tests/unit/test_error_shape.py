"""Every error the API returns has one shape: {"error": {"code", "message"[, "details"]}}."""

from __future__ import annotations

import sqlalchemy.exc
from fastapi import FastAPI, Query
from fastapi.testclient import TestClient

from actors.errors import IndexNotReady
from serve_apps.errors import InvalidRequest, NotReady, install_error_handlers
from storage.errors import DatabaseUnavailable, LastAdmin


def make_client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/typed")
    def typed(k: int = Query(ge=1, le=100)) -> dict[str, int]:
        return {"k": k}

    @app.get("/invalid")
    def invalid() -> None:
        raise InvalidRequest("q: blank")

    @app.get("/not-ready")
    def not_ready() -> None:
        raise NotReady("loading", retry_after_s=7)

    @app.get("/index-not-ready")
    def index_not_ready() -> None:
        raise IndexNotReady(3)

    @app.get("/db")
    def db() -> None:
        raise DatabaseUnavailable("postgresql://u:***@h/d", "refused")

    @app.get("/db-lost")
    def db_lost() -> None:
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    @app.get("/last-admin")
    def last_admin() -> None:
        raise LastAdmin(3, "deleting it")

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    return TestClient(app, raise_server_exceptions=False)


def assert_shape(body: dict[str, object], code: str) -> None:
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error, dict)
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]


def test_validation_error_is_422_with_field_details() -> None:
    resp = make_client().get("/typed", params={"k": 0})
    assert resp.status_code == 422
    assert_shape(resp.json(), "invalid_request")
    assert resp.json()["error"]["details"][0]["field"] == "k"


def test_removing_the_last_admin_is_409_last_admin() -> None:
    resp = make_client().get("/last-admin")
    assert resp.status_code == 409
    assert_shape(resp.json(), "last_admin")
    assert resp.json()["error"]["message"].startswith("user 3 is the last active admin; deleting it would")


def test_api_errors_and_headers() -> None:
    client = make_client()
    resp = client.get("/invalid")
    assert resp.status_code == 422
    assert_shape(resp.json(), "invalid_request")
    resp = client.get("/not-ready")
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "7"
    assert_shape(resp.json(), "not_ready")
    resp = client.get("/index-not-ready")
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
    assert_shape(resp.json(), "index_not_ready")
    for path in ("/db", "/db-lost"):
        resp = client.get(path)
        assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
        assert_shape(resp.json(), "database_unavailable")
        assert "server closed" not in resp.text


def test_unknown_route_and_unexpected_error() -> None:
    client = make_client()
    resp = client.get("/nope")
    assert resp.status_code == 404
    assert_shape(resp.json(), "not_found")
    resp = client.get("/boom")
    assert resp.status_code == 500
    assert_shape(resp.json(), "internal_error")
    assert "secret internals" not in resp.text
