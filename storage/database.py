"""Engines, sessions and connection checks for PostgreSQL (psycopg 3 through SQLAlchemy 2.0)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import sqlalchemy.exc
from sqlalchemy import Engine, create_engine, make_url
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from storage.errors import DatabaseLost, DatabaseUnavailable

logger = logging.getLogger(__name__)


def normalize_url(url: str) -> str:
    """Use the psycopg 3 driver whatever PostgreSQL URL flavour was given."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if not parsed.drivername.startswith("postgresql"):
        raise ValueError(f"not a PostgreSQL URL: {mask_url(url)} (Pulse needs PostgreSQL)")
    return parsed.render_as_string(hide_password=False)


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``, safe to print."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: print nothing secret
        return "<unparsable database URL>"


def _libpq_conninfo(url: URL) -> str:
    """A libpq conninfo string for psycopg.connect from a SQLAlchemy URL."""
    parts = {
        "host": url.host or url.query.get("host"),
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "dbname": url.database,
    }
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in parts.items() if v not in (None, "")})


def libpq_conninfo(url: str) -> str:
    """A libpq conninfo string for psycopg.connect from a database URL (as settings give it)."""
    return _libpq_conninfo(make_url(normalize_url(url)))


def database_lost(exc: BaseException) -> DatabaseLost | None:
    """``DatabaseLost`` when ``exc`` is the driver's failure of a statement or a connection (the server
    stopped, restarted or refused connections mid-command), else None."""
    if not isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return None
    text = str(exc.orig or exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return DatabaseLost(lines[-1] if lines else type(exc.orig or exc).__name__)


def check_connection(url: str, *, timeout_s: int = 5) -> str:
    """Connect once and return the server version string; raise ``DatabaseUnavailable`` otherwise."""
    parsed = make_url(normalize_url(url))
    try:
        with psycopg.connect(_libpq_conninfo(parsed), connect_timeout=timeout_s) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(mask_url(url), reason) from exc
    return str(row[0]) if row else "unknown"


def ensure_database(url: str, *, timeout_s: int = 5) -> None:
    """Create the URL's database if it does not exist (connecting to ``postgres`` on the same server)."""
    parsed = make_url(normalize_url(url))
    name = parsed.database
    if not name:
        return
    admin = parsed.set(database="postgres")
    try:
        with psycopg.connect(_libpq_conninfo(admin), connect_timeout=timeout_s, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
                logger.info("created database %s", name)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(mask_url(url), str(exc).strip().splitlines()[-1]) from exc


def drop_database(url: str, *, timeout_s: int = 5) -> None:
    """Drop the URL's database (used by tests that create their own)."""
    parsed = make_url(normalize_url(url))
    admin = parsed.set(database="postgres")
    with psycopg.connect(_libpq_conninfo(admin), connect_timeout=timeout_s, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                psycopg.sql.Identifier(parsed.database or "")
            )
        )


def _engine_options(pool_size: int, timeout_s: int) -> dict[str, Any]:
    """Pool options shared by sync and async engines: pre-ping survives a restarted server."""
    return {
        "pool_size": pool_size,
        "max_overflow": pool_size,
        "pool_pre_ping": True,
        "connect_args": {"connect_timeout": timeout_s},
    }


def make_engine(url: str, *, pool_size: int = 5, timeout_s: int = 5) -> Engine:
    """A pooled engine for jobs, actors and the CLI."""
    return create_engine(normalize_url(url), **_engine_options(pool_size, timeout_s))


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def make_async_engine(
    url: str, *, pool_size: int = 5, timeout_s: int = 5, pre_ping: bool = False
) -> AsyncEngine:
    """An asyncio engine (psycopg 3 async) for Serve replicas.

    Without ``pre_ping`` a checkout costs no round trip (a ping was 2 ms of a 3.5 ms read here). After a
    database restart the first statement on each stale connection fails (the API answers 503 with
    Retry-After); that failure marks every older pooled connection invalid, so later checkouts reconnect.
    """
    options = _engine_options(pool_size, timeout_s)
    options["pool_pre_ping"] = pre_ping
    return create_async_engine(normalize_url(url), **options)
