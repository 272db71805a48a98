"""Pulse's metrics on a live Prometheus scrape of a Ray node, recorded by Pulse's real code paths.

Used by ``tests/integration/test_metrics_scrape.py`` in a subprocess (one process holds one Ray; the test
session's Ray has no known metrics port)::

    python -m tests.support.metrics_probe DATABASE_URL STORAGE_DIR

The process starts a local Ray the way entry points do (``init_ray``), with a free metrics export port,
and runs, against the (migrated, empty) database:

1. the embedding job over ``DOCUMENTS`` documents just stored (``EncodeBatch`` records
   ``pulse_embed_documents_total``);
2. an index shard actor (``get_or_create_index_actor``) that loads them (``pulse_index_vectors``,
   ``pulse_index_applied_total``);
3. the trends application under Serve, with its access log on, asked ``/healthz`` and an unknown story
   (the HTTP middleware's ``pulse_http_requests_total`` and ``pulse_http_latency_ms``; the replica's JSON
   access lines, with Serve's ``request_id``).

It then polls the node's ``/metrics`` until every family in ``EXPECTED`` is there (Ray's agent exports
every few seconds), up to ``WAIT_S``. The last line of stdout is one JSON object: ``scrape`` (the text of
the last scrape), ``seconds`` (how long the families took to appear), ``missing`` (families never seen),
``replica_lines`` (the trends replica's JSON log lines that hold a request id).
"""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import ray
from ray import serve

#: Documents stored and embedded.
DOCUMENTS = 12
#: Seconds to wait for every expected family on the scrape.
WAIT_S = 90.0
#: Families the probe's work records (exported names).
EXPECTED = (
    "ray_pulse_embed_documents_total",
    "ray_pulse_index_vectors",
    "ray_pulse_index_applied_total",
    "ray_pulse_http_requests_total",
    "ray_pulse_http_latency_ms_bucket",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _store_documents(database_url: str) -> None:
    from storage.database import make_engine, make_session_factory, session_scope
    from storage.documents import DocumentRecord, DocumentRepository

    engine = make_engine(database_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            repo = DocumentRepository(session)
            source_id = repo.ensure_source(name="metrics_probe", kind="file", uri="/metrics-probe")
            for i in range(DOCUMENTS):
                repo.upsert_one(
                    DocumentRecord(
                        canonical_url=f"https://probe.example/{i}",
                        title=f"Probe story {i}",
                        text=f"Probe document number {i} about river floods, harvests and city budgets.",
                    ),
                    source_id=source_id,
                )
    finally:
        engine.dispose()


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return str(resp.read().decode())


def _families(text: str) -> set[str]:
    return {
        line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines() if line.startswith("ray_pulse_")
    }


def _replica_lines() -> list[str]:
    """The JSON lines of the trends replicas' logs (``logs/serve/replica_trends_*``) that name a request."""
    logs = Path(ray._private.worker._global_node.get_logs_dir_path()) / "serve"  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    while True:
        lines = [
            line
            for path in sorted(logs.glob("replica_trends_*.log"))
            for line in path.read_text(errors="replace").splitlines()
            if line.startswith("{") and '"request_id"' in line
        ]
        if len(lines) >= 2 or time.monotonic() > deadline:
            return lines
        time.sleep(0.5)


def probe(database_url: str, storage: Path) -> dict[str, Any]:
    from actors.index_actor import IndexActorConfig, get_or_create_index_actor
    from actors.vector_search import IndexConfig
    from cluster.ground.runtime import configure_logging, init_ray
    from cluster.ground.settings import Settings
    from jobs.embed.pipeline import EmbedJobConfig, run_embed
    from serve_apps.trends.app import app_builder

    configure_logging("WARNING")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        ray={"num_cpus": 2, "include_dashboard": False, "object_store_memory_mb": 256},
    )
    metrics_port = _free_port()
    init_ray(settings.ray, log_level="WARNING", log_to_driver=False, _metrics_export_port=metrics_port)
    try:
        _store_documents(database_url)
        summary = run_embed(
            EmbedJobConfig(
                database_url=database_url,
                storage_uri=str(storage),
                model_name="default",
                max_actors=1,
                progress=False,
            )
        )
        shard = get_or_create_index_actor(
            IndexActorConfig(
                database_url=database_url,
                storage_uri=str(storage),
                model_id=summary.model_id,
                dimension=384,
                namespace=ray.get_runtime_context().namespace,
                num_cpus=0.1,
                poll_interval_s=0.5,
                snapshot_interval_s=0,
                index=IndexConfig(kind="flat"),
            )
        )
        assert ray.get(shard.wait_ready.remote(120), timeout=150)
        http_port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": http_port})
        serve.run(
            app_builder({"database_url": database_url, "access_log": True, "log_level": "INFO"}),
            name="trends",
            route_prefix="/v1/trends",
        )
        statuses = [
            httpx.get(f"http://127.0.0.1:{http_port}/v1/trends/healthz", timeout=30).status_code,
            httpx.get(f"http://127.0.0.1:{http_port}/v1/trends/987654321", timeout=30).status_code,
        ]
        started = time.monotonic()
        text, missing = "", set(EXPECTED)
        while time.monotonic() - started < WAIT_S:
            text = _scrape(metrics_port)
            missing = set(EXPECTED) - _families(text)
            if not missing:
                break
            time.sleep(1.0)
        return {
            "replica_lines": _replica_lines(),
            "scrape": text,
            "seconds": round(time.monotonic() - started, 1),
            "missing": sorted(missing),
            "statuses": statuses,
            "embedded": summary.embedded,
        }
    finally:
        serve.shutdown()
        ray.shutdown()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    sys.stdout.write(json.dumps(probe(sys.argv[1], Path(sys.argv[2]))) + "\n")
