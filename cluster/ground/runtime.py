"""Starting or joining Ray, and logging set-up, for every entry point."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from typing import Any

import ray

from cluster.ground.settings import RaySettings

logger = logging.getLogger(__name__)

#: Lines Ray writes to a driver's stderr that no Pulse user can act on. (1) Ray Data 2.60 passes every
#: actor-pool worker its context as an object reference, and the C++ core worker then logs this once per
#: job at ERROR level (ray-project/ray#57733). (2) The raylet warns, forwarded to the driver, when more
#: worker processes start than cores: Pulse's jobs ask for fractional CPUs on purpose (jobs.placement).
RAY_CORE_NOISE: tuple[bytes, ...] = (
    b"has constructor arguments in the object store and max_restarts > 0",
    b"PYTHON worker processes have been started on node",
)
#: How long the process waits at exit for the last lines written to stderr to pass the filter.
_DRAIN_S = 2.0
_noise_filter: threading.Thread | None = None


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


def drop_ray_core_noise(patterns: tuple[bytes, ...] = RAY_CORE_NOISE) -> None:
    """From now on, drop the lines of this process's stderr (file descriptor 2, which Ray's C++ code
    writes to directly) that contain one of ``patterns``; everything else passes at once, partial lines
    (progress redraws) included. For console entry points only (``pulse``, ``python -m jobs.*``): it
    replaces the process's fd 2 with a pipe read by a thread. At exit the last lines are drained."""
    global _noise_filter
    if _noise_filter is not None:
        return
    original = os.dup(2)
    read_end, write_end = os.pipe()
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        while chunk := os.read(read_end, 65536):
            lines = chunk.split(b"\n")
            kept = [line for line in lines if not any(p in line for p in patterns)]
            if len(kept) != len(lines) and kept == [b""]:
                continue  # the chunk was only dropped lines
            os.write(original, b"\n".join(kept))
        os.close(read_end)

    def drain() -> None:
        # Give fd 2 back (this closes our write end of the pipe), then let the thread pass what is left.
        # Children that inherited the pipe (a local Ray's processes) keep it open: wait a bounded time.
        sys.stderr.flush()
        os.dup2(original, 2)
        if _noise_filter is not None:
            _noise_filter.join(_DRAIN_S)

    _noise_filter = threading.Thread(target=pump, name="stderr-noise-filter", daemon=True)
    _noise_filter.start()
    atexit.register(drain)


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
