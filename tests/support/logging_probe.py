"""Log lines of a Ray task and a Ray actor in a Ray started the way Pulse's entry points start it.

Used by ``tests/integration/test_worker_logs.py`` in a subprocess (one process holds one Ray; the test
session holds its own, started without Pulse's logging)::

    python -m tests.support.logging_probe

The process configures its console logging (``configure_logging``) and starts a local Ray with
``init_ray``, as ``pulse`` and ``python -m jobs.*`` do; a task logs ``retrying`` with the fields of
``jobs.collect.fetch``'s line, an actor logs a warning with its own fields. Each returns its worker id,
and the probe reads that worker's log file (``worker-<worker id>-*.err`` in the session's logs folder).

The last line of stdout is one JSON object: ``task`` and ``actor`` (the first line of each worker's log
that names the message, as written), ``noise_logged`` (whether the task's INFO line from ``faiss.loader``
reached its log), ``root_formatters`` (the class names of the driver's root handlers' formatters after
``init_ray``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import ray

#: Fields of the task's line (``jobs.collect.fetch`` logs ``retrying`` with these keys).
TASK_FIELDS: dict[str, Any] = {"url": "https://a.example/feed", "attempt": 2, "status": 503, "wait_s": 0.5}
#: Fields of the actor's line.
ACTOR_FIELDS: dict[str, Any] = {"shard": 1, "reason": "probe of the actor's log"}
#: An INFO line of a logger ``quiet_noisy_loggers`` holds at WARNING, logged by the task before its own.
NOISE = "faiss loader noise"
#: Seconds to wait for a worker's line to reach its log file.
WAIT_S = 30.0


@ray.remote(num_cpus=0)
def log_from_task() -> str:
    logging.getLogger("faiss.loader").info(NOISE)  # held at WARNING in workers too (quiet_noisy_loggers)
    logging.getLogger("jobs.collect.fetch").info("retrying", extra=TASK_FIELDS)
    return str(ray.get_runtime_context().get_worker_id())


@ray.remote(num_cpus=0)
class LoggingActor:
    def log(self) -> str:
        logging.getLogger("actors.probe").warning("actor probe", extra=ACTOR_FIELDS)
        return str(ray.get_runtime_context().get_worker_id())


def _lines(logs: Path, worker_id: str, message: str) -> list[str]:
    """The worker's log lines, once one of them holds ``message`` as a JSON string."""
    needle = json.dumps(message)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        lines = [
            line
            for path in logs.glob(f"worker-{worker_id}-*.err")
            for line in path.read_text(errors="replace").splitlines()
        ]
        if any(needle in line for line in lines):
            return lines
        time.sleep(0.2)
    raise TimeoutError(f"no line holding {needle} in {logs}/worker-{worker_id}-*.err after {WAIT_S:.0f} s")


def probe() -> dict[str, Any]:
    from cluster.ground.runtime import configure_logging, init_ray
    from cluster.ground.settings import Settings

    configure_logging("INFO")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        ray={"num_cpus": 1, "include_dashboard": False, "object_store_memory_mb": 128},
    )
    init_ray(settings.ray, log_level="INFO", log_to_driver=False)
    try:
        logs = Path(ray._private.worker._global_node.get_logs_dir_path())  # type: ignore[attr-defined]
        task_worker = ray.get(log_from_task.remote(), timeout=120)
        actor = LoggingActor.remote()  # type: ignore[attr-defined]
        actor_worker = ray.get(actor.log.remote(), timeout=120)
        task_lines = _lines(logs, task_worker, "retrying")
        actor_lines = _lines(logs, actor_worker, "actor probe")
        return {
            "task": next(line for line in task_lines if '"retrying"' in line),
            "actor": next(line for line in actor_lines if '"actor probe"' in line),
            "noise_logged": any(NOISE in line for line in task_lines),
            "root_formatters": [type(h.formatter).__name__ for h in logging.getLogger().handlers],
        }
    finally:
        ray.shutdown()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    sys.stdout.write(json.dumps(probe()) + "\n")
