"""The CMS application through Serve's HTTP proxy, with real clients and real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from ray import serve
from sqlalchemy import text

from tests.conftest import CMS_TABLES, SHARED_DATA, truncate
from tests.support import cms_service
from tests.support.cms_service import PASSWORD
from tests.support.polling import wait_for

PORT = 8012  # the session's Serve proxy (the search e2e tests use the same one)
BASE = f"http://127.0.0.1:{PORT}/v1/cms"
LIMITED = f"http://127.0.0.1:{PORT}/v1/cms-limited"
SECRET = "e2e-secret-" + "x" * 40
NAMESPACE = "pulse-e2e"


@pytest.fixture(scope="module")
def cms(  # type: ignore[no-untyped-def]
    ray_session: None, database_url: str, engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    from cluster.top.cms_scheduler import start_cms_scheduler

    truncate(engine, CMS_TABLES)
    cms_service.create_users(database_url)
    storage = str(tmp_path_factory.mktemp("cms-storage"))
    common = cms_service.cms_args(database_url, SECRET, storage, NAMESPACE)
    args = {
        **common,
        "rate_per_key": "100000/minute",
        "rate_per_ip": "100000/minute",
        "webhook_private_targets": True,  # the test subscriber listens on 127.0.0.1
    }
    cms_service.deploy_cms("cms", "/v1/cms", args, port=PORT)
    start_cms_scheduler(args)  # as `pulse up` does beside the CMS application
    limited = {**common, "rate_per_key": "100000/minute", "rate_per_ip": "5/minute", "scheduler": False}
    cms_service.deploy_cms("cms-limited", "/v1/cms-limited", limited, port=PORT)
    yield cms_service.access_tokens(BASE)
    serve.delete("cms")
    serve.delete("cms-limited")
    import ray

    from cluster.ground.constants import CMS_SCHEDULER_NAME

    ray.kill(ray.get_actor(CMS_SCHEDULER_NAME, namespace=NAMESPACE), no_restart=True)


def auth(tokens: dict[str, str], who: str | None) -> dict[str, str]:
    return {} if who is None else {"Authorization": f"Bearer {tokens[who]}"}


def create(tokens: dict[str, str], who: str = "author", **fields: Any) -> dict[str, Any]:
    body = {"title_en": "A title", **fields}
    resp = httpx.post(f"{BASE}/items", json=body, headers=auth(tokens, who))
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


def move(tokens: dict[str, str], item_id: int, *statuses: str) -> None:
    for status in statuses:
        resp = httpx.post(
            f"{BASE}/items/{item_id}/transition", json={"to": status}, headers=auth(tokens, "admin")
        )
        assert resp.status_code == 200, resp.text


def test_login_refresh_rotation_and_logout(cms: dict[str, str]) -> None:
    bad = httpx.post(f"{BASE}/auth/login", json={"email": "editor@pulse.test", "password": "wrong password!"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthorized"
    pair = httpx.post(f"{BASE}/auth/login", json={"email": "editor@pulse.test", "password": PASSWORD}).json()
    fresh = httpx.post(f"{BASE}/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert fresh.status_code == 200 and fresh.json()["access_token"]
    reused = httpx.post(f"{BASE}/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert reused.status_code == 401  # rotation: a refresh token works once
    token = fresh.json()["access_token"]
    assert httpx.post(f"{BASE}/auth/logout", headers={"Authorization": f"Bearer {token}"}).status_code == 204
    after = httpx.post(f"{BASE}/auth/refresh", json={"refresh_token": fresh.json()["refresh_token"]})
    assert after.status_code == 401
    garbage = httpx.get(f"{BASE}/items", headers={"Authorization": "Bearer not.a.jwt"})
    assert garbage.status_code == 401 and garbage.headers["WWW-Authenticate"] == "Bearer"
    denied = httpx.get(f"{BASE}/audit", params={"outcome": "denied"}, headers=auth(cms, "admin")).json()
    assert any(row["action"] == "auth.login" for row in denied)


# Every role x action cell. "own"/"other": the author acting on an item they wrote / someone else wrote.
# Values: expected HTTP status class: 2 (allowed), 3 (refused: 403), 1 (anonymous refused: 401),
# 4 (not found: an anonymous caller is not told that an unpublished item exists).
CALLERS = ("admin", "editor", "author:own", "author:other", "viewer", "anonymous")
MATRIX: dict[str, tuple[int, ...]] = {
    #                          admin editor own other viewer anon
    "create": (2, 2, 2, 2, 3, 1),
    "read_draft": (2, 2, 2, 3, 3, 4),
    "read_published": (2, 2, 2, 2, 2, 2),
    "update_draft": (2, 2, 2, 3, 3, 4),
    "update_in_review": (2, 2, 3, 3, 3, 4),
    "update_archived": (3, 3, 3, 3, 3, 4),
    "submit": (2, 2, 2, 3, 3, 4),
    "reject": (2, 2, 3, 3, 3, 4),
    "publish_reviewed": (2, 2, 3, 3, 3, 4),
    "publish_draft": (2, 2, 3, 3, 3, 4),
    "unpublish": (2, 2, 3, 3, 3, 1),
    "archive": (2, 2, 3, 3, 3, 1),
    "reopen": (2, 2, 3, 3, 3, 4),
    "schedule": (2, 2, 3, 3, 3, 4),
    "revisions": (2, 2, 2, 3, 3, 4),
    "restore": (2, 2, 2, 3, 3, 4),
    "delete": (2, 3, 3, 3, 3, 4),
    "bulk": (2, 2, 3, 3, 3, 1),
    "taxonomy": (2, 2, 3, 3, 3, 1),
    "users": (2, 3, 3, 3, 3, 1),
    "keys": (2, 3, 3, 3, 3, 1),
    "audit": (2, 3, 3, 3, 3, 1),
    "webhooks": (2, 3, 3, 3, 3, 1),
}
STATE = {  # the status the target item starts in, for item actions
    "read_draft": "draft",
    "read_published": "published",
    "update_draft": "draft",
    "update_in_review": "in_review",
    "update_archived": "archived",
    "submit": "draft",
    "reject": "in_review",
    "publish_reviewed": "in_review",
    "publish_draft": "draft",
    "unpublish": "published",
    "archive": "published",
    "reopen": "archived",
    "schedule": "draft",
    "revisions": "draft",
    "restore": "draft",
    "delete": "draft",
    "bulk": "in_review",
}
PATH_TO = {
    "draft": (),
    "in_review": ("in_review",),
    "published": ("published",),
    "archived": ("published", "archived"),
}
TRANSITION = {
    "submit": "in_review",
    "reject": "draft",
    "publish_reviewed": "published",
    "publish_draft": "published",
    "unpublish": "draft",
    "archive": "archived",
    "reopen": "draft",
}


def request_for(action: str, item: dict[str, Any] | None, counter: int) -> tuple[str, str, Any]:
    item_url = f"{BASE}/items/{item['id']}" if item else ""
    if action == "create":
        return "POST", f"{BASE}/items", {"title_en": f"New {counter}"}
    if action.startswith("read_"):
        return "GET", item_url, None
    if action.startswith("update_"):
        return "PATCH", item_url, {"summary_en": f"changed {counter}"}
    if action in TRANSITION:
        return "POST", f"{item_url}/transition", {"to": TRANSITION[action]}
    if action == "schedule":
        return "PATCH", item_url, {"publish_at": "2031-01-01T00:00:00Z"}
    if action == "revisions":
        return "GET", f"{item_url}/revisions", None
    if action == "restore":
        return "POST", f"{item_url}/revisions/1/restore", None
    if action == "delete":
        return "DELETE", item_url, None
    if action == "bulk":
        return "POST", f"{BASE}/bulk", {"action": "publish", "items": [{"id": item["id"]}]}  # type: ignore[index]
    if action == "taxonomy":
        return "POST", f"{BASE}/categories", {"slug": f"cat-{counter}", "name_en": "Cat", "name_ar": "فئة"}
    return "GET", f"{BASE}/{action}", None


def test_every_role_action_cell_over_http(cms: dict[str, str]) -> None:
    denied_before = len(
        httpx.get(
            f"{BASE}/audit", params={"outcome": "denied", "limit": 500}, headers=auth(cms, "admin")
        ).json()
    )
    counter = 0
    refused = 0
    failures = []
    for action, expected_row in MATRIX.items():
        for caller, expected in zip(CALLERS, expected_row, strict=True):
            counter += 1
            item = None
            if action in STATE:
                writer = "author2" if caller == "author:other" else "author"
                item = create(cms, writer, title_en=f"Item {counter}")
                move(cms, item["id"], *PATH_TO[STATE[action]])
            who = None if caller == "anonymous" else caller.split(":")[0]
            method, url, body = request_for(action, item, counter)
            resp = httpx.request(method, url, json=body, headers=auth(cms, who))
            got = {2: 2, 4: 3 if resp.status_code == 403 else 4 if resp.status_code == 404 else 1}.get(
                resp.status_code // 100, 0
            )
            if resp.status_code == 401:
                got = 1
            if got != expected:
                failures.append((action, caller, expected, resp.status_code, resp.text[:200]))
            if expected in (1, 3):
                refused += 1
                assert resp.json()["error"]["message"], (action, caller)
    assert failures == [], "\n".join(map(str, failures))
    denied_after = len(
        httpx.get(
            f"{BASE}/audit", params={"outcome": "denied", "limit": 500}, headers=auth(cms, "admin")
        ).json()
    )
    assert denied_after - denied_before == refused  # every refusal is in the audit log


def test_stale_etag_gets_412_and_changes_nothing(cms: dict[str, str]) -> None:
    item = create(cms, "editor", title_en="Versioned")
    url = f"{BASE}/items/{item['id']}"
    got = httpx.get(url, headers=auth(cms, "editor"))
    assert got.headers["ETag"] == '"1"'
    ok = httpx.patch(url, json={"title_en": "Second"}, headers={**auth(cms, "editor"), "If-Match": '"1"'})
    assert ok.status_code == 200 and ok.headers["ETag"] == '"2"'
    stale = httpx.patch(
        url, json={"title_en": "Lost update"}, headers={**auth(cms, "editor"), "If-Match": '"1"'}
    )
    assert stale.status_code == 412 and stale.json()["error"]["code"] == "stale_version"
    assert httpx.get(url, headers=auth(cms, "editor")).json()["en"]["title"] == "Second"
    bad = httpx.patch(url, json={"title_en": "x"}, headers={**auth(cms, "editor"), "If-Match": "yesterday"})
    assert bad.status_code == 422


def test_revisions_diff_and_restore(cms: dict[str, str]) -> None:
    item = create(cms, "editor", title_en="Draft one", summary_en="first summary")
    url = f"{BASE}/items/{item['id']}"
    httpx.patch(url, json={"title_en": "Draft two"}, headers=auth(cms, "editor"))
    revisions = httpx.get(f"{url}/revisions", headers=auth(cms, "editor")).json()
    assert [r["version"] for r in revisions] == [2, 1]
    diff = httpx.get(f"{url}/diff", params={"from": 1, "to": 2}, headers=auth(cms, "editor")).json()
    assert diff["changes"] == [{"field": "title_en", "before": "Draft one", "after": "Draft two"}]
    restored = httpx.post(f"{url}/revisions/1/restore", headers={**auth(cms, "editor"), "If-Match": '"2"'})
    assert restored.status_code == 200 and restored.json()["en"]["title"] == "Draft one"
    assert restored.json()["version"] == 3


def test_arabic_full_text_search_finds_a_stemmed_word(cms: dict[str, str]) -> None:
    rows = (
        (SHARED_DATA / "sib200_ar_en" / "arb_Arab" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    )
    body = next(r.split("\t", 2)[2] for r in rows if "الرحلات" in r)  # "the trips"
    item = create(cms, "editor", title_ar="دليل المسافر", body_ar=f"<p>{body}</p>")
    move(cms, item["id"], "published")
    found = httpx.get(
        f"{BASE}/items", params={"q": "رحلة", "locale": "ar", "sort": "relevance"}
    ).json()  # anonymous
    assert [i["id"] for i in found["items"]] == [item["id"]]
    assert found["items"][0]["localized"]["title"] == "دليل المسافر"


def test_locale_fallback_and_sanitised_html(cms: dict[str, str]) -> None:
    item = create(
        cms,
        "editor",
        title_en="Only English",
        body_en='<p onclick="steal()">Hi<script>alert(1)</script> <a href="javascript:x()">link</a></p>',
    )
    got = httpx.get(f"{BASE}/items/{item['id']}", params={"locale": "ar"}, headers=auth(cms, "editor")).json()
    assert got["localized"]["title"] == "Only English" and "title" in got["localized"]["fallbacks"]
    html = got["en"]["body"]
    assert "<script" not in html and "onclick" not in html and "javascript:" not in html and "Hi" in html


def test_bulk_publish_of_100_items_is_all_or_nothing(cms: dict[str, str]) -> None:
    created = httpx.post(
        f"{BASE}/bulk",
        json={
            "action": "create",
            "create": [{"title_en": f"Bulk {n}", "title_ar": f"جماعي {n}"} for n in range(100)],
        },
        headers=auth(cms, "editor"),
        timeout=60,
    )
    assert created.status_code == 200, created.text
    ids = [r["id"] for r in created.json()["results"]]
    assert len(ids) == 100 and all(r["ok"] for r in created.json()["results"])
    # One stale version among 100: nothing is published, every failure is reported.
    items = [{"id": i, "version": 1} for i in ids]
    items[57]["version"] = 9
    refused = httpx.post(
        f"{BASE}/bulk", json={"action": "publish", "items": items}, headers=auth(cms, "editor")
    )
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "bulk_rolled_back" and [d["field"] for d in error["details"]] == ["items[57]"]
    statuses = {httpx.get(f"{BASE}/items/{i}", headers=auth(cms, "editor")).json()["status"] for i in ids[:5]}
    assert statuses == {"draft"}
    items[57]["version"] = 1
    done = httpx.post(f"{BASE}/bulk", json={"action": "publish", "items": items}, headers=auth(cms, "editor"))
    assert done.status_code == 200 and done.json()["count"] == 100
    published = httpx.get(f"{BASE}/items", params={"q": "Bulk", "limit": 100, "locale": "en"}).json()["items"]
    assert {i["id"] for i in published} >= set(ids)


def test_invalid_input_is_422_in_one_shape(cms: dict[str, str]) -> None:
    for body in (
        {},
        {"title_en": "x", "featured_image_url": "ftp://nope"},
        {"title_en": "x", "unknown": 1},
        {"title_en": "x", "publish_at": "2030-01-02T00:00:00Z", "unpublish_at": "2030-01-01T00:00:00Z"},
        {"title_en": "x", "tags": ["no-such-tag"]},
    ):
        resp = httpx.post(f"{BASE}/items", json=body, headers=auth(cms, "editor"))
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json()["error"]["code"] == "invalid_request"
    cursor = httpx.get(f"{BASE}/items", params={"cursor": "garbage"}, headers=auth(cms, "editor"))
    assert cursor.status_code == 422


def test_the_last_admin_cannot_be_removed_and_a_shell_restores_one(  # type: ignore[no-untyped-def]
    cms: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    admin = auth(cms, "admin")
    me = next(u for u in httpx.get(f"{BASE}/users", headers=admin).json() if u["email"] == "admin@pulse.test")
    for method, body in (("PATCH", {"role": "author"}), ("PATCH", {"active": False}), ("DELETE", None)):
        resp = httpx.request(method, f"{BASE}/users/{me['id']}", json=body, headers=admin)
        assert resp.status_code == 409, (method, body, resp.text)
        assert set(resp.json()) == {"error"} and resp.json()["error"]["code"] == "last_admin"
        assert f"user {me['id']} is the last active admin" in resp.json()["error"]["message"]
    still = httpx.get(f"{BASE}/users", headers=admin).json()
    assert [(u["role"], u["active"]) for u in still if u["id"] == me["id"]] == [("admin", True)]
    denied = httpx.get(
        f"{BASE}/audit", params={"target": f"user:{me['id']}", "outcome": "denied"}, headers=admin
    ).json()
    assert sorted(r["action"] for r in denied) == ["user.delete", "user.update", "user.update"]
    spec = httpx.get(f"{BASE}/openapi.json").json()["paths"]["/users/{user_id}"]
    assert "409" in spec["patch"]["responses"] and "409" in spec["delete"]["responses"]

    # Whoever has a shell restores an admin (pulse cms admin), who logs in with the printed password.
    from cluster.ground.settings import get_settings
    from cluster.top import cli

    monkeypatch.setenv("PULSE_DATABASE__URL", database_url)
    get_settings.cache_clear()
    try:
        assert cli.main(["cms", "admin", "--email", "rescue@pulse.test", "--create"]) == 0
    finally:
        get_settings.cache_clear()
    password = capsys.readouterr().out.split("new password (shown once, store it now): ")[1].split()[0]
    login = httpx.post(f"{BASE}/auth/login", json={"email": "rescue@pulse.test", "password": password})
    assert login.status_code == 200, login.text
    rescuer = {"Authorization": f"Bearer {login.json()['access_token']}"}
    users = httpx.get(f"{BASE}/users", headers=rescuer).json()  # an admin's route
    rescue = next(u for u in users if u["email"] == "rescue@pulse.test")
    assert (rescue["role"], rescue["active"]) == ("admin", True)
    audit = httpx.get(f"{BASE}/audit", params={"target": f"user:{rescue['id']}"}, headers=rescuer).json()
    assert audit[0]["action"] == "user.restore_admin" and audit[0]["actor"].startswith("cli:")
    # With two admins, either may go: the session's admin deletes the rescuer.
    assert httpx.delete(f"{BASE}/users/{rescue['id']}", headers=admin).status_code == 204
    gone = httpx.post(f"{BASE}/auth/login", json={"email": "rescue@pulse.test", "password": password})
    assert gone.status_code == 401


def test_body_size_and_rate_limits(cms: dict[str, str]) -> None:
    big = {"title_en": "big", "body_en": "x" * 100_000}
    resp = httpx.post(f"{BASE}/items", json=big, headers=auth(cms, "editor"))
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:
        yield b'{"title_en": "chunked", "body_en": "'
        for _ in range(20):
            yield b"y" * 5_000
        yield b'"}'

    streamed = httpx.post(
        f"{BASE}/items", content=chunks(), headers={**auth(cms, "editor"), "Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    codes = [httpx.get(f"{LIMITED}/items").status_code for _ in range(8)]
    assert codes[:5] == [200] * 5 and codes[-1] == 429
    limited = httpx.get(f"{LIMITED}/items")
    assert int(limited.headers["Retry-After"]) >= 1 and limited.json()["error"]["code"] == "rate_limited"


def test_webhooks_to_private_addresses_are_refused_by_default(cms: dict[str, str]) -> None:
    """The limited app runs with the default settings: no webhook may target this machine or a private
    network (internal services, cloud metadata)."""
    admin = auth(cms, "admin")
    before = httpx.get(f"{LIMITED}/webhooks", headers=admin).json()
    for url in (
        "http://127.0.0.1:8265/api/jobs",
        "http://localhost:5432/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8000/hook",
        "https://10.0.0.7/hook",
    ):
        resp = httpx.post(f"{LIMITED}/webhooks", json={"url": url, "events": []}, headers=admin)
        assert resp.status_code == 422, (url, resp.text)
        error = resp.json()["error"]
        assert error["code"] == "invalid_request" and "PULSE_CMS__WEBHOOK_PRIVATE_TARGETS" in error["message"]
    assert httpx.get(f"{LIMITED}/webhooks", headers=admin).json() == before


class Subscriber:
    """A real local HTTP endpoint receiving webhooks: answers 500 to the first ``fail_first`` POSTs."""

    def __init__(self, fail_first: int) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                code = 500 if len(outer.received) <= outer.fail_first else 200
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_scheduled_publish_fires_after_a_scheduler_restart_and_webhooks_are_signed_and_retried(  # type: ignore[no-untyped-def]
    cms: dict[str, str], engine
) -> None:
    import json
    import time
    from datetime import UTC, datetime, timedelta

    import ray

    from cluster.ground.cms_signing import verify
    from cluster.ground.constants import CMS_SCHEDULER_NAME

    subscriber = Subscriber(fail_first=1)
    hook = httpx.post(
        f"{BASE}/webhooks",
        json={"url": subscriber.url, "events": ["item.published"]},
        headers=auth(cms, "admin"),
    )
    assert hook.status_code == 201, hook.text
    secret = hook.json()["secret"]
    when = datetime.now(UTC) + timedelta(seconds=3)
    item = create(
        cms, "editor", title_en="Scheduled launch", title_ar="إطلاق مجدول", publish_at=when.isoformat()
    )
    scheduler = ray.get_actor(CMS_SCHEDULER_NAME, namespace=NAMESPACE)
    ray.kill(scheduler, no_restart=False)  # Ray restarts it; everything it needs is in PostgreSQL

    url = f"{BASE}/items/{item['id']}"
    wait_for(lambda: httpx.get(url, headers=auth(cms, "editor")).json()["status"] == "published", 60)
    assert datetime.now(UTC) >= when
    # The webhook: first attempt answered 500, retried with backoff, then delivered; every POST signed.
    wait_for(lambda: len(subscriber.received) >= 2, 60)
    for headers, body in subscriber.received:
        assert verify(
            secret, int(headers["x-pulse-timestamp"]), body, headers["x-pulse-signature"], now=time.time()
        )
        assert headers["x-pulse-event"] == "item.published"
        assert json.loads(body)["item_ids"] == [item["id"]]
    log = httpx.get(f"{BASE}/webhooks/{hook.json()['id']}/deliveries", headers=auth(cms, "admin")).json()
    assert log[0]["status"] == "delivered" and log[0]["attempts"] == 2
    # Published means searchable: a document per locale, then embedded for the active model.
    assert sorted(wait_for(lambda: cms_documents(engine, item["id"]), 30)) == ["ar", "en"]
    wait_for(lambda: all(n > 0 for n in cms_documents(engine, item["id"]).values()), 180)


def cms_documents(engine, item_id: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """The search documents of a CMS item by language, with how many embeddings each has."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT d.language, count(e.document_id) FROM documents d "
                "LEFT JOIN document_embeddings e ON e.document_id = d.id "
                "WHERE d.metadata->>'cms_item_id' = :i GROUP BY d.language"
            ),
            {"i": str(item_id)},
        ).all()
    return {r[0]: int(r[1]) for r in rows}


@pytest.fixture
def schedules(engine) -> Iterator[list[str]]:  # type: ignore[no-untyped-def]
    """Two schedules as the job scheduler seeds them (one disabled by the settings), with runs."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy.orm import Session

    from storage.schedules import ScheduleRepository, ScheduleSpec

    now = datetime.now(UTC)
    names = ["e2e-collect", "e2e-backup"]
    with Session(engine) as db, db.begin():
        repo = ScheduleRepository(db)
        repo.seed(ScheduleSpec(name=names[0], kind="collect", every_s=900), first_run_at=now, now=now)
        off = ScheduleSpec(
            name=names[1], kind="backup", every_s=86400, enabled=False, note="no backup URI set"
        )
        repo.seed(off, first_run_at=None, now=now)
        for n, state in enumerate(("succeeded", "failed")):
            run = repo.start_run(
                schedule=names[0],
                kind="collect",
                submission_id=f"e2e-{n}-{now.timestamp()}",
                reason="due",
                now=now,
            )
            assert run is not None
            repo.finish_run(run.id, state=state, message=f"run {n}\nlog", now=now + timedelta(seconds=n))
    yield names
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM schedules WHERE name LIKE 'e2e-%'"))


def test_schedules_and_their_runs_for_staff_and_admin_controls(
    cms: dict[str, str], schedules: list[str]
) -> None:
    collect, backup = schedules
    listed = {s["name"]: s for s in httpx.get(f"{BASE}/schedules", headers=auth(cms, "editor")).json()}
    assert {collect, backup} <= set(listed)
    assert listed[collect]["timing"] == "every 900 s" and listed[collect]["enabled"] is True
    assert listed[collect]["last_run"]["state"] == "failed"  # the newest run
    assert listed[backup]["enabled"] is False and listed[backup]["note"] == "no backup URI set"
    assert listed[backup]["last_run"] is None

    runs = httpx.get(
        f"{BASE}/schedule-runs", params={"schedule": collect}, headers=auth(cms, "editor")
    ).json()
    assert [r["state"] for r in runs] == ["failed", "succeeded"]
    failed = httpx.get(
        f"{BASE}/schedule-runs",
        params={"schedule": collect, "state": "succeeded"},
        headers=auth(cms, "admin"),
    ).json()
    assert [r["message"] for r in failed] == ["run 0\nlog"]
    unknown = httpx.get(f"{BASE}/schedule-runs", params={"schedule": "e2e-nope"}, headers=auth(cms, "admin"))
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "schedule_not_found"

    # Editors read; only admins change; authors, viewers and anonymous callers see nothing.
    assert httpx.post(f"{BASE}/schedules/{collect}/pause", headers=auth(cms, "editor")).status_code == 403
    for who in ("author", "viewer", None):
        assert httpx.get(f"{BASE}/schedules", headers=auth(cms, who)).status_code == (
            401 if who is None else 403
        )
    paused = httpx.post(f"{BASE}/schedules/{collect}/pause", headers=auth(cms, "admin"))
    assert paused.status_code == 200 and paused.json()["paused"] is True
    requested = httpx.post(f"{BASE}/schedules/{collect}/run-now", headers=auth(cms, "admin"))
    assert requested.status_code == 202 and requested.json()["run_requested_at"] is not None
    resumed = httpx.post(f"{BASE}/schedules/{collect}/resume", headers=auth(cms, "admin"))
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    disabled = httpx.post(f"{BASE}/schedules/{backup}/run-now", headers=auth(cms, "admin"))
    assert disabled.status_code == 409 and "no backup URI set" in disabled.json()["error"]["message"]
    missing = httpx.post(f"{BASE}/schedules/e2e-nope/pause", headers=auth(cms, "admin"))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "schedule_not_found"
    bad = httpx.post(f"{BASE}/schedules/Not%20A%20Name/pause", headers=auth(cms, "admin"))
    assert bad.status_code == 422

    audit = httpx.get(
        f"{BASE}/audit", params={"target": f"schedule:{collect}"}, headers=auth(cms, "admin")
    ).json()
    ok = [(a["action"], a["outcome"]) for a in audit]
    assert ok[:3] == [("schedule.resume", "ok"), ("schedule.run_now", "ok"), ("schedule.pause", "ok")]
    assert ("schedule.pause", "denied") in ok  # the editor's refusal
    assert (
        audit[2]["before"] == {"paused": False, "run_requested_at": None}
        and audit[2]["after"]["paused"] is True
    )


def test_a_demoted_or_deactivated_user_loses_its_rights_within_seconds(cms: dict[str, str]) -> None:
    """An access token carries the role of its login; the CMS acts on the role its user has now."""
    admin = auth(cms, "admin")
    made = httpx.post(
        f"{BASE}/users",
        json={"email": "demoted@pulse.test", "display_name": "D", "password": PASSWORD, "role": "editor"},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    user_id = made.json()["id"]
    token = httpx.post(f"{BASE}/auth/login", json={"email": "demoted@pulse.test", "password": PASSWORD})
    mine = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def category(n: int) -> int:
        body = {"slug": f"demoted-{n}", "name_en": "Demoted"}
        return httpx.post(f"{BASE}/categories", json=body, headers=mine).status_code

    assert category(0) == 201  # an editor manages taxonomy
    demoted = httpx.patch(f"{BASE}/users/{user_id}", json={"role": "viewer"}, headers=admin)
    assert demoted.status_code == 200, demoted.text
    tries = iter(range(1, 1000))
    wait_for(lambda: category(next(tries)) == 403, 15, "the demoted user's token kept the editor role")
    assert httpx.get(f"{BASE}/items", headers=mine).status_code == 200  # still a viewer
    httpx.patch(f"{BASE}/users/{user_id}", json={"active": False}, headers=admin).raise_for_status()
    wait_for(
        lambda: httpx.get(f"{BASE}/items", headers=mine).status_code == 401,
        15,
        "the deactivated user's token still worked",
    )
    refused = httpx.get(f"{BASE}/items", headers=mine).json()
    assert "deactivated or deleted" in refused["error"]["message"]


def test_a_write_retried_with_its_idempotency_key_is_applied_once(cms: dict[str, str]) -> None:
    import asyncio
    import uuid

    def count(title: str) -> int:
        listed = httpx.get(f"{BASE}/items", params={"q": title, "limit": 100}, headers=auth(cms, "admin"))
        assert listed.status_code == 200, listed.text
        return sum(1 for item in listed.json()["items"] if item["en"]["title"] == title)

    # A create sent twice with one key: one item; the retry gets the first answer, marked as a replay.
    key, title = str(uuid.uuid4()), f"Idempotent {uuid.uuid4().hex[:8]}"
    headers = {**auth(cms, "author"), "Idempotency-Key": key}
    first = httpx.post(f"{BASE}/items", json={"title_en": title}, headers=headers)
    again = httpx.post(f"{BASE}/items", json={"title_en": title}, headers=headers)
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.json() == first.json() and again.headers["etag"] == first.headers["etag"]
    assert again.headers.get("idempotent-replayed") == "true" and "idempotent-replayed" not in first.headers
    assert count(title) == 1
    # The same key for another body is refused; another caller's same key is its own.
    other = httpx.post(f"{BASE}/items", json={"title_en": title + " bis"}, headers=headers)
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    editor = httpx.post(
        f"{BASE}/items", json={"title_en": title}, headers={**auth(cms, "editor"), "Idempotency-Key": key}
    )
    assert editor.status_code == 201 and editor.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in editor.headers and count(title) == 2
    # Malformed keys are 422 in the one error shape, and nothing is written.
    for bad in ("", "x" * 256, "a key with spaces"):
        resp = httpx.post(
            f"{BASE}/items", json={"title_en": title}, headers={**auth(cms, "author"), "Idempotency-Key": bad}
        )
        assert resp.status_code == 422 and resp.json()["error"]["code"] == "invalid_request", (bad, resp.text)
    assert count(title) == 2
    # A versioned change replays its answer instead of meeting its own new version (412).
    item = first.json()
    patch_headers = {**auth(cms, "author"), "If-Match": first.headers["etag"], "Idempotency-Key": "patch-1"}
    patched = httpx.patch(f"{BASE}/items/{item['id']}", json={"summary_en": "s"}, headers=patch_headers)
    replayed = httpx.patch(f"{BASE}/items/{item['id']}", json={"summary_en": "s"}, headers=patch_headers)
    assert patched.status_code == replayed.status_code == 200, (patched.text, replayed.text)
    assert replayed.json()["version"] == patched.json()["version"] == item["version"] + 1
    # A delete retried is 204 again, not 404.
    delete_headers = {**auth(cms, "admin"), "Idempotency-Key": "delete-1"}
    gone = httpx.delete(f"{BASE}/items/{editor.json()['id']}", headers=delete_headers)
    gone_again = httpx.delete(f"{BASE}/items/{editor.json()['id']}", headers=delete_headers)
    assert gone.status_code == gone_again.status_code == 204
    assert gone_again.headers.get("idempotent-replayed") == "true"

    # Eight concurrent copies of one create (as a client and HAProxy retrying at once): one item; each
    # copy gets the first answer or a 409 telling it to retry, whose retry gets that answer.
    async def burst() -> list[httpx.Response]:
        race_headers = {**auth(cms, "author"), "Idempotency-Key": str(uuid.uuid4())}
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(f"{BASE}/items", json={"title_en": title + " race"}, headers=race_headers)
                    for _ in range(8)
                )
            )

    answers = asyncio.run(burst())
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) <= {201, 409}, [r.text for r in answers]
    ids = {r.json()["id"] for r in answers if r.status_code == 201}
    assert len(ids) == 1 and count(title + " race") == 1
    for r in answers:
        if r.status_code == 409:
            assert r.json()["error"]["code"] == "idempotency_key_in_flight"
            assert r.headers["retry-after"] == "1"
