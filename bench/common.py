"""Shared by the benchmarks: a throwaway PostgreSQL database, medians, JSON output."""

from __future__ import annotations

import json
import os
import resource
import socket
import statistics
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"


@contextmanager
def bench_database() -> Iterator[str]:
    """A fresh, migrated database: on PULSE_DATABASE__URL's server, else 127.0.0.1:5432, else an
    embedded PostgreSQL in a temporary folder. Dropped afterwards."""
    from cluster.ground.settings import DatabaseSettings
    from cluster.top.database import local_server_url, start_embedded, stop_embedded
    from storage.database import drop_database, ensure_database
    from storage.migrate import upgrade

    name = f"pulse_bench_{uuid.uuid4().hex[:8]}"
    embedded: Path | None = None
    if os.environ.get("PULSE_DATABASE__URL"):
        from sqlalchemy import make_url

        url = (
            make_url(os.environ["PULSE_DATABASE__URL"])
            .set(database=name)
            .render_as_string(hide_password=False)
        )
        ensure_database(url)
    else:
        settings = DatabaseSettings()
        try:
            socket.create_connection((settings.local_host, settings.local_port), timeout=0.5).close()
            url = local_server_url(settings, name)
            ensure_database(url)
        except OSError:
            embedded = Path(tempfile.mkdtemp(prefix="pulse-bench-pg-"))
            url = start_embedded(embedded, name)
    upgrade(url)
    try:
        yield url
    finally:
        drop_database(url)
        if embedded is not None:
            stop_embedded(embedded)


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(result: dict[str, Any]) -> None:
    """The benchmark's one JSON object on stdout."""
    sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")


def ingress_env(kind: str) -> dict[str, str]:
    """Environment for a benchmark's own Ray (set before ``ray.init``): Serve's HAProxy ingress as
    ``pulse up`` runs it (``haproxy``, the product default; own short folder and free ports), or Serve's
    Python proxy (``proxy``)."""
    if kind == "proxy":
        return {"RAY_SERVE_ENABLE_HA_PROXY": "0"}
    from cluster.top.serve_config import private_haproxy_env

    return private_haproxy_env()
