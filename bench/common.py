"""Shared by the benchmarks: a throwaway PostgreSQL database, medians, JSON output, CPU by process."""

from __future__ import annotations

import json
import os
import resource
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


@dataclass
class CpuSnapshot:
    at: float
    system_busy: float
    procs: dict[int, tuple[float, str]]  # pid -> (user+system s, cmdline)


def cpu_snapshot() -> CpuSnapshot:
    """Every process's CPU seconds so far, and the machine's busy seconds."""
    import psutil

    procs: dict[int, tuple[float, str]] = {}
    for p in psutil.process_iter(["pid", "cmdline", "cpu_times"]):
        t = p.info["cpu_times"]
        if t is None:
            continue
        procs[p.pid] = (t.user + t.system, " ".join(p.info["cmdline"] or []))
    c = psutil.cpu_times()
    busy = c.user + c.system + c.nice + getattr(c, "irq", 0) + getattr(c, "softirq", 0)
    return CpuSnapshot(time.perf_counter(), busy, procs)


def cpu_by_group(
    a: CpuSnapshot, b: CpuSnapshot, *, requests: int, group: Callable[[int, str], str]
) -> dict[str, Any]:
    """CPU between two snapshots per process group (``group(pid, cmdline)`` names it; ``other`` is every
    process outside the benchmark): % of one core, ms per completed request, and the busiest others."""
    wall = max(b.at - a.at, 1e-6)
    groups: dict[str, float] = {}
    others: dict[str, float] = {}
    for pid, (t, cmd) in b.procs.items():
        used = t - a.procs.get(pid, (0.0, ""))[0] if pid in a.procs else t
        if used <= 0:
            continue
        g = group(pid, cmd)
        groups[g] = groups.get(g, 0.0) + used
        if g == "other" and used / wall >= 0.05:
            others[cmd[:80]] = others.get(cmd[:80], 0.0) + used
    n = max(requests, 1)
    cores = os.cpu_count() or 1
    return {
        f"system_busy_pct_of_{cores}_cores": round(100 * (b.system_busy - a.system_busy) / wall / cores, 1),
        "pct_of_one_core": {g: round(100 * v / wall, 1) for g, v in sorted(groups.items())},
        "ms_per_request": {g: round(1000 * v / n, 3) for g, v in sorted(groups.items())},
        "others_pct": {k: round(100 * v / wall, 1) for k, v in others.items()},
    }
