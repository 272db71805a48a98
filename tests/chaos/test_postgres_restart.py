"""PostgreSQL stopped and started again under a running ingest job and API reads (issue 20, part 1 (e)).

A private PostgreSQL (``tests/support/private_pg.py``: ``initdb`` + ``pg_ctl`` on a free port; the shared
server on 127.0.0.1:5432 is never touched) is migrated and serves a CMS application (Serve, the session's
Ray). Anonymous readers loop over published items while `pulse ingest` loads the sample corpus in small
transactions; the server is stopped (``pg_ctl stop -m fast``) mid-ingest and started again a few seconds
later. The test proves:

- the API answers 503 ``database_unavailable`` in the one error shape while the database is down, never a
  500 or a dropped connection, and answers 200 again by itself once it is back (no replica restart);
- the ingest job stops with one ``error:`` line (no traceback), and a rerun stores every input record once:
  0 lost, 0 duplicated.

Figure ``chaos`` (scenario ``postgres``): requests, failed_requests (5xx other than 503, no answer),
answered_503, outage_s, recovery_s (server started -> first 200), lost, duplicated, job_exit.
Measured 74 s with setup and teardown (22 + 20 + 31 s) on 2 cores shared at load average ~20 (Serve start,
two ingest runs of 4,782 records); the ``long`` variant keeps the server down 20 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from ray import serve

from storage.database import ensure_database, libpq_conninfo
from storage.migrate import upgrade
from tests.conftest import ROOT, SAMPLE
from tests.support.cms_service import publish_items
from tests.support.http_load import HttpLoad, by_route, failed
from tests.support.private_pg import PrivatePostgres, private_postgres

pytestmark = [pytest.mark.chaos]

PORT = 8012  # the session's Serve proxy (the e2e modules use the same one)
APP = "cms-pg-chaos"
BASE = f"http://127.0.0.1:{PORT}/v1/cms-pg-chaos"
PASSWORD = "correct horse battery"
SECRET = "chaos-secret-" + "x" * 40


def _count(url: str, sql: str) -> int:
    with psycopg.connect(libpq_conninfo(url), connect_timeout=2) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _count_or_none(url: str, sql: str) -> int | None:
    try:
        return _count(url, sql)
    except psycopg.OperationalError:
        return None


@pytest.fixture
def cms_on_private_pg(ray_session: None) -> Iterator[tuple[PrivatePostgres, str, list[int]]]:
    """A private server with Pulse's schema, a CMS application on it and two published items."""
    from cluster.top.serve_config import load_builder

    with private_postgres() as pg:
        url = pg.url("pulse_chaos")
        ensure_database(url)
        upgrade(url)
        serve.start(http_options={"host": "127.0.0.1", "port": PORT})
        args = {
            "database_url": url,
            "jwt_secret": SECRET,
            "namespace": "pulse-chaos-pg",
            "scheduler": False,
            "embed_on_publish": False,
            "admin_email": "admin@pulse.test",
            "admin_password": PASSWORD,
            "rate_per_key": "100000/minute",
            "rate_per_ip": "100000/minute",
            "pool_size": 4,
            "graceful_shutdown_timeout_s": 1,
        }
        serve.run(
            load_builder("serve_apps.cms.app:app_builder")(args), name=APP, route_prefix="/v1/cms-pg-chaos"
        )
        try:
            ids = publish_items(BASE, ["Rivers rise after the storm", "A market reopens"], password=PASSWORD)
            yield pg, url, ids
        finally:
            serve.delete(APP)


def _ingest(url: str, var_dir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PULSE_DATABASE__URL": url, "PULSE_VAR_DIR": str(var_dir), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "cluster.top.cli", "ingest", str(SAMPLE), "--batch-size", "20"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _outage(
    cms_on_private_pg: tuple[PrivatePostgres, str, list[int]], tmp_path: Path, *, down_s: float
) -> dict[str, Any]:
    pg, url, ids = cms_on_private_pg
    expected = len({json.loads(line)["id"] for line in SAMPLE.read_text(encoding="utf-8").splitlines()})
    requests = [
        ("item", f"{BASE}/items/{ids[0]}", {}),
        ("list", f"{BASE}/items", {"status": "published"}),
        ("item", f"{BASE}/items/{ids[1]}", {}),
    ]
    load = HttpLoad(requests, threads=3).start()
    job = _ingest(url, tmp_path / "var")
    try:
        deadline = time.monotonic() + 60
        while (_count_or_none(url, "SELECT count(*) FROM documents") or 0) < 200:
            assert job.poll() is None, f"ingest ended before the outage: {job.communicate()}"
            assert time.monotonic() < deadline, "ingest stored nothing in 60 s"
            time.sleep(0.05)
        stopped = time.monotonic()
        pg.stop("fast")
        load.wait_for("a 503 while the database is down", lambda o: any(x.status == 503 for x in o), 15)
        time.sleep(max(0.0, down_s - (time.monotonic() - stopped)))
        pg.start()
        started = time.monotonic()
        outage_s = started - stopped
        load.wait_for(
            "a 200 after the restart",
            lambda o: any(x.status == 200 and x.at > started for x in o),
            60,
        )
        recovered = min(x.at for x in load.snapshot() if x.status == 200 and x.at > started)
        time.sleep(2)  # keep reading a little after recovery: no late failures
    finally:
        outcomes = load.stop()
        _, err = job.communicate(timeout=120)
    # The job met the outage: it stops with one line saying what to do, never a traceback.
    if job.returncode != 0:
        assert "Traceback" not in err and "error: " in err, err[-3000:]
    again = _ingest(url, tmp_path / "var")
    _, rerun_err = again.communicate(timeout=180)
    assert again.returncode == 0, rerun_err[-3000:]
    stored = _count(url, "SELECT count(*) FROM documents")
    distinct = _count(url, "SELECT count(DISTINCT external_id) FROM documents")
    bad = failed(outcomes, allowed=frozenset({503}))
    unavailable = [o for o in outcomes if o.status == 503]
    return {
        "requests": len(outcomes),
        "statuses": by_route(outcomes),
        "failed_requests": len(bad),
        "failed_detail": sorted({(o.route, o.status, o.code) for o in bad}),
        "answered_503": len(unavailable),
        "codes_503": sorted({o.code for o in unavailable}),
        "outage_s": round(outage_s, 2),
        "recovery_s": round(recovered - started, 3),
        "expected": expected,
        "stored": stored,
        "lost": expected - distinct,
        "duplicated": stored - distinct,
        "job_exit": job.returncode,
        "job_error": next((line for line in err.splitlines() if line.startswith("error: ")), ""),
    }


def _check(result: dict[str, Any]) -> None:
    assert result["failed_requests"] == 0, result
    assert result["answered_503"] > 0 and result["codes_503"] == ["database_unavailable"], result
    assert result["lost"] == 0 and result["duplicated"] == 0, result
    assert result["recovery_s"] < 15, result


def test_postgres_restart_mid_ingest(
    cms_on_private_pg: tuple[PrivatePostgres, str, list[int]], tmp_path: Path, figure: Any
) -> None:
    result = _outage(cms_on_private_pg, tmp_path, down_s=4)
    figure("chaos", scenario="postgres", **{k: v for k, v in result.items() if k != "failed_detail"})
    _check(result)


@pytest.mark.long
def test_postgres_long_outage_mid_ingest(
    cms_on_private_pg: tuple[PrivatePostgres, str, list[int]], tmp_path: Path, figure: Any
) -> None:
    result = _outage(cms_on_private_pg, tmp_path, down_s=20)
    figure("chaos", scenario="postgres_long", **{k: v for k, v in result.items() if k != "failed_detail"})
    _check(result)
