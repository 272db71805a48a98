"""Starting and stopping the job scheduler: the named, detached actor that submits collect, re-cluster,
embed and backup jobs on schedule (``actors.job_scheduler_actor``), configured here from the settings.

``pulse up`` starts it once the database is migrated, when the Ray cluster has a job server (the dashboard,
``PULSE_RAY__INCLUDE_DASHBOARD``; for a cluster joined with ``PULSE_RAY__ADDRESS``, its URL in
``PULSE_JOBS__ADDRESS``); ``pulse down`` kills it. Starting is get-or-create: one per namespace.

The default schedules (``default_schedules``) come from ``PULSE_SCHEDULES__*``:

- ``collect``: every ``collect_every_s`` seconds, one ``collect --embed`` job if any source is due;
- ``recluster``: daily at ``recluster_at`` (UTC);
- ``embed``: on a model activation, ``embed --model <entry>`` for what the activation left unembedded;
- ``backup``: daily at ``backup_at``, ``backup DEST --keep N``; disabled unless ``backup_dest`` is set.

A schedule the settings turn off is kept, disabled, with a note saying which setting: its history and
paused state stay, and turning the setting back on enables it again.
"""

from __future__ import annotations

import logging
import os
from datetime import time

from actors.job_scheduler import EVENT_MODEL_ACTIVATION, parse_daily
from actors.job_scheduler_actor import JobSchedulerConfig, get_or_create_job_scheduler
from cluster.ground.job_specs import job_env_vars
from cluster.ground.settings import Settings
from storage.schedules import ScheduleSpec
from storage.vector_files import absolute_storage_uri

logger = logging.getLogger(__name__)

#: Timing kept by a schedule that its setting turns off (the database needs one).
_OFF_EVERY_S = 300
_OFF_DAILY = time(3, 0)


def default_schedules(settings: Settings) -> tuple[ScheduleSpec, ...]:
    """The schedules the settings define (disabled ones included, with the reason)."""
    s = settings.schedules
    collect_on = s.collect_every_s > 0
    recluster_on = bool(s.recluster_at and s.recluster_at.strip())
    backup_on = bool(s.backup_dest and s.backup_dest.strip())
    return (
        ScheduleSpec(
            name="collect",
            kind="collect",
            args=("--embed", "--no-progress"),
            every_s=s.collect_every_s if collect_on else _OFF_EVERY_S,
            enabled=collect_on,
            note=None if collect_on else "PULSE_SCHEDULES__COLLECT_EVERY_S is 0",
        ),
        ScheduleSpec(
            name="recluster",
            kind="recluster",
            daily_at=parse_daily(s.recluster_at or "") if recluster_on else _OFF_DAILY,
            enabled=recluster_on,
            note=None if recluster_on else "PULSE_SCHEDULES__RECLUSTER_AT is empty",
        ),
        ScheduleSpec(
            name="embed",
            kind="embed",
            on_event=EVENT_MODEL_ACTIVATION,
            enabled=s.embed_on_activation,
            note=None if s.embed_on_activation else "PULSE_SCHEDULES__EMBED_ON_ACTIVATION is false",
        ),
        ScheduleSpec(
            name="backup",
            kind="backup",
            args=(s.backup_dest.strip(), "--keep", str(s.backup_keep)) if s.backup_dest and backup_on else (),
            daily_at=parse_daily(s.backup_at),
            enabled=backup_on,
            note=None if backup_on else "set PULSE_SCHEDULES__BACKUP_DEST to a folder or URI to enable it",
        ),
    )


def job_server_url(settings: Settings) -> str | None:
    """The job server the scheduler submits to: ``PULSE_JOBS__ADDRESS``, else the local node's dashboard;
    None when there is none (a joined cluster without ``PULSE_JOBS__ADDRESS``, or no dashboard)."""
    if settings.jobs.address:
        return settings.jobs.address
    if settings.ray.include_dashboard and not settings.ray.address:
        return f"http://127.0.0.1:{settings.ray.dashboard_port}"
    return None


def scheduler_off_reason(settings: Settings) -> str | None:
    """Why `pulse up` does not start the scheduler, or None when it does."""
    if not settings.schedules.enabled:
        return "PULSE_SCHEDULES__ENABLED is false"
    if job_server_url(settings) is None:
        if settings.ray.address:
            return (
                "the cluster joined with PULSE_RAY__ADDRESS has no job server URL: set PULSE_JOBS__ADDRESS "
                "to its dashboard (e.g. http://head:8265)"
            )
        return "the Ray dashboard (the job server) is off: set PULSE_RAY__INCLUDE_DASHBOARD=true"
    return None


def jobs_environment(settings: Settings, database_url: str, environ: dict[str, str]) -> dict[str, str]:
    """The ``PULSE_*`` environment of the scheduled jobs: this process's, with the database this process
    chose, the storage URI made absolute and the namespace."""
    env = {k: v for k, v in job_env_vars(environ).items() if k.upper() != "PULSE_DATABASE__URL"}
    env["PULSE_DATABASE__URL"] = database_url
    env["PULSE_STORAGE__URI"] = absolute_storage_uri(settings.storage.uri)
    env["PULSE_RAY__NAMESPACE"] = settings.ray.namespace
    return env


def scheduler_config(settings: Settings, database_url: str) -> JobSchedulerConfig:
    url = job_server_url(settings)
    if url is None:
        raise ValueError(scheduler_off_reason(settings) or "no job server")
    return JobSchedulerConfig(
        database_url=database_url,
        job_server_url=url,
        schedules=default_schedules(settings),
        env_vars=jobs_environment(settings, database_url, dict(os.environ)),
        namespace=settings.ray.namespace,
        tick_s=settings.schedules.tick_s,
        lost_after_s=settings.schedules.lost_after_s,
    )


def start_job_scheduler(settings: Settings, database_url: str) -> str:
    """Get or create the scheduler actor (Ray must be initialised); a line saying what happened."""
    off = scheduler_off_reason(settings)
    if off is not None:
        return f"off ({off})"
    config = scheduler_config(settings, database_url)
    get_or_create_job_scheduler(config)
    enabled = [s.name for s in config.schedules if s.enabled]
    return f"running, submitting to {config.job_server_url} ({', '.join(enabled)}; `pulse schedules list`)"
