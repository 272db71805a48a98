"""`pulse schedules list|pause|resume|run-now|runs`: the job scheduler's schedules and their runs.

Everything goes through PostgreSQL, so it works while the scheduler actor is down: `pause` and `resume`
set the schedule's flag, `run-now` records a request the scheduler honours at its next tick (even for a
paused schedule), and pokes the actor when a Ray cluster with it runs, so it ticks at once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click
import ray
from rich.table import Table

from actors.job_scheduler import describe_timing
from cluster.ground.constants import JOB_SCHEDULER_NAME
from cluster.top.commands.env import CommandEnv, pass_env
from cluster.top.entry import InOrderGroup
from cluster.top.targets import choose_ray
from storage.database import make_engine, make_session_factory, session_scope
from storage.schedules import RunRow, ScheduleRepository, ScheduleRow

logger = logging.getLogger(__name__)


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value else "-"


def schedule_dict(row: ScheduleRow, last: RunRow | None) -> dict[str, Any]:
    return {
        "name": row.name,
        "kind": row.kind,
        "args": list(row.args),
        "timing": describe_timing(row),
        "enabled": row.enabled,
        "paused": row.paused,
        "note": row.note,
        "next_run_at": _when(row.next_run_at) if row.next_run_at else None,
        "run_requested_at": _when(row.run_requested_at) if row.run_requested_at else None,
        "last_run": run_dict(last) if last else None,
    }


def run_dict(run: RunRow) -> dict[str, Any]:
    return {
        "id": run.id,
        "schedule": run.schedule,
        "kind": run.kind,
        "submission_id": run.submission_id,
        "state": run.state,
        "reason": run.reason,
        "message": run.message,
        "created_at": _when(run.created_at),
        "started_at": _when(run.started_at) if run.started_at else None,
        "finished_at": _when(run.finished_at) if run.finished_at else None,
    }


@contextmanager
def _repository(env: CommandEnv) -> Iterator[ScheduleRepository]:
    """The schedule repository on the command's database, committed at the end."""
    engine = make_engine(env.database().url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            yield ScheduleRepository(session)
    finally:
        engine.dispose()


def poke_scheduler(env: CommandEnv) -> str:
    """Wake the scheduler actor if a Ray cluster with it runs (never starts a Ray); what happened."""
    target = choose_ray(env.settings)
    if target.address is None:
        return "no Ray cluster runs: the scheduler runs it once `pulse up` starts it"
    try:
        target.join(env.settings)
        try:
            actor = ray.get_actor(JOB_SCHEDULER_NAME, namespace=env.settings.ray.namespace)
            ray.get(actor.poke.remote(), timeout=30)
        finally:
            ray.shutdown()  # type: ignore[no-untyped-call]
    except ValueError:
        return "the scheduler actor is not running: it runs it once started (`pulse up`)"
    except Exception as exc:  # the request is recorded either way
        logger.info("poking the job scheduler failed: %s", exc)
        return f"the scheduler could not be reached ({type(exc).__name__}); it runs it at its next tick"
    return "the scheduler was woken and submits it now"


@click.group("schedules", cls=InOrderGroup, short_help="scheduled jobs: list, pause, resume, run-now, runs")
def schedules() -> None:
    """The job scheduler's schedules (collect, nightly re-cluster, embed after a model activation,
    backup) and their runs, recorded in PostgreSQL."""


@schedules.command("list", short_help="the schedules, their timing and last run")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@pass_env
def list_schedules(env: CommandEnv, *, as_json: bool) -> int:
    """The schedules: kind, timing, paused, next run and the last run's state."""
    with _repository(env) as repo:
        rows = repo.all()
        last = repo.last_runs()
    if as_json:
        env.console.print_json(json.dumps([schedule_dict(r, last.get(r.name)) for r in rows]))
        return 0
    table = Table("name", "kind", "every / at", "state", "next run", "last run")
    for row in rows:
        state = "disabled" if not row.enabled else ("paused" if row.paused else "active")
        run = last.get(row.name)
        table.add_row(
            row.name,
            row.kind,
            describe_timing(row),
            state if row.enabled else f"disabled: {row.note or ''}",
            "run-now requested" if row.run_requested_at else _when(row.next_run_at),
            f"{run.state} {_when(run.finished_at or run.started_at or run.created_at)}" if run else "never",
        )
    env.console.print(table)
    if not rows:
        env.console.print("no schedules yet: `pulse up` starts the scheduler, which creates them")
    return 0


@schedules.command("pause", short_help="stop running a schedule until resumed")
@click.argument("name")
@pass_env
def pause(env: CommandEnv, *, name: str) -> int:
    """Pause a schedule: its due times pass without a run (a live run goes on); `run-now` still runs it."""
    with _repository(env) as repo:
        repo.set_paused(name, True, now=datetime.now(UTC))
    env.console.print(f"schedule {name} paused; `pulse schedules resume {name}` resumes it")
    return 0


@schedules.command("resume", short_help="run a paused schedule again at its due times")
@click.argument("name")
@pass_env
def resume(env: CommandEnv, *, name: str) -> int:
    """Resume a paused schedule from its next due time (no catch-up run for the times it missed)."""
    with _repository(env) as repo:
        row = repo.set_paused(name, False, now=datetime.now(UTC))
    env.console.print(f"schedule {name} resumed; next run {_when(row.next_run_at)}")
    return 0


@schedules.command("run-now", short_help="run a schedule at once (even paused)")
@click.argument("name")
@pass_env
def run_now(env: CommandEnv, *, name: str) -> int:
    """Ask the scheduler to run NAME at once, keeping its timing; a run already live makes it a skipped
    run (never two copies). `pulse schedules runs NAME` shows the outcome."""
    with _repository(env) as repo:
        repo.request_run(name, now=datetime.now(UTC))
    env.console.print(f"run of {name} requested; {poke_scheduler(env)}")
    return 0


@schedules.command("runs", short_help="recent runs (of one schedule or all)")
@click.argument("name", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="runs shown")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@pass_env
def runs(env: CommandEnv, *, name: str | None, limit: int, as_json: bool) -> int:
    """Recent runs, newest first: state, reason, the job's submission id (`pulse jobs logs ID`), message."""
    with _repository(env) as repo:
        rows = repo.runs(name, limit=limit)
    if as_json:
        env.console.print_json(json.dumps([run_dict(r) for r in rows]))
        return 0
    table = Table("id", "schedule", "state", "reason", "submission id", "started", "finished", "message")
    for run in rows:
        table.add_row(
            str(run.id),
            run.schedule,
            run.state,
            run.reason,
            run.submission_id or "-",
            _when(run.started_at or run.created_at),
            _when(run.finished_at),
            (run.message or "")[:120],
        )
    env.console.print(table)
    return 0
