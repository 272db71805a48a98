"""Schemathesis against the live OpenAPI of every Serve application `pulse up` deploys (issue 20, part 2).

Every application of ``cluster.top.deploy_args.deployed_apps()`` (search with its recommendation and event
routes at /, the CMS at /v1/cms, trends at /v1/trends, topics at /v1/topics) runs on the session's Serve, with
real PostgreSQL, a small embedded HuffPost corpus and a seeded trends world. Each is fuzzed anonymously and
as each CMS role (admin, editor, author, viewer: a fresh user per run, its access token from
``POST /v1/cms/auth/login``) and with an API key issued by ``POST /v1/cms/keys``. Checks
(tests/support/fuzz.py): no 5xx, every status documented in the OpenAPI, every body matching the schema of
its status (so every error is in the one error shape), and every schema-breaking request refused with a 4xx
(``negative_data_rejection``, the coverage and fuzzing phases in schemathesis' default ``--mode all``).

Each run prints the ``fuzz`` figure: app, role, operations, cases, failures, server_errors (must be 0).
The regression tests replay, as plain HTTP requests, each defect the fuzzing found.

Time (2 CPUs shared with other sessions, load average ~25, 2026-12-07): fixture setup 92 s (ingest +
embed ~75 stories, deploy four applications), teardown 33 s; ``test_api_fuzz[ci-*]`` (2 random cases per
operation after the examples and boundary values) ~100 s for 4 apps x 6 roles (search ~5.6 s, CMS ~7.5 s,
trends/topics ~2 s per run); ``test_api_fuzz[long-*]`` (``pytest -m security``: 50 per operation and role)
~240 s more (search ~10 s, CMS ~22 s, trends/topics ~3.4 s per run). Whole module with -m security: 488 s.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
from ray import serve

from tests.support import cms_service, fuzz

pytestmark = [pytest.mark.security]

PORT = 8012  # the session's Serve proxy (the e2e modules use the same one)
ROOT = f"http://127.0.0.1:{PORT}"
CMS = f"{ROOT}/v1/cms"
NAMESPACE = "pulse-fuzz"
SECRET = "fuzz-secret-" + "f" * 40
#: Who fuzzes: nobody, each CMS role with its own access token, and a client application's API key.
ROLES = ("anonymous", "admin", "editor", "author", "viewer", "api_key")
#: Random cases per operation and role after the examples and boundary values: CI, then the long run.
CI_EXAMPLES = 2
LONG_EXAMPLES = 50


def app_args(database_url: str, storage: str) -> dict[str, dict[str, Any]]:
    """Test args for each deployed application by name: small reservations, limits high enough for fuzzing."""
    trends = {"database_url": database_url, "page_size": 3, "topic_stories": 2}
    return {
        "search": {
            "database_url": database_url,
            "storage_uri": storage,
            "namespace": NAMESPACE,
            "index": {"poll_interval_s": 1, "shards": 1, "num_cpus": 0.1, "keyword_num_cpus": 0.1},
            "model_refresh_s": 1,
            "jwt_secret": SECRET,  # the CMS's tokens reach the recommendation and event routes
            "recommend": {"poll_interval_s": 1, "snapshot_interval_s": 0, "num_cpus": 0.05},
        },
        "cms": cms_service.cms_args(
            database_url,
            SECRET,
            storage,
            NAMESPACE,
            scheduler=False,
            rate_per_key="1000000/minute",
            rate_per_ip="1000000/minute",
        ),
        "trends": trends,
        "topics": trends,
    }


def deployed() -> dict[str, tuple[str, str]]:
    """``name -> (route prefix, import path)`` of every application ``pulse up`` deploys."""
    from cluster.top.deploy_args import deployed_apps

    return {app.name: (app.route_prefix, app.import_path) for app in deployed_apps()}


APPS = tuple(deployed())


@pytest.fixture(scope="module")
def platform(  # type: ignore[no-untyped-def]
    ray_session: None, database_url: str, engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Every application deployed on a small real world; yields ``name -> OpenAPI URL``."""
    from cluster.ground.constants import PROFILE_ACTOR_NAME
    from cluster.top.serve_config import load_builder
    from jobs.embed.pipeline import EmbedJobConfig, run_embed
    from jobs.ingest.loader import ingest_file
    from tests.conftest import CMS_TABLES, REC_TABLES, truncate
    from tests.integration.helpers import sample_subset
    from tests.integration.test_trend_queries import seed_trends

    seed_trends(engine)  # empties the document and trend tables first
    truncate(engine, (*CMS_TABLES, *REC_TABLES))
    tmp = tmp_path_factory.mktemp("fuzz")
    ingest_file(sample_subset(tmp / "corpus.jsonl", n_other=60), database_url=database_url, source_name="hp")
    storage = str(tmp / "storage")
    run_embed(
        EmbedJobConfig(database_url=database_url, storage_uri=storage, model_name="default", progress=False)
    )
    serve.start(http_options={"host": "127.0.0.1", "port": PORT})
    args = app_args(database_url, storage)
    apps = deployed()
    for name, (prefix, import_path) in apps.items():
        serve.run(load_builder(import_path)(args[name]), name=name, route_prefix=prefix)
    deadline = time.monotonic() + 120
    while httpx.get(f"{ROOT}/readyz", timeout=10).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    yield {name: f"{ROOT}{prefix.rstrip('/')}/openapi.json" for name, (prefix, _) in apps.items()}
    for name in apps:  # all at once: each waits out its replicas' graceful shutdown
        serve.delete(name, _blocking=False)
    deadline = time.monotonic() + 120
    while set(apps) & set(serve.status().applications) and time.monotonic() < deadline:
        time.sleep(0.5)
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(PROFILE_ACTOR_NAME, namespace=NAMESPACE), no_restart=True)


def login(database_url: str, role: str) -> str:
    """The access token of a new user of ``role``: a run may demote, deactivate or delete the users it
    finds, so each run gets its own."""
    name = f"fuzz-{role}-{uuid.uuid4().hex[:8]}"
    cms_service.create_users(database_url, {name: role})
    return str(cms_service.login(CMS, name)["access_token"])


def credentials(database_url: str, role: str) -> dict[str, str]:
    """Fresh headers for ``role``: none, a user's bearer token, or a new API key from ``POST /keys``."""
    if role == "anonymous":
        return {}
    if role != "api_key":
        return {"Authorization": f"Bearer {login(database_url, role)}"}
    admin = {"Authorization": f"Bearer {login(database_url, 'admin')}"}
    name = f"fuzz-{uuid.uuid4().hex[:8]}"
    resp = httpx.post(f"{CMS}/keys", json={"name": name, "role": "editor"}, headers=admin, timeout=30)
    assert resp.status_code == 201, resp.text
    return {"X-API-Key": str(resp.json()["key"])}


def fuzz_app(
    platform: dict[str, str],
    database_url: str,
    figure: Callable[..., Any],
    tmp_path: Path,
    *,
    app: str,
    role: str,
    max_examples: int,
) -> None:
    done = fuzz.run(
        platform[app],
        tmp_path / f"{app}-{role}.json",
        credentials(database_url, role),
        max_examples=max_examples,
        label=role,
    )
    figure("fuzz", app=app, role=role, examples=max_examples, seconds=round(done.seconds, 1), **done.figure())
    done.check()
    assert done.figure()["operations"] > 0, done.output


def test_every_deployed_application_is_fuzzed(platform: dict[str, str]) -> None:
    """A new application in deployed_apps() needs test args here (app_args), or this fails."""
    assert set(platform) == set(app_args("", "")) == {"search", "cms", "trends", "topics"}
    spec = httpx.get(platform["search"], timeout=30).json()
    assert {"/v1/recommend", "/v1/events"} <= set(spec["paths"])  # recommendations are the search app's


# Regression tests: each defect the fuzzing found, replayed as a plain HTTP request.


def invalid(resp: httpx.Response, field: str) -> str:
    """A 422 in the one error shape that names ``field``; returns the message."""
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == "invalid_request", body
    assert field in body["error"]["message"], body
    return str(body["error"]["message"])


def test_a_number_is_not_a_date(platform: dict[str, str], database_url: str, engine) -> None:  # type: ignore[no-untyped-def]
    """Found: ``until=0.5`` was read as Unix seconds (1970-01-01T00:00:00.5Z) and answered 200 on every
    listing with a date filter; the OpenAPI says ``format: date-time``. Now 422, and ISO text still works."""
    from sqlalchemy import text

    with engine.connect() as conn:
        doc = int(conn.execute(text("SELECT min(id) FROM documents")).scalar_one())
    key = credentials(database_url, "api_key")
    routes = {
        f"{ROOT}/v1/search": ({"q": "protest"}, {}),
        f"{ROOT}/v1/documents/{doc}/similar": ({}, {}),
        f"{ROOT}/v1/recommend": ({}, key),
        f"{CMS}/items": ({}, {}),
        f"{ROOT}/v1/trends/": ({}, {}),
        f"{ROOT}/v1/topics/": ({}, {}),
    }
    for url, (params, headers) in routes.items():
        for name in ("since", "until"):
            for number in ("0.5", "1700000000", "-3", "1e9"):
                resp = httpx.get(url, params={**params, name: number}, headers=headers, timeout=30)
                assert "not a number" in invalid(resp, name), url
            ok = httpx.get(url, params={**params, name: "2018-02-01"}, headers=headers, timeout=30)
            assert ok.status_code == 200, (url, ok.text)
    as_of = httpx.get(f"{ROOT}/v1/recommend", params={"as_of": "0"}, headers=key, timeout=30)
    invalid(as_of, "as_of")
    event = {"event_id": uuid.uuid4().hex, "user_id": "u1", "document_id": doc, "type": "click"}
    posted = httpx.post(
        f"{ROOT}/v1/events", json={"events": [{**event, "timestamp": 1700000000}]}, headers=key, timeout=30
    )
    invalid(posted, "timestamp")
    admin = {"Authorization": f"Bearer {login(database_url, 'admin')}"}
    item = httpx.post(f"{CMS}/items", json={"title_en": "x", "publish_at": 0.5}, headers=admin, timeout=30)
    invalid(item, "publish_at")


def test_a_number_is_not_a_boolean(platform: dict[str, str], database_url: str) -> None:
    """Found: ``PATCH /users/{id}`` with ``{"active": 0}`` deactivated the user (Pydantic read 0 as false)
    although the OpenAPI says ``type: boolean``. Now 422 and the user stays active; the same for the other
    booleans of request bodies (an item's ``seo.noindex``, an experiment's ``active``)."""
    admin = {"Authorization": f"Bearer {login(database_url, 'admin')}"}
    name = f"fuzz-target-{uuid.uuid4().hex[:8]}"
    cms_service.create_users(database_url, {name: "viewer"})
    users = httpx.get(f"{CMS}/users", headers=admin, timeout=30).json()
    target = next(u for u in users if u["email"] == cms_service.email(name))
    for value in (0, 1, "false", "yes"):
        resp = httpx.patch(f"{CMS}/users/{target['id']}", json={"active": value}, headers=admin, timeout=30)
        invalid(resp, "active")
    assert cms_service.login(CMS, name)["access_token"]  # still active
    item = {"title_en": "x", "seo": {"noindex": 1}}
    invalid(httpx.post(f"{CMS}/items", json=item, headers=admin, timeout=30), "noindex")
    experiment = {"variants": [{"name": "a"}, {"name": "b"}], "active": 1}
    resp = httpx.put(f"{ROOT}/v1/experiments/fuzz", json=experiment, headers=admin, timeout=30)
    invalid(resp, "active")


#: Applications whose routes take no credentials: CI fuzzes them anonymously only (a caller's token changes
#: nothing there); the long run fuzzes them as every caller too.
ANONYMOUS_APPS = frozenset({"trends", "topics"})


def fuzz_cases() -> list[Any]:
    """(examples, app, role) of every run: at CI length first, then (``long``) at full length."""
    ci = [
        pytest.param(CI_EXAMPLES, app, role, id=f"ci-{app}-{role}")
        for app in APPS
        for role in ROLES
        if app not in ANONYMOUS_APPS or role == "anonymous"
    ]
    long = [
        pytest.param(LONG_EXAMPLES, app, role, marks=pytest.mark.long, id=f"long-{app}-{role}")
        for app in APPS
        for role in ROLES
    ]
    return ci + long


# Last: the fuzzing itself.
@pytest.mark.parametrize(("examples", "app", "role"), fuzz_cases())
def test_api_fuzz(  # type: ignore[no-untyped-def]
    platform: dict[str, str], database_url: str, figure, tmp_path: Path, examples: int, app: str, role: str
) -> None:
    fuzz_app(platform, database_url, figure, tmp_path, app=app, role=role, max_examples=examples)
