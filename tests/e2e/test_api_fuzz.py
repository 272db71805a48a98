"""Both OpenAPI documents fuzzed with schemathesis through Serve's HTTP proxy (issue 15).

Every operation of ``/openapi.json`` (search) and ``/v1/cms/openapi.json`` (CMS, anonymous and as an
admin) gets schema-valid and schema-invalid requests: the schema's examples, boundary values (the coverage
phase: huge ids, NUL characters, empty and overlong strings...), then ``MAX_EXAMPLES`` random ones,
deterministically. A response must not be a 5xx, must use a status that the operation's OpenAPI lists,
and must match the schema documented for that status (so every error has the one error shape). The CMS is
fuzzed as an admin created for the run; afterwards an admin must still exist.

It runs schemathesis' CLI (``schemathesis run``): its pytest loader for fixtures does not work with
pytest 9.2. A failure prints schemathesis' report, with a ``curl`` line that reproduces each case.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.e2e.test_cms_api import BASE as CMS_BASE
from tests.e2e.test_cms_api import PASSWORD
from tests.e2e.test_cms_api import cms as cms  # the deployed CMS (fixture)
from tests.e2e.test_search_api import BASE as SEARCH_BASE
from tests.e2e.test_search_api import api as api  # the deployed search app, corpus indexed (fixture)

#: Random cases per operation after the examples and boundary values (fast settings for CI).
MAX_EXAMPLES = 10
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"
FUZZ_ADMIN = "fuzz-admin@pulse.test"


def fuzz(schema_url: str, report: Path, headers: dict[str, str] | None = None) -> dict[str, object]:
    """Run schemathesis against one OpenAPI document; fail the test with its report on any failure."""
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        schema_url,
        f"--checks={CHECKS}",
        "--phases=examples,coverage,fuzzing",
        f"--max-examples={MAX_EXAMPLES}",
        "--generation-deterministic",
        "--no-shrink",
        "--workers=2",
        "--request-timeout=30",
        "--no-color",
        "--report=json",
        f"--report-json-path={report}",
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    summary = json.loads(report.read_text()) if report.exists() else {}
    cases = summary.get("test_cases", {})
    print(
        f"{schema_url} ({'admin' if headers else 'anonymous'}): {cases} in {time.monotonic() - started:.0f} s"
    )
    assert done.returncode == 0, done.stdout[-20_000:] + done.stderr[-5_000:]
    return summary


@pytest.fixture(scope="module")
def fuzz_admin(cms: dict[str, str]) -> dict[str, str]:
    """Headers of an admin created for the run by the session's admin: the run may demote or deactivate
    the users it finds, but cannot take away the session's own access."""
    created = httpx.post(
        f"{CMS_BASE}/users",
        json={"email": FUZZ_ADMIN, "display_name": "Fuzz admin", "password": PASSWORD, "role": "admin"},
        headers={"Authorization": f"Bearer {cms['admin']}"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    login = httpx.post(f"{CMS_BASE}/auth/login", json={"email": FUZZ_ADMIN, "password": PASSWORD}, timeout=30)
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def test_search_api_fuzz(api: str, tmp_path: Path) -> None:
    # The search API has no accounts: every caller is anonymous.
    fuzz(f"{SEARCH_BASE}/openapi.json", tmp_path / "search.json")


def test_cms_api_fuzz_anonymous(cms: dict[str, str], tmp_path: Path) -> None:
    fuzz(f"{CMS_BASE}/openapi.json", tmp_path / "cms-anonymous.json")


def test_cms_api_fuzz_as_admin(fuzz_admin: dict[str, str], tmp_path: Path) -> None:
    fuzz(f"{CMS_BASE}/openapi.json", tmp_path / "cms-admin.json", fuzz_admin)


def test_an_admin_still_exists(cms: dict[str, str], engine) -> None:  # type: ignore[no-untyped-def]
    """The fuzzed user routes (demote, deactivate, delete) must leave the CMS an active admin."""
    with engine.connect() as conn:
        admins = conn.execute(text("SELECT count(*) FROM cms_users WHERE role = 'admin' AND active")).scalar()
    assert admins and admins >= 1
    resp = httpx.get(f"{CMS_BASE}/users", headers={"Authorization": f"Bearer {cms['admin']}"}, timeout=30)
    assert resp.status_code == 200, resp.text
