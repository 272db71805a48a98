"""Start, restart and stop the job scheduler actor on a `ray start` node, from a process of its own.

Used by ``tests/integration/test_job_scheduler.py`` in a subprocess (one process holds one Ray; the test
session may hold its own)::

    python -m tests.support.job_scheduler_probe start|restart|stop GCS_ADDRESS NAMESPACE [CONFIG_JSON]

``start`` creates the actor (get-or-create) from ``CONFIG_JSON`` (database_url, job_server_url, tick_s,
schedules: a list of ScheduleSpec fields) and waits for its first tick; ``restart`` kills it with
``no_restart=False`` and waits until Ray has brought it back (a new process); ``stop`` kills it for good.
The last line of stdout is one JSON object: the actor's process id(s) and stats.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import ray

from actors.job_scheduler_actor import JobSchedulerConfig, get_or_create_job_scheduler
from cluster.ground.constants import JOB_SCHEDULER_NAME
from storage.schedules import ScheduleSpec


def _stats(actor: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ray.get(actor.stats.remote(), timeout=10)
        except ray.exceptions.RayError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main(argv: list[str]) -> int:
    command, address, namespace = argv[:3]
    ray.init(address=address, namespace=namespace, log_to_driver=False, logging_level="WARNING")
    out: dict[str, Any] = {}
    if command == "start":
        raw = json.loads(argv[3])
        config = JobSchedulerConfig(
            database_url=raw["database_url"],
            job_server_url=raw["job_server_url"],
            schedules=tuple(
                ScheduleSpec(**{**s, "args": tuple(s.get("args", ()))}) for s in raw["schedules"]
            ),
            env_vars=raw.get("env_vars", {}),
            namespace=namespace,
            tick_s=raw.get("tick_s", 1.0),
            lost_after_s=raw.get("lost_after_s", 120.0),
        )
        actor = get_or_create_job_scheduler(config)
        stats = _stats(actor)
        while stats.ticks < 1:
            time.sleep(0.2)
            stats = _stats(actor)
        out = {"pid": stats.pid, "ticks": stats.ticks, "last_error": stats.last_error}
    elif command == "restart":
        actor = ray.get_actor(JOB_SCHEDULER_NAME, namespace=namespace)
        before = _stats(actor).pid
        ray.kill(actor, no_restart=False)
        deadline = time.monotonic() + 60
        while True:
            stats = _stats(actor)
            if stats.pid != before and stats.ticks >= 1:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the scheduler actor did not come back in 60 s")
            time.sleep(0.2)
        out = {"before": before, "after": stats.pid, "last_error": stats.last_error}
    elif command == "stop":
        ray.kill(ray.get_actor(JOB_SCHEDULER_NAME, namespace=namespace), no_restart=True)
        out = {"stopped": True}
    else:
        raise SystemExit(f"unknown command {command!r}: start, restart or stop")
    ray.shutdown()
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
