"""Starting or joining Ray, and logging set-up, for every entry point."""

from __future__ import annotations

import logging
import os
from typing import Any

import ray

from cluster.settings import RaySettings

logger = logging.getLogger(__name__)


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "alembic.runtime.migration", "ray.serve", "ray.data", "faiss.loader", "pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Jobs draw their own progress (jobs.progress) and set DataContext.enable_progress_bars = False; Ray
    # Data then warns "Progress bars disabled ..." once per process from this logger (Ray 2.60).
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


def init_ray(settings: RaySettings, *, address: str | None = None, **overrides: Any) -> None:
    """Join ``address`` / ``PULSE_RAY__ADDRESS`` / a running local cluster, or start a local one.

    Inside ``ray job submit`` Ray sets ``RAY_ADDRESS`` and ``ray.init()`` joins that cluster.
    """
    if ray.is_initialized():
        return
    target = address or settings.address or os.environ.get("RAY_ADDRESS")
    if target:
        ray.init(address=target, namespace=settings.namespace, **overrides)
        logger.info("joined Ray cluster at %s", target)
        return
    kwargs: dict[str, Any] = {
        "address": "local",  # a new instance, even when `ray start` left one running here
        "logging_level": logging.WARNING,
        "namespace": settings.namespace,
        "num_cpus": settings.num_cpus,
        "num_gpus": settings.num_gpus,
        "include_dashboard": settings.include_dashboard,
        "dashboard_port": settings.dashboard_port,
    }
    if settings.object_store_memory_mb:
        kwargs["object_store_memory"] = settings.object_store_memory_mb * 1024 * 1024
    kwargs.update(overrides)
    ray.init(**kwargs)
    logger.info("started a local Ray instance (%s CPUs)", ray.cluster_resources().get("CPU"))  # type: ignore[no-untyped-call]
