"""Run the collect and embed jobs beside the deployed platform on a Ray node that declares 2 CPUs.

Used by ``tests/e2e/test_jobs_beside_services.py`` in a subprocess (one process holds one Ray; the test
session may already hold its own)::

    python -m tests.support.services_probe DATABASE_URL VAR_DIR

What `pulse up` runs, through the same functions: a local node from settings (``init_ray`` with
``PULSE_RAY__NUM_CPUS=2``), the embedding job, the search and CMS applications (``deploy_search``,
``deploy_cms``: Serve controller, HAProxy ingress, search ingress, query embedder, CMS, the CMS scheduler
actor, index shards and the keyword actor once search answers). Then, beside them, the collect job on the
``news`` source already in the database (``force``), and the embedding job again on what it collected.

The last line of stdout is one JSON object: ``total_cpus``, ``services_cpus`` (what the services
reserve: total - available once they answer), ``idle_cpu_s`` (CPU seconds the node's Ray worker
processes, Ray's own agents included, used in ``IDLE_WINDOW_S`` of idleness), ``free_cpus``, ``collect``
(the job's summary and resource plan), ``embed`` (its summary: encoders, ...).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

#: Seconds of idleness over which the services' real CPU use is measured.
IDLE_WINDOW_S = 5.0


def _settings(var_dir: Path) -> Any:
    from cluster.ground.settings import Settings
    from cluster.top.serve_config import free_port

    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        var_dir=var_dir,
        storage={"uri": str(var_dir / "storage")},
        ray={
            "num_cpus": 2,
            "include_dashboard": False,
            "object_store_memory_mb": 256,
            "namespace": f"pulse-beside-{os.getpid()}",
        },
        serve={"host": "127.0.0.1", "port": free_port(), "ready_timeout_s": 240},
        cms={"jwt_secret": "beside-" + "s" * 40, "admin_password": "beside services pw"},
        collect={"allow_networks": ["127.0.0.0/8"], "per_host_delay_s": 0.02, "timeout_s": 10.0},
    )


def _worker_cpu_seconds() -> float:
    """CPU seconds used so far by this node's Ray worker processes (services, actors, replicas)."""
    import psutil

    total = 0.0
    for proc in psutil.process_iter(["cmdline", "cpu_times"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        times = proc.info.get("cpu_times")
        if times is not None and ("ray::" in cmdline or "default_worker.py" in cmdline):
            total += times.user + times.system
    return total


def probe(database_url: str, var_dir: Path) -> dict[str, Any]:
    import httpx
    import ray
    from ray import serve

    from cluster.ground.runtime import init_ray
    from cluster.top.cms_scheduler import start_cms_scheduler
    from cluster.top.job_configs import collect_config, embed_config
    from cluster.top.platform import api_url, wait_ready
    from cluster.top.serve_config import cms_app_args, deploy_cms, deploy_search, private_haproxy_env
    from jobs.collect.pipeline import plan_resources, run_collect
    from jobs.embed.pipeline import run_embed
    from jobs.placement import free_resources

    settings = _settings(var_dir)
    os.environ.update(private_haproxy_env())  # Serve's HAProxy ingress, as `pulse up` runs it
    init_ray(settings.ray, log_to_driver=False, logging_level=logging.WARNING)
    try:
        run_embed(embed_config(settings, database_url, progress=False))
        deploy_search(settings, database_url)
        deploy_cms(settings, database_url)
        start_cms_scheduler(cms_app_args(settings, database_url))  # as `pulse up` does
        url = api_url(settings)
        wait_ready(url, settings.serve.ready_timeout_s)
        assert httpx.get(f"{url}/v1/search", params={"q": "students march"}, timeout=60).status_code == 200
        assert httpx.get(f"{url}/v1/cms/openapi.json", timeout=60).status_code == 200
        time.sleep(1.0)  # the GCS's resource view follows the last actor start within moments
        total = float(ray.cluster_resources()["CPU"])  # type: ignore[no-untyped-call]
        free = free_resources()["CPU"]
        before = _worker_cpu_seconds()
        time.sleep(IDLE_WINDOW_S)
        idle_cpu_s = _worker_cpu_seconds() - before

        collect_cfg = collect_config(settings, database_url, sources=("news",), force=True, progress=False)
        plan = plan_resources(collect_cfg, free_cpus=free, fetch_tasks=2 * int(total))
        collect = run_collect(collect_cfg)
        embed = run_embed(embed_config(settings, database_url, progress=False))
    finally:
        try:
            serve.shutdown()  # type: ignore[no-untyped-call]
        finally:
            ray.shutdown()  # type: ignore[no-untyped-call]
    return {
        "total_cpus": total,
        "services_cpus": round(total - free, 3),
        "idle_cpu_s": round(idle_cpu_s, 2),
        "idle_window_s": IDLE_WINDOW_S,
        "free_cpus": round(free, 3),
        "collect": {**collect.as_dict(), "plan": plan.describe(), "extract_tasks": plan.extract_tasks},
        "embed": {
            "pending": embed.pending,
            "embedded": embed.embedded,
            "actors": embed.actors,
            "seconds": round(embed.seconds, 1),
        },
    }


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    result = probe(sys.argv[1], Path(sys.argv[2]))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
