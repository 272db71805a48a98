"""Access control over HTTP (issue 20, part 3): who may call what, and what a forged or stale credential
gets, with the CMS deployed once on the session's Serve and real PostgreSQL.

- The role x operation matrix is generated: every operation of the CMS's live OpenAPI must have a row in
  ``OPERATIONS`` naming its permission-table action (or the test fails, as does a row for an operation
  that is gone); each row is then called by every caller (a user token of each role, API keys, anonymous;
  the author on its own and on another author's items) and the answer (2xx, or 401/403/404 in the one
  error shape) is compared with ``serve_apps.cms.permissions.decide``. CI runs it with one API key
  (editor); the ``long`` variant with a key of every role.
- The search application's OpenAPI (recommendations included) and the trends applications': every write
  or credential-taking operation must have an access rule in ``OTHER_APPS`` (trends has none: read-only
  and public), and the experiments rule must be the permission table's staff column. They are read from
  the apps' FastAPI objects, not called per role here (``tests/e2e/test_recommend_api.py`` calls them).
- Broken object-level access: another author's drafts by id (update, replace, delete, restore, move,
  bulk, revisions, diff), unpublished items by id, listings filtered by another author, status or text.
- Tokens: tampered, expired, ``alg=none``, wrong key, wrong algorithm, wrong issuer, wrong type, garbage:
  401 in one shape; a reused refresh token revokes its user's refresh tokens; a revoked API key is
  refused at once.
- Limits: 429 with ``Retry-After`` per IP, per user and per key; 413 for a declared and a chunked body,
  and nothing stored.

Figures: ``access`` (operations, cells, roles, principals, mismatches, bola_cases, jwt_cases) and
``limits`` (rate_limited_429, retry_after_present, body_413_declared, body_413_chunked). The CI subset
took 86 s on Serve on 2 shared cores (two deployments, the matrix's 355 cells); the ``long`` matrix (517
cells) adds about half the CI matrix's time again.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning
from ray import serve
from sqlalchemy import text

from serve_apps.cms.permissions import ACTIONS, WORKFLOW, decide, transition_action
from storage.cms_models import STATUSES
from tests.conftest import CMS_TABLES, truncate
from tests.support import cms_service
from tests.support.cms_service import PASSWORD

pytestmark = [pytest.mark.security]

PORT = 8012  # the session's Serve proxy (the e2e modules use the same one)
APP, PREFIX = "cms-access", "/v1/cms-access"
LIMITED_APP, LIMITED_PREFIX = "cms-access-limited", "/v1/cms-access-limited"
BASE = f"http://127.0.0.1:{PORT}{PREFIX}"
LIMITED = f"http://127.0.0.1:{PORT}{LIMITED_PREFIX}"
SECRET = "security-secret-" + "s" * 40
NAMESPACE = "pulse-security"
#: The limited deployment's limits.
RATE = 5
MAX_BODY = 65_536
#: API keys made for the matrix: one per role.
KEYS = {f"key-{role}": role for role in ("admin", "editor", "author", "viewer")}
#: The job schedule the schedule routes' cells act on.
SCHEDULE = "access-matrix"

#: Pseudo-actions of operations outside the permission table: anyone; a signed-in user (not a key).
PUBLIC, USER_ONLY = "public", "signed-in user"

#: Counts for the ``access`` figure, filled by the tests of the module in order.
TALLY: dict[str, int] = {}


# ----------------------------------------------------------------------------------------- the world
@dataclass
class Caller:
    """A column of the matrix: ``name`` (``author:own`` / ``author:other`` are one author on its own or
    another author's items), the role ``decide`` reads, and the headers that send its credentials."""

    name: str
    role: str | None
    kind: str  # user, key, anonymous
    headers: dict[str, str]
    user: str | None = None  # the test user's name


@dataclass
class World:
    tokens: dict[str, str]
    keys: dict[str, str]
    user_ids: dict[str, int]
    client: httpx.Client
    counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def bearer(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.bearer("admin")

    def next(self) -> int:
        return next(self.counter)

    def callers(self, *, items: bool, keys: tuple[str, ...] = tuple(KEYS)) -> list[Caller]:
        """Every column: users of each role, the API ``keys`` (by name), anonymous; the author twice on
        items."""
        out = [Caller("admin", "admin", "user", self.bearer("admin"), "admin")]
        out.append(Caller("editor", "editor", "user", self.bearer("editor"), "editor"))
        if items:
            out.append(Caller("author:own", "author", "user", self.bearer("author"), "author"))
            out.append(Caller("author:other", "author", "user", self.bearer("author"), "author"))
        else:
            out.append(Caller("author", "author", "user", self.bearer("author"), "author"))
        out.append(Caller("viewer", "viewer", "user", self.bearer("viewer"), "viewer"))
        out += [Caller(n, KEYS[n], "key", {"X-API-Key": self.keys[n]}) for n in keys]
        out.append(Caller("anonymous", None, "anonymous", {}))
        return out

    def item(self, writer: str, status: str, **fields: Any) -> dict[str, Any]:
        """A new item written by ``writer``, moved by the admin to ``status``."""
        body = {"title_en": f"Item {self.next()}", **fields}
        resp = self.client.post(f"{BASE}/items", json=body, headers=self.bearer(writer))
        assert resp.status_code == 201, resp.text
        item: dict[str, Any] = resp.json()
        path = {"draft": (), "in_review": ("in_review",), "published": ("published",)}
        for to in path.get(status, ("published", "archived")):
            moved = self.client.post(
                f"{BASE}/items/{item['id']}/transition", json={"to": to}, headers=self.admin
            )
            assert moved.status_code == 200, moved.text
            item = moved.json()
        return item

    def make(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = self.client.post(f"{BASE}{path}", json=body, headers=self.admin)
        assert resp.status_code == 201, resp.text
        made: dict[str, Any] = resp.json()
        return made


@pytest.fixture(scope="module")
def world(  # type: ignore[no-untyped-def]
    ray_session: None, database_url: str, engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    truncate(engine, CMS_TABLES)
    cms_service.create_users(database_url)
    keys = cms_service.create_keys(database_url, KEYS)
    _seed_schedule(engine)
    storage = str(tmp_path_factory.mktemp("cms-access-storage"))
    common = cms_service.cms_args(database_url, SECRET, storage, NAMESPACE)
    main = {**common, "rate_per_key": "100000/minute", "rate_per_ip": "100000/minute"}
    main["webhook_private_targets"] = True  # webhook targets of the matrix are 127.0.0.1 (never called)
    cms_service.deploy_cms(APP, PREFIX, main, port=PORT)
    limited = {**common, "rate_per_key": f"{RATE}/minute", "rate_per_ip": f"{RATE}/minute"}
    cms_service.deploy_cms(LIMITED_APP, LIMITED_PREFIX, {**limited, "max_body_bytes": MAX_BODY}, port=PORT)
    tokens = cms_service.access_tokens(BASE)
    with httpx.Client(timeout=30) as client:
        users = client.get(f"{BASE}/users", headers={"Authorization": f"Bearer {tokens['admin']}"}).json()
        ids = {u["email"].split("@")[0]: u["id"] for u in users}
        yield World(tokens, keys, ids, client)
    serve.delete(APP)
    serve.delete(LIMITED_APP)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM schedules WHERE name = :n"), {"n": SCHEDULE})


def _seed_schedule(engine) -> None:  # type: ignore[no-untyped-def]
    """The schedule the schedule routes act on (the job scheduler is not running here)."""
    from datetime import UTC, datetime

    from sqlalchemy.orm import Session

    from storage.schedules import ScheduleRepository, ScheduleSpec

    now = datetime.now(UTC)
    with Session(engine) as db, db.begin():
        spec = ScheduleSpec(name=SCHEDULE, kind="collect", every_s=3600)
        ScheduleRepository(db).seed(spec, first_run_at=now, now=now)


# ------------------------------------------------------------------------------------- the operations
@dataclass(frozen=True)
class Case:
    """One row of an operation: the permission-table ``action`` (or ``PUBLIC`` / ``USER_ONLY``), the status
    of the item it acts on (``None``: not an item), whether a second action is needed too (``also``:
    scheduling), and how to build the request (method, URL, JSON body) given the world and an item."""

    action: str
    status: str | None = None
    also: str | None = None
    build: Callable[[World, dict[str, Any] | None], tuple[str, str, Any]] = lambda w, i: ("GET", "", None)
    mutates: bool = True


def _item_url(item: dict[str, Any] | None) -> str:
    assert item is not None
    return f"{BASE}/items/{item['id']}"


def _refresh_token(w: World, i: Any) -> tuple[str, str, Any]:
    # author2: no matrix caller logs it out (logout cells run at the same time and revoke their user's tokens)
    token = cms_service.login(BASE, "author2")["refresh_token"]
    return "POST", f"{BASE}/auth/refresh", {"refresh_token": token}


def _user(w: World) -> int:
    n = w.next()
    body = {"email": f"u{n}@pulse.test", "display_name": f"U{n}", "password": PASSWORD, "role": "viewer"}
    return int(w.make("/users", body)["id"])


def _key(w: World) -> int:
    return int(w.make("/keys", {"name": f"k{w.next()}", "role": "viewer"})["id"])


def _hook(w: World) -> int:
    return int(w.make("/webhooks", {"url": f"http://127.0.0.1:9/hook/{w.next()}", "events": []})["id"])


def _transition(current: str, wanted: str) -> Case:
    return Case(
        transition_action(current, wanted),
        current,
        build=lambda w, i: ("POST", f"{_item_url(i)}/transition", {"to": wanted}),
    )


ALL = tuple(STATUSES)
SOON = "2031-01-01T00:00:00Z"

#: Every operation of the CMS's OpenAPI -> its rows. A new route without an entry fails the matrix test.
OPERATIONS: dict[tuple[str, str], list[Case]] = {
    ("POST", "/auth/login"): [
        Case(
            PUBLIC,
            build=lambda w, i: (
                "POST",
                f"{BASE}/auth/login",
                {"email": "viewer@pulse.test", "password": PASSWORD},
            ),
        )
    ],
    ("POST", "/auth/refresh"): [Case(PUBLIC, build=_refresh_token)],
    ("POST", "/auth/logout"): [Case(USER_ONLY, build=lambda w, i: ("POST", f"{BASE}/auth/logout", None))],
    ("GET", "/healthz"): [Case(PUBLIC, build=lambda w, i: ("GET", f"{BASE}/healthz", None), mutates=False)],
    ("POST", "/categories"): [
        Case("taxonomy.manage", build=lambda w, i: ("POST", f"{BASE}/categories", {"slug": f"c-{w.next()}"}))
    ],
    ("GET", "/categories"): [
        Case(PUBLIC, build=lambda w, i: ("GET", f"{BASE}/categories", None), mutates=False)
    ],
    ("POST", "/tags"): [
        Case("taxonomy.manage", build=lambda w, i: ("POST", f"{BASE}/tags", {"slug": f"t-{w.next()}"}))
    ],
    ("GET", "/tags"): [Case(PUBLIC, build=lambda w, i: ("GET", f"{BASE}/tags", None), mutates=False)],
    ("POST", "/users"): [
        Case(
            "user.manage",
            build=lambda w, i: (
                "POST",
                f"{BASE}/users",
                {
                    "email": f"n{w.next()}@pulse.test",
                    "display_name": "N",
                    "password": PASSWORD,
                    "role": "viewer",
                },
            ),
        )
    ],
    ("GET", "/users"): [
        Case("user.manage", build=lambda w, i: ("GET", f"{BASE}/users", None), mutates=False)
    ],
    ("PATCH", "/users/{user_id}"): [
        Case(
            "user.manage",
            build=lambda w, i: ("PATCH", f"{BASE}/users/{_user(w)}", {"display_name": "Renamed"}),
        )
    ],
    ("DELETE", "/users/{user_id}"): [
        Case("user.manage", build=lambda w, i: ("DELETE", f"{BASE}/users/{_user(w)}", None))
    ],
    ("POST", "/keys"): [
        Case(
            "key.manage",
            build=lambda w, i: ("POST", f"{BASE}/keys", {"name": f"k-{w.next()}", "role": "viewer"}),
        )
    ],
    ("GET", "/keys"): [Case("key.manage", build=lambda w, i: ("GET", f"{BASE}/keys", None), mutates=False)],
    ("DELETE", "/keys/{key_id}"): [
        Case("key.manage", build=lambda w, i: ("DELETE", f"{BASE}/keys/{_key(w)}", None))
    ],
    ("GET", "/audit"): [Case("audit.read", build=lambda w, i: ("GET", f"{BASE}/audit", None), mutates=False)],
    ("GET", "/schedules"): [
        Case("schedule.read", build=lambda w, i: ("GET", f"{BASE}/schedules", None), mutates=False)
    ],
    ("GET", "/schedule-runs"): [
        Case("schedule.read", build=lambda w, i: ("GET", f"{BASE}/schedule-runs", None), mutates=False)
    ],
    **{
        ("POST", f"/schedules/{{name}}/{verb}"): [
            Case(
                "schedule.manage",
                build=lambda w, i, v=verb: ("POST", f"{BASE}/schedules/{SCHEDULE}/{v}", None),
            )
        ]
        for verb in ("pause", "resume", "run-now")
    },
    ("POST", "/webhooks"): [
        Case(
            "webhook.manage",
            build=lambda w, i: (
                "POST",
                f"{BASE}/webhooks",
                {"url": f"http://127.0.0.1:9/h{w.next()}", "events": []},
            ),
        )
    ],
    ("GET", "/webhooks"): [
        Case("webhook.manage", build=lambda w, i: ("GET", f"{BASE}/webhooks", None), mutates=False)
    ],
    ("DELETE", "/webhooks/{webhook_id}"): [
        Case("webhook.manage", build=lambda w, i: ("DELETE", f"{BASE}/webhooks/{_hook(w)}", None))
    ],
    ("GET", "/webhooks/{webhook_id}/deliveries"): [
        Case("webhook.manage", build=lambda w, i: ("GET", f"{BASE}/webhooks/{_hook(w)}/deliveries", None))
    ],
    ("POST", "/items"): [
        Case("item.create", build=lambda w, i: ("POST", f"{BASE}/items", {"title_en": f"New {w.next()}"})),
        Case(
            "item.create",
            also="item.schedule",
            build=lambda w, i: (
                "POST",
                f"{BASE}/items",
                {"title_en": f"Later {w.next()}", "publish_at": SOON},
            ),
        ),
    ],
    # Listing: everyone may list; what each caller sees is the object-level tests' business.
    ("GET", "/items"): [
        Case("item.read", "published", build=lambda w, i: ("GET", f"{BASE}/items", None), mutates=False)
    ],
    ("GET", "/items/{item_id}"): [
        Case("item.read", s, build=lambda w, i: ("GET", _item_url(i), None), mutates=False) for s in ALL
    ],
    ("PATCH", "/items/{item_id}"): [
        *(
            Case("item.update", s, build=lambda w, i: ("PATCH", _item_url(i), {"summary_en": f"s{w.next()}"}))
            for s in ALL
        ),
        Case(
            "item.update",
            "draft",
            also="item.schedule",
            build=lambda w, i: ("PATCH", _item_url(i), {"publish_at": SOON}),
        ),
    ],
    ("PUT", "/items/{item_id}"): [
        Case("item.update", s, build=lambda w, i: ("PUT", _item_url(i), {"title_en": f"Put {w.next()}"}))
        for s in ALL
    ],
    ("DELETE", "/items/{item_id}"): [
        Case("item.delete", s, build=lambda w, i: ("DELETE", _item_url(i), None))
        for s in ("draft", "published")
    ],
    ("POST", "/items/{item_id}/transition"): [_transition(a, b) for a, b in WORKFLOW],
    ("GET", "/items/{item_id}/revisions"): [
        Case(
            "item.revisions", s, build=lambda w, i: ("GET", f"{_item_url(i)}/revisions", None), mutates=False
        )
        for s in ("draft", "published")
    ],
    ("GET", "/items/{item_id}/diff"): [
        Case(
            "item.revisions",
            s,
            build=lambda w, i: ("GET", f"{_item_url(i)}/diff?from=1&to=1", None),
            mutates=False,
        )
        for s in ("draft", "published")
    ],
    ("POST", "/items/{item_id}/revisions/{version}/restore"): [
        Case("item.restore", s, build=lambda w, i: ("POST", f"{_item_url(i)}/revisions/1/restore", None))
        for s in ALL
    ],
    ("POST", "/bulk"): [
        Case(
            "bulk",
            build=lambda w, i: (
                "POST",
                f"{BASE}/bulk",
                {"action": "create", "create": [{"title_en": f"Bulk {w.next()}"}]},
            ),
        )
    ],
}


def expected(caller: Caller, case: Case, owner: bool) -> int:
    """What ``decide`` says the caller gets: 2 (allowed: a 2xx), 401, 403, or 404 (an anonymous caller on
    an unpublished item: its existence is not revealed)."""
    if case.action == PUBLIC:
        return 2
    if case.action == USER_ONLY:
        return 2 if caller.kind == "user" else 401
    verdicts = [decide(caller.role, case.action, owner=owner, status=case.status)]
    if case.status is not None:  # every item route reads the item first
        verdicts.insert(0, decide(caller.role, "item.read", owner=owner, status=case.status))
    if case.also is not None:
        verdicts.append(decide(caller.role, case.also))
    if all(verdicts):
        return 2
    if caller.kind != "anonymous":
        return 403
    return 404 if case.status not in (None, "published") else 401


def openapi_operations(url: str) -> set[tuple[str, str]]:
    spec = httpx.get(url, timeout=30).json()
    return {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops if m != "parameters"}


def assert_error_shape(resp: httpx.Response, *codes: str) -> None:
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["message"], resp.text
    assert body["error"]["code"] in codes, resp.text


# -------------------------------------------------------------------------------------------- matrix
def test_every_cms_operation_is_mapped_to_a_permission_action(world: World) -> None:
    live = openapi_operations(f"{BASE}/openapi.json")
    unmapped = sorted(live - set(OPERATIONS))
    assert not unmapped, f"CMS operations without a row in OPERATIONS (map them to an action): {unmapped}"
    stale = sorted(set(OPERATIONS) - live)
    assert not stale, f"OPERATIONS rows for operations the CMS no longer has: {stale}"
    actions = {c.action for rows in OPERATIONS.values() for c in rows} - {PUBLIC, USER_ONLY}
    assert actions <= set(ACTIONS), actions - set(ACTIONS)
    # Every action of the permission table is exercised by some operation.
    assert set(ACTIONS) <= actions | {"item.schedule"}, set(ACTIONS) - actions
    TALLY["operations"] = len(live)


@pytest.mark.parametrize(
    "keys",
    [
        pytest.param(("key-editor",), id="ci"),  # every user role, anonymous, and one API key
        pytest.param(tuple(KEYS), id="every-key", marks=pytest.mark.long),  # and an API key of every role
    ],
)
def test_role_by_operation_matrix_matches_decide(world: World, keys: tuple[str, ...]) -> None:
    """Each operation's rows x every caller, each a real request; the answer must be decide's. Cells are
    independent (an allowed change gets an item of its own), so they run on a few threads."""
    shared = {  # (writer, status) -> an item that no allowed request changes
        (writer, status): world.item(writer, status) for writer in ("author", "author2") for status in ALL
    }
    cells = [
        (method, path, case, caller)
        for (method, path), rows in OPERATIONS.items()
        for case in rows
        for caller in world.callers(items=case.status is not None, keys=keys)
    ]

    def run(cell: tuple[str, str, Case, Caller]) -> tuple[Any, ...] | None:
        method, path, case, caller = cell
        want = expected(caller, case, caller.name == "author:own")
        item = None
        if case.status is not None:
            writer = "author2" if caller.name == "author:other" else "author"
            fresh = case.mutates and want == 2
            item = world.item(writer, case.status) if fresh else shared[(writer, case.status)]
        verb, url, body = case.build(world, item)
        assert verb == method
        resp = world.client.request(verb, url, json=body, headers=caller.headers)
        got = 2 if resp.is_success else resp.status_code
        if got != want:
            return (method, path, case.action, case.status, caller.name, want, resp.text[:300])
        if got != 2:
            codes = {401: "unauthorized", 403: "forbidden", 404: "item_not_found"}
            assert_error_shape(resp, codes[got])
            assert got != 401 or resp.headers["WWW-Authenticate"] == "Bearer"
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        mismatches = [m for m in pool.map(run, cells) if m is not None]
    roles = {c.role or "anonymous" for _, _, _, c in cells}
    TALLY.update(cells=len(cells), roles=len(roles), mismatches=len(mismatches))
    TALLY["principals"] = len({c.name for _, _, _, c in cells})
    assert not mismatches, "\n".join(map(str, mismatches))


def test_author_replaces_own_draft_but_cannot_schedule_it(world: World) -> None:
    """Regression: a PUT (every field, publishing times unset) by an author on its own draft was refused as
    scheduling; only a change of the publishing times needs ``item.schedule``."""
    c, author = world.client, world.bearer("author")
    draft = world.item("author", "draft")
    url = f"{BASE}/items/{draft['id']}"
    put = c.put(url, json={"title_en": "Replaced"}, headers=author)
    assert put.status_code == 200 and put.json()["en"]["title"] == "Replaced", put.text
    for body in ({"title_en": "Later", "publish_at": SOON}, {"title_en": "x", "unpublish_at": SOON}):
        resp = c.put(url, json=body, headers=author)
        assert resp.status_code == 403, resp.text
        assert_error_shape(resp, "forbidden")
    assert c.patch(url, json={"publish_at": SOON}, headers=author).status_code == 403
    # An editor's schedule cannot be cleared by the author's PUT either.
    scheduled = c.patch(url, json={"publish_at": SOON}, headers=world.bearer("editor"))
    assert scheduled.status_code == 200, scheduled.text
    cleared = c.put(url, json={"title_en": "Unscheduled"}, headers=author)
    assert cleared.status_code == 403, cleared.text
    assert c.get(url, headers=author).json()["publish_at"] is not None


# ------------------------------------------------------------------------------- other applications
#: The search application's (recommendations included) and the trends applications' operations that
#: write or read per-caller data: each with the rule its route enforces (serve_apps/recommend/context.py).
#: Their roles are the CMS's; the experiments rule is decide's ``bulk``/``taxonomy.manage`` column set
#: (admins and editors), checked below against the route's own constant.
OTHER_APPS: dict[tuple[str, str], str] = {
    ("POST", "/v1/events"): "a key, or a user's token for its own user_id",
    ("PUT", "/v1/experiments/{name}"): "admins' and editors' keys and tokens",
    ("GET", "/v1/experiments/{name}"): "any key or token",
    ("GET", "/v1/recommend"): "anyone for a session or no subject; a key, or the user's token, for a user_id",
    (
        "POST",
        "/v1/recommend",
    ): "anyone for a session or no subject; a key, or the user's token, for a user_id",
}


def _guarded(spec: dict[str, Any]) -> set[tuple[str, str]]:
    """Operations that write (POST, PUT, PATCH, DELETE) or take the CMS's credentials."""
    out = set()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method == "parameters":
                continue
            security = op.get("security") or any(
                p.get("in") == "header" and p.get("name", "").lower() in ("authorization", "x-api-key")
                for p in op.get("parameters", [])
            )
            if method.upper() != "GET" or security or "401" in op.get("responses", {}):
                out.add((method.upper(), path))
    return out


def test_other_apps_write_routes_are_mapped(world: World, database_url: str) -> None:
    """The search app's OpenAPI (as its ingress serves it) and the trends apps': every write or
    credential-taking operation has a rule in ``OTHER_APPS``; trends has none (read-only, public)."""
    from serve_apps.recommend.context import EXPERIMENT_ROLES
    from serve_apps.search.app import api as search_api
    from serve_apps.trends.app import build_api
    from serve_apps.trends.args import TrendsArgs
    from serve_apps.trends.context import TrendsContext

    guarded = _guarded(search_api.openapi())
    unmapped = sorted(guarded - set(OTHER_APPS))
    assert not unmapped, f"search/recommend operations without an access rule: {unmapped}"
    assert set(OTHER_APPS) <= guarded, set(OTHER_APPS) - guarded
    trends = TrendsContext(TrendsArgs(database_url=database_url))
    for collection in ("trends", "topics"):
        assert not _guarded(build_api(trends, collection).openapi()), collection  # type: ignore[arg-type]
    # The experiments rule is the permission table's staff column.
    assert {r for r in ("admin", "editor", "author", "viewer") if decide(r, "bulk")} == EXPERIMENT_ROLES
    TALLY["operations"] = TALLY.get("operations", 0) + len(guarded)


# ---------------------------------------------------------------------------- object-level access
def test_broken_object_level_access(world: World) -> None:
    """Another author's drafts cannot be changed, read, listed or have their history read, by id or by
    filter; anonymous callers and viewers see published items only."""
    c, author, author2 = world.client, world.bearer("author"), world.bearer("author2")
    secret = f"Secret-{uuid.uuid4().hex[:8]}"
    draft = world.item("author", "draft", title_en=f"{secret} draft", body_en=f"<p>{secret}</p>")
    review = world.item("author", "in_review", title_en=f"{secret} review")
    url = f"{BASE}/items/{draft['id']}"
    cases = 0

    def check(resp: httpx.Response, status: int, code: str) -> None:
        nonlocal cases
        cases += 1
        assert resp.status_code == status, resp.text
        assert_error_shape(resp, code)

    # Writes by id, as the other author: refused, nothing changed.
    check(c.patch(url, json={"title_en": "hijacked"}, headers=author2), 403, "forbidden")
    check(c.put(url, json={"title_en": "hijacked"}, headers=author2), 403, "forbidden")
    check(c.delete(url, headers=author2), 403, "forbidden")
    check(c.post(f"{url}/revisions/1/restore", headers=author2), 403, "forbidden")
    check(c.post(f"{url}/transition", json={"to": "in_review"}, headers=author2), 403, "forbidden")
    bulk = {"action": "update", "items": [{"id": draft["id"], "fields": {"title_en": "hijacked"}}]}
    check(c.post(f"{BASE}/bulk", json=bulk, headers=author2), 403, "forbidden")
    now = c.get(url, headers=author).json()
    assert (now["version"], now["en"]["title"], now["status"]) == (1, f"{secret} draft", "draft")
    # Reads by id: 404 for anonymous callers (not even its existence), 403 for signed-in others.
    for item in (draft, review):
        item_url = f"{BASE}/items/{item['id']}"
        check(c.get(item_url), 404, "item_not_found")
        check(c.get(item_url, headers=world.bearer("viewer")), 403, "forbidden")
        check(c.get(item_url, headers=author2), 403, "forbidden")
        check(c.get(item_url, headers={"X-API-Key": world.keys["key-viewer"]}), 403, "forbidden")
        for sub in ("/revisions", "/diff?from=1&to=1"):
            check(c.get(f"{item_url}{sub}"), 404, "item_not_found")
            check(c.get(f"{item_url}{sub}", headers=world.bearer("viewer")), 403, "forbidden")
            check(c.get(f"{item_url}{sub}", headers=author2), 403, "forbidden")
    # Listings with another's filter: nothing unpublished leaks, whatever the filter.
    mine = world.user_ids["author"]
    listings = (  # (caller, the user id whose unpublished items it may list)
        ({}, None),
        (world.bearer("viewer"), None),
        (author2, world.user_ids["author2"]),
        ({"X-API-Key": world.keys["key-viewer"]}, None),
        ({"X-API-Key": world.keys["key-author"]}, None),
    )
    for headers, own_id in listings:
        for extra in (
            {"status": "draft"},
            {"status": ["draft", "in_review"]},
            {"author": mine},
            {"author": mine, "status": "in_review"},
            {"q": secret, "locale": "en"},
            {},
        ):
            resp = c.get(f"{BASE}/items", params={**extra, "limit": 100}, headers=headers)
            cases += 1
            assert resp.status_code == 200, resp.text
            found = resp.json()["items"]
            leaked = [i["id"] for i in found if i["status"] != "published" and i["author_id"] != own_id]
            leaked += [i["id"] for i in found if secret in (i["en"]["title"] or "")]
            assert not leaked, (extra, headers, leaked)
    # The owner sees its own through the same filters.
    own = c.get(
        f"{BASE}/items", params={"author": mine, "status": "draft", "limit": 100}, headers=author
    ).json()
    assert draft["id"] in [i["id"] for i in own["items"]]
    TALLY["bola_cases"] = cases


# ----------------------------------------------------------------------------------------- tokens
def _forge(claims: dict[str, Any], key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def _hs512(claims: dict[str, Any]) -> str:
    """Claims signed with the CMS's own secret, but HS512 (PyJWT warns that the key is short for it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return _forge(claims, SECRET, "HS512")


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_forged_expired_and_malformed_tokens_get_401(world: World) -> None:
    viewer = world.tokens["viewer"]
    header, _payload, signature = viewer.split(".")
    claims = jwt.decode(viewer, options={"verify_signature": False})
    now = int(time.time())
    admin_claims = {**claims, "role": "admin"}
    bad = {
        "tampered role": f"{header}.{_b64(admin_claims)}.{signature}",
        "tampered subject": f"{header}.{_b64({**claims, 'sub': str(world.user_ids['admin'])})}.{signature}",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(admin_claims)}.",
        "alg none, signature kept": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(admin_claims)}.{signature}",
        "wrong key": _forge(admin_claims, "another-secret-" + "k" * 40),
        "HS512 with the right key": _hs512(admin_claims),
        "expired": _forge({**admin_claims, "iat": now - 7200, "exp": now - 3600}),
        "issued in the future": _forge({**admin_claims, "iat": now + 3600, "exp": now + 7200}),
        "wrong issuer": _forge({**admin_claims, "iss": "someone-else"}),
        "no issuer": _forge({k: v for k, v in admin_claims.items() if k != "iss"}),
        "no expiry": _forge({k: v for k, v in admin_claims.items() if k != "exp"}),
        "refresh as access": cms_service.login(BASE, "admin")["refresh_token"],
        "unknown role": _forge({**claims, "role": "root"}),
        "subject not a number": _forge({**admin_claims, "sub": "admin"}),
        "garbage": "not.a.jwt",
        "empty segments": "..",
        "huge": "a" * 5000,
    }
    # The forgeries are well formed: the right key makes the claims of the admin's token work (the check
    # is real). With the viewer's subject the right key still gets only the viewer's rights: a token acts
    # with its user's current role, whatever role it names.
    as_admin = {**admin_claims, "sub": str(world.user_ids["admin"])}
    assert world.client.get(
        f"{BASE}/users", headers={"Authorization": f"Bearer {_forge(as_admin)}"}
    ).is_success
    raised = world.client.get(f"{BASE}/users", headers={"Authorization": f"Bearer {_forge(admin_claims)}"})
    assert raised.status_code == 403
    failures = []
    for name, token in bad.items():
        for scheme in ("Bearer", "bearer"):
            resp = world.client.get(f"{BASE}/users", headers={"Authorization": f"{scheme} {token}"})
            if resp.status_code != 401 or resp.headers.get("WWW-Authenticate") != "Bearer":
                failures.append((name, scheme, resp.status_code, resp.text[:200]))
            else:
                assert_error_shape(resp, "unauthorized")
    for value in ("Basic YWRtaW46YWRtaW4=", "Bearer", "Token abc"):
        resp = world.client.get(f"{BASE}/users", headers={"Authorization": value})
        if resp.status_code != 401:
            failures.append((value, resp.status_code, resp.text[:200]))
        else:
            assert_error_shape(resp, "unauthorized")
    resp = world.client.get(f"{BASE}/users", headers={"X-API-Key": "pulse_" + "0" * 40})
    if resp.status_code != 401:
        failures.append(("unknown API key", resp.status_code))
    TALLY["jwt_cases"] = 2 * len(bad) + 4
    assert not failures, "\n".join(map(str, failures))


def test_reused_refresh_token_is_refused_and_revokes_the_family(world: World) -> None:
    c = world.client
    first = cms_service.login(BASE, "editor")
    other_session = cms_service.login(BASE, "editor")  # the same user on another device
    second = c.post(f"{BASE}/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200, second.text
    reused = c.post(f"{BASE}/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    assert_error_shape(reused, "unauthorized")
    # The reuse revoked the user's refresh tokens: the rotated one, and the other session's.
    for token in (second.json()["refresh_token"], other_session["refresh_token"]):
        resp = c.post(f"{BASE}/auth/refresh", json={"refresh_token": token})
        assert resp.status_code == 401, resp.text
    # A fresh login works again; another user's tokens were not touched.
    fresh = cms_service.login(BASE, "editor")
    assert c.post(f"{BASE}/auth/refresh", json={"refresh_token": fresh["refresh_token"]}).status_code == 200
    TALLY["jwt_cases"] = TALLY.get("jwt_cases", 0) + 3


def test_revoked_api_key_is_refused_at_once(world: World) -> None:
    c = world.client
    made = world.make("/keys", {"name": "to-revoke", "role": "editor"})
    headers = {"X-API-Key": made["key"]}
    assert c.post(f"{BASE}/categories", json={"slug": f"k{world.next()}"}, headers=headers).status_code == 201
    assert c.delete(f"{BASE}/keys/{made['id']}", headers=world.admin).status_code == 204
    for _ in range(3):  # at once, on every request (the CMS looks keys up in PostgreSQL each time)
        resp = c.get(f"{BASE}/items", headers=headers)
        assert resp.status_code == 401, resp.text
        assert_error_shape(resp, "unauthorized")
    TALLY["jwt_cases"] = TALLY.get("jwt_cases", 0) + 1


# ----------------------------------------------------------------------------------------- limits
def _count_items(engine: Any, marker: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM cms_items WHERE title_en = :t"), {"t": marker}
            ).scalar_one()
        )


def test_rate_and_body_limits(world: World, engine: Any, figure: Any) -> None:
    c = world.client
    # Per IP (anonymous) and per principal (a token, a key): RATE pass, then 429 with Retry-After.
    rate_limited = retry_after = 0
    login = cms_service.login(LIMITED, "editor")  # counts once against this IP's anonymous bucket
    for headers in (
        {},
        {"Authorization": f"Bearer {login['access_token']}"},
        {"X-API-Key": world.keys["key-viewer"]},
    ):
        codes = []
        for _ in range(RATE + 2):
            resp = c.get(f"{LIMITED}/categories", headers=headers)
            codes.append(resp.status_code)
        assert 429 in codes and all(code in (200, 429) for code in codes), (headers.keys(), codes)
        assert codes.index(429) <= RATE, codes
        rate_limited += codes.count(429)
        assert_error_shape(resp, "rate_limited")
        assert int(resp.headers["Retry-After"]) >= 1
        retry_after += 1
    # Body limits: 413 for a declared Content-Length and for a chunked body; nothing stored either way.
    marker = f"too-big-{uuid.uuid4().hex[:8]}"
    editor = world.bearer("editor")
    big = {"title_en": marker, "body_en": "x" * (MAX_BODY + 10)}
    declared = 0
    for path in ("/items", "/bulk", "/categories"):
        body = big if path == "/items" else {"action": "create", "create": [big]} if path == "/bulk" else big
        resp = c.post(f"{LIMITED}{path}", json=body, headers={"X-API-Key": world.keys["key-admin"]})
        assert resp.status_code == 413, (path, resp.text)
        assert_error_shape(resp, "payload_too_large")
        declared += 1

    def chunks() -> Iterator[bytes]:
        yield json.dumps({"title_en": marker}).encode()[:-1] + b', "body_en": "'
        for _ in range(MAX_BODY // 4096 + 2):
            yield b"y" * 4096
        yield b'"}'

    chunked = 0
    for base in (LIMITED, BASE):  # BASE has the same 64 KiB limit and no rate limit
        resp = httpx.post(
            f"{base}/items",
            content=chunks(),
            headers={**editor, "Content-Type": "application/json"},
            timeout=30,
        )
        if base == LIMITED and resp.status_code == 429:
            continue  # the editor's bucket there may be spent
        assert resp.status_code == 413, resp.text
        assert_error_shape(resp, "payload_too_large")
        chunked += 1
    assert chunked >= 1
    assert _count_items(engine, marker) == 0
    figure(
        "limits",
        rate_limited_429=rate_limited,
        retry_after_present=retry_after,
        body_413_declared=declared,
        body_413_chunked=chunked,
    )


def test_access_figure(world: World, figure: Any) -> None:
    """Last in the module: the ``access`` figure of the tests above (skipped when they did not all run)."""
    needed = ("operations", "cells", "roles", "principals", "mismatches", "bola_cases", "jwt_cases")
    if not all(k in TALLY for k in needed):
        pytest.skip(f"the figure needs the whole module; missing {[k for k in needed if k not in TALLY]}")
    assert TALLY["mismatches"] == 0
    figure("access", **{k: TALLY[k] for k in needed})
