"""Choosing the database: a configured URL, else a local server on 127.0.0.1:5432, else an embedded one.

The embedded server is a real PostgreSQL (the ``pgserver`` package) whose data lives under
``PULSE_DATABASE__EMBEDDED_DIR`` and which listens only on a unix socket inside that folder.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from sqlalchemy import make_url

from cluster.ground.settings import DatabaseSettings
from storage.database import check_connection, ensure_database, mask_url, normalize_url
from storage.errors import DatabaseUnavailable
from storage.migrate import require_current, upgrade

logger = logging.getLogger(__name__)

DatabaseKind = Literal["configured", "local", "embedded"]


@dataclass(frozen=True)
class DatabaseChoice:
    url: str
    kind: DatabaseKind
    server_version: str
    recorded_in: Path | None = None  # the platform.json whose choice this is (`pulse up` made it)

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    def describe(self) -> str:
        labels = {
            "configured": "from PULSE_DATABASE__URL",
            "local": "local server",
            "embedded": "embedded, pgserver",
        }
        origin = f", recorded by `pulse up` in {self.recorded_in}" if self.recorded_in else ""
        return f"PostgreSQL {self.server_version} ({labels[self.kind]}{origin}) at {self.masked_url}"


def _port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def local_server_url(settings: DatabaseSettings, database: str | None = None) -> str:
    return (
        f"postgresql+psycopg://{settings.local_user}@{settings.local_host}:{settings.local_port}/"
        f"{database or settings.name}"
    )


def start_embedded(data_dir: Path, database: str) -> str:
    """Start (or find running) the embedded server and return the URL of ``database`` on it."""
    from pgserver.postgres_server import get_server

    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process, as `pulse up` promises; `pulse down` stops it.
    server = get_server(data_dir, cleanup_mode=None)
    uri = server.get_uri(database="postgres")
    url = normalize_url(uri).replace("/postgres?", f"/{database}?", 1)
    ensure_database(url)
    return url


def stop_embedded(data_dir: Path) -> bool:
    """Stop the embedded server if it runs; data is kept. Returns whether one was running."""
    from pgserver.postgres_server import get_server

    data_dir = data_dir.expanduser().resolve()
    if not (data_dir / "postmaster.pid").exists():
        return False
    server = get_server(data_dir, cleanup_mode="stop")
    server.cleanup()
    return True


def resolve_database(settings: DatabaseSettings, *, allow_embedded: bool = True) -> DatabaseChoice:
    """Pick the database in the documented order and check that it answers."""
    timeout = settings.connect_timeout_s
    if settings.url is not None:
        url = normalize_url(settings.url.get_secret_value())
        version = check_connection(url, timeout_s=timeout)
        return DatabaseChoice(url, "configured", version)
    if _port_open(settings.local_host, settings.local_port):
        url = local_server_url(settings)
        ensure_database(url, timeout_s=timeout)
        return DatabaseChoice(url, "local", check_connection(url, timeout_s=timeout))
    if not allow_embedded:
        raise DatabaseUnavailable(
            mask_url(local_server_url(settings)), "nothing listens there and the embedded server is disabled"
        )
    url = start_embedded(settings.embedded_dir, settings.name)
    return DatabaseChoice(url, "embedded", check_connection(url, timeout_s=timeout))


def _prepare(choice: DatabaseChoice, *, migrate: bool) -> DatabaseChoice:
    if migrate:
        upgrade(choice.url)
    else:
        require_current(choice.url)
    return choice


def connect_database(settings: DatabaseSettings, *, migrate: bool = False) -> DatabaseChoice:
    """Resolve the database, then migrate it (``migrate=True``) or check it is migrated."""
    return _prepare(resolve_database(settings), migrate=migrate)


def connect_recorded(
    url: str,
    kind: str,
    *,
    record: Path,
    embedded_dir: Path | None,
    timeout_s: int,
    migrate: bool = False,
) -> DatabaseChoice:
    """The database `pulse up` recorded in ``record``; an embedded one is started again if it is stopped.

    A recorded server that does not answer is ``DatabaseUnavailable`` with what to do: no other database
    holds the platform's data, so none is chosen instead.
    """
    if kind not in ("configured", "local", "embedded"):
        raise DatabaseUnavailable(mask_url(url), f"{record} records an unknown kind {kind!r}; remove it")
    known = cast(DatabaseKind, kind)
    try:
        version = check_connection(url, timeout_s=timeout_s)
    except DatabaseUnavailable as exc:
        if known != "embedded" or embedded_dir is None:
            raise DatabaseUnavailable(
                exc.url,
                f"{exc.reason}. It is the database `pulse up` recorded in {record}: start it again (or run "
                "`pulse up`), or set PULSE_DATABASE__URL to use another one",
            ) from exc
        database = make_url(url).database or "postgres"
        url = start_embedded(embedded_dir, database)
        version = check_connection(url, timeout_s=timeout_s)
    return _prepare(DatabaseChoice(url, known, version, recorded_in=record), migrate=migrate)
