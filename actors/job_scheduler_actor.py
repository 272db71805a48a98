"""The Ray shell around ``JobScheduler``: one named, detached actor (``pulse-job-scheduler``) that Ray
restarts after a crash, submitting jobs to Ray's job server with ``JobSubmissionClient``.

A thread ticks every ``tick_s`` seconds (``poke()`` wakes it at once: after `pulse schedules run-now`).
The actor holds nothing that matters: schedules, due times and runs are in PostgreSQL, so a restarted actor
reconciles the runs it had started with the job server and carries on, never starting a second copy.

Jobs run the code the actor runs: the actor's own ``runtime_env`` working directory (a ``gcs://`` package
when whoever created it uploaded one), else none (the code is installed where the job's driver runs: the
image, or the virtualenv of a local node). Their environment is ``JobSchedulerConfig.env_vars``: the
``PULSE_*`` settings of the process that started the actor (database URL, storage URI, namespace...).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import ray
from ray.actor import ActorClass, ActorProxy
from ray.job_submission import JobSubmissionClient

from actors.job_scheduler import LIVE_JOB_STATES, JobScheduler, JobState, TickReport
from cluster.ground.constants import DEFAULT_NAMESPACE, JOB_SCHEDULER_NAME
from cluster.ground.job_specs import JOB_METADATA_KIND, entrypoint, job_runtime_env, kind_of_entrypoint
from storage.database import make_engine, make_session_factory
from storage.schedules import ScheduleRow, ScheduleSpec, ScheduleStore

logger = logging.getLogger(__name__)

#: Metadata key that marks the jobs the scheduler submitted (and which schedule).
JOB_METADATA_SCHEDULE = "pulse_schedule"


@dataclass(frozen=True)
class JobSchedulerConfig:
    """Everything the scheduler actor needs; plain values so it never reads settings itself."""

    database_url: str
    job_server_url: str  # the dashboard, e.g. http://127.0.0.1:8265
    schedules: tuple[ScheduleSpec, ...] = ()
    env_vars: dict[str, str] = field(default_factory=dict)  # the jobs' environment (PULSE_* settings)
    namespace: str = DEFAULT_NAMESPACE
    tick_s: float = 10.0
    lost_after_s: float = 120.0
    working_dir: str | None = None  # None: the actor's own runtime_env working_dir, if any


@dataclass
class JobSchedulerStats:
    """What the scheduler has done since its process started (``stats()``)."""

    pid: int = field(default_factory=os.getpid)
    ticks: int = 0
    tick_errors: int = 0
    started: int = 0
    last_tick: TickReport | None = None
    last_error: str | None = None


class RayJobSubmitter:
    """``Submitter`` over Ray's job server. The client is made on first use (its constructor asks the
    server for its version), so an actor whose job server is not up yet still starts and retries."""

    def __init__(self, address: str, *, runtime_env: dict[str, Any]) -> None:
        self._address = address
        self._runtime_env = runtime_env
        self._client: JobSubmissionClient | None = None

    def _jobs(self) -> JobSubmissionClient:
        if self._client is None:
            self._client = JobSubmissionClient(self._address)
        return self._client

    def submit(self, kind: str, args: Sequence[str], submission_id: str) -> str:
        return self._jobs().submit_job(
            entrypoint=entrypoint(kind, args),
            submission_id=submission_id,
            runtime_env=self._runtime_env,
            metadata={JOB_METADATA_KIND: kind, JOB_METADATA_SCHEDULE: "1"},
        )

    def status(self, submission_id: str) -> JobState | None:
        try:
            info = self._jobs().get_job_info(submission_id)
        except RuntimeError as exc:
            if "404" in str(exc) or "does not exist" in str(exc):
                return None
            raise
        return JobState(str(info.status.value), info.message)

    def list_live(self, kind: str) -> list[str]:
        found = []
        for job in self._jobs().list_jobs():
            job_kind = (job.metadata or {}).get(JOB_METADATA_KIND) or kind_of_entrypoint(job.entrypoint)
            if job_kind == kind and str(job.status.value) in LIVE_JOB_STATES:
                found.append(job.submission_id or job.job_id or "?")
        return found


def own_working_dir() -> str | None:
    """The working directory package of this actor's runtime_env (a ``gcs://`` URI), if it has one."""
    uri = ray.get_runtime_context().runtime_env.working_dir_uri()  # type: ignore[no-untyped-call]
    return str(uri) if uri else None


class JobSchedulerService:
    def __init__(self, config: JobSchedulerConfig) -> None:
        self._config = config
        working_dir = config.working_dir or own_working_dir()
        runtime_env = job_runtime_env(working_dir=working_dir, env_vars=config.env_vars)
        self._engine = make_engine(config.database_url, pool_size=2)
        self._store = ScheduleStore(make_session_factory(self._engine))
        self._core = JobScheduler(
            self._store,
            RayJobSubmitter(config.job_server_url, runtime_env=runtime_env),
            lost_after_s=config.lost_after_s,
        )
        self._stats = JobSchedulerStats()
        self._tick_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._seeded = False
        self._thread = threading.Thread(target=self._run, name="job-scheduler", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------ loop
    def _run(self) -> None:
        while not self._stopping.is_set():
            self._tick()
            self._wake.wait(self._config.tick_s)
            self._wake.clear()
        self._engine.dispose()

    def _tick(self) -> TickReport | None:
        with self._tick_lock:
            try:
                if not self._seeded:  # here, not in __init__: PostgreSQL may not answer yet
                    self._core.seed(self._config.schedules)
                    self._seeded = True
                report = self._core.tick()
            except Exception as exc:  # e.g. PostgreSQL down: try again next interval
                logger.exception("job scheduler tick failed")
                self._stats.tick_errors += 1
                self._stats.last_error = f"{type(exc).__name__}: {exc}"
                return None
            self._stats.ticks += 1
            self._stats.started += len(report.started)
            self._stats.last_tick = report
            if report.errors:
                self._stats.last_error = report.errors[-1]
            return report

    # ----------------------------------------------------------------------------------- remote API
    # ``@ray.method`` types the calls through a handle (``ActorProxy``).
    @ray.method
    def tick_now(self) -> TickReport | None:
        """Run one tick now (after any tick in progress) and return its report."""
        return self._tick()

    @ray.method
    def poke(self) -> None:
        """Wake the loop: tick at once (after `pulse schedules run-now`)."""
        self._wake.set()

    @ray.method
    def run_now(self, name: str) -> ScheduleRow:
        """Ask for a run of the schedule now (recorded in PostgreSQL) and tick."""
        row = self._core.run_now(name)
        self._wake.set()
        return row

    @ray.method
    def pause(self, name: str) -> ScheduleRow:
        return self._core.pause(name)

    @ray.method
    def resume(self, name: str) -> ScheduleRow:
        row = self._core.resume(name)
        self._wake.set()
        return row

    @ray.method
    def stats(self) -> JobSchedulerStats:
        return replace(self._stats)

    @ray.method
    def stop(self) -> None:
        """Finish the current tick and stop the loop (the actor itself stays until killed)."""
        self._stopping.set()
        self._wake.set()


#: Ray options of the scheduler actor: detached, always restarted, no CPU of its own (it waits on
#: PostgreSQL and the job server; each job it submits reserves its own resources).
JOB_SCHEDULER_OPTIONS: dict[str, Any] = {
    "lifetime": "detached",
    "max_restarts": -1,
    "max_task_retries": 3,
    "max_concurrency": 4,
    "num_cpus": 0,
}

JobSchedulerActor: ActorClass[JobSchedulerService] = ray.remote(JobSchedulerService)


def get_or_create_job_scheduler(config: JobSchedulerConfig) -> ActorProxy[JobSchedulerService]:
    """The scheduler actor, created unless it runs already (one per namespace)."""
    return JobSchedulerActor.options(
        name=JOB_SCHEDULER_NAME,
        namespace=config.namespace,
        get_if_exists=True,
        **JOB_SCHEDULER_OPTIONS,
    ).remote(config)
