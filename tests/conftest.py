"""Shared fixtures: a real PostgreSQL test database and one local Ray per test session.

The database is, in order: ``PULSE_TEST_DATABASE_URL`` (a server; a fresh database is created on it),
the server on 127.0.0.1:5432, or an embedded PostgreSQL (pgserver) in a temporary folder. Set
``PULSE_TEST_DB=embedded`` to force the embedded server even when a local one runs.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
SAMPLE = ROOT / "jobs" / "ingest" / "sample_data" / "huffpost_2018.jsonl"

TABLES = (
    "document_deletions",
    "document_lsh",
    "document_minhashes",
    "document_aliases",
    "crawl_urls",
    "collect_runs",
    "document_embeddings",
    "embed_runs",
    "vector_files",
    "embedding_models",
    "quarantine",
    "documents",
    "sources",
)


#: The CMS tables, children first (tests that use the CMS truncate them).
CMS_TABLES = (
    "cms_cursors",
    "cms_deliveries",
    "cms_events",
    "cms_webhooks",
    "cms_audit",
    "cms_revisions",
    "cms_item_tags",
    "cms_items",
    "cms_tags",
    "cms_categories",
    "cms_refresh_tokens",
    "cms_api_keys",
    "cms_users",
)

#: The recommendation tables (tests that use them truncate them; truncating ``rec_events`` empties its
#: month partitions but keeps them).
REC_TABLES = (
    "rec_cursors",
    "rec_events",
    "rec_event_ids",
    "rec_served",
    "rec_experiments",
)


#: The job scheduler's tables (migration 0010), runs first.
SCHEDULE_TABLES = ("schedule_runs", "schedules")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``(url_of_a_fresh_test_database, kind)``; the database is dropped at the end."""
    from storage.database import drop_database, ensure_database, normalize_url

    name = f"pulse_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    forced = os.environ.get("PULSE_TEST_DB", "")
    server = None
    if os.environ.get("PULSE_TEST_DATABASE_URL") and forced != "embedded":
        base = normalize_url(os.environ["PULSE_TEST_DATABASE_URL"])
        from sqlalchemy import make_url

        url = make_url(base).set(database=name).render_as_string(hide_password=False)
        kind = "configured"
    elif _port_open("127.0.0.1", 5432) and forced != "embedded":
        url, kind = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", "local"
    else:
        import pgserver

        data = Path("/tmp") / f"pulse-test-pg-{os.getpid()}"  # short: unix socket paths are limited
        server = pgserver.get_server(data, cleanup_mode="delete")
        url = normalize_url(server.get_uri(database=name))
        kind = "embedded"
    ensure_database(url)
    try:
        yield url, kind
    finally:
        drop_database(url)
        if server is not None:
            server.cleanup()


def sibling_database(url: str, suffix: str) -> str:
    """The URL of another database on the same server (unix-socket URLs included)."""
    from sqlalchemy import make_url

    parsed = make_url(url)
    return parsed.set(database=f"{parsed.database}{suffix}").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_url(pg_server_url: tuple[str, str]) -> str:
    from storage.migrate import upgrade

    url = pg_server_url[0]
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def engine(database_url: str):  # type: ignore[no-untyped-def]
    from storage.database import make_engine

    eng = make_engine(database_url, pool_size=2)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine, clean_db: str) -> Iterator[Session]:  # type: ignore[no-untyped-def]
    """A session on empty tables inside a transaction that is rolled back after the test."""
    connection = engine.connect()
    outer = connection.begin()
    sess = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield sess
    finally:
        sess.close()
        outer.rollback()
        connection.close()


@pytest.fixture
def clean_db(engine, database_url: str) -> str:  # type: ignore[no-untyped-def]
    """Empty tables, for tests whose data must be committed (seen by Ray workers and actors)."""
    truncate(engine, TABLES)
    return database_url


def truncate(engine: Any, tables: Iterable[str], *, attempts: int = 5) -> None:
    """``TRUNCATE`` the tables, again when PostgreSQL breaks a deadlock by aborting it: an actor of an
    earlier test in the session (an index shard following the deletion log) may still read the
    database, holding one table while it asks for the next."""
    statement = text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    for attempt in range(attempts):
        try:
            with engine.begin() as conn:
                conn.execute(statement)
            return
        except OperationalError as exc:
            if "deadlock detected" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for the whole session: 2 CPUs, a small object store, no dashboard."""
    import ray

    from cluster.top.serve_config import private_haproxy_env

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Serve's HAProxy ingress, as `pulse up` runs it, with its own files and ports (a `pulse up` started
    # by a test runs beside this Ray with the default ones).
    os.environ.update(private_haproxy_env())
    # A replica being stopped behind HAProxy stays up 30 s by default so load balancers can deregister it;
    # every serve.delete and redeploy of a test then took 31 s (HAProxy retries refused connections anyway).
    os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "2")
    ray.init(
        num_cpus=2,
        object_store_memory=256 * 1024 * 1024,
        include_dashboard=False,
        namespace=f"pulse-test-{os.getpid()}",
        log_to_driver=False,
        logging_level="WARNING",
    )
    try:
        yield
    finally:
        try:
            from ray import serve

            serve.shutdown()
        except Exception:
            pass
        ray.shutdown()


_SESSION_LOCK: list[object] = []


def pytest_configure(config: pytest.Config) -> None:
    """One test session with Ray, PostgreSQL or Serve at a time per machine: the e2e modules bind fixed
    ports (8012...) and a second session would also halve the CPUs the first one pinned. A session that
    runs only tests/unit takes no lock; any other waits (saying so) for the one running."""
    import fcntl
    import sys

    args = [str(a) for a in config.args] or ["tests"]
    if all("tests/unit" in a for a in args):
        return
    handle = open(f"/tmp/pulse-test-session-{os.getuid()}.lock", "w")  # noqa: SIM115 (held for the session)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.stderr.write("waiting for another Pulse test session on this machine to finish...\n")
        fcntl.flock(handle, fcntl.LOCK_EX)
    _SESSION_LOCK.append(handle)


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Any:
    """``figure(name, **values)``: print one figure of this test and append it to the reliability figures
    file (``tests/support/figures.py``; ``bench/reliability.py`` makes the README table from it)."""
    from tests.support import figures

    def write(name: str, **values: Any) -> dict[str, Any]:
        return figures.record(request.node.nodeid, name, values)

    return write
