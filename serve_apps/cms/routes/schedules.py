"""The job scheduler's schedules and their runs (staff read them; admins pause, resume and run them).

The same rows as ``pulse schedules``, read from PostgreSQL through ``storage.schedules`` on the request's
session, so they answer while the scheduler actor is down. ``run-now`` records a request the scheduler
honours at its next tick (even for a paused schedule: never two live runs of one schedule), then wakes
the scheduler actor when it runs, so the job is submitted at once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Annotated

import ray
from fastapi import APIRouter, Path, Query, Request
from sqlalchemy.orm import Session

from actors.job_scheduler import describe_timing
from cluster.ground.constants import JOB_SCHEDULER_NAME
from serve_apps.cms import schemas as s
from serve_apps.cms.deps import Caller, Cms
from serve_apps.errors import ApiError, NotFound, error_responses
from storage.cms_actions import AuditAction
from storage.errors import ScheduleDisabled, ScheduleNotFound
from storage.schedule_models import RUN_STATES
from storage.schedules import RunRow, ScheduleRepository, ScheduleRow

logger = logging.getLogger(__name__)
router = APIRouter()

READ, MANAGE = "schedule.read", "schedule.manage"
#: A schedule's name (the CHECK constraint of ``schedules.name``).
Name = Annotated[str, Path(pattern="^[a-z0-9_-]{1,64}$", description="The schedule's name, e.g. collect")]


class ScheduleConflict(ApiError):
    status_code = 409
    code = "schedule_disabled"


def _missing(name: str) -> NotFound:
    return NotFound(f"no schedule named {name!r}; GET /schedules lists them", code="schedule_not_found")


def _schedule_out(row: ScheduleRow, last: RunRow | None) -> s.ScheduleOut:
    return s.ScheduleOut(
        name=row.name,
        kind=row.kind,
        args=list(row.args),
        timing=describe_timing(row),
        enabled=row.enabled,
        paused=row.paused,
        note=row.note,
        next_run_at=row.next_run_at,
        run_requested_at=row.run_requested_at,
        last_run=None if last is None else s.RunOut.model_validate(last),
    )


def _overview(repo: ScheduleRepository) -> list[s.ScheduleOut]:
    last = repo.last_runs()
    return [_schedule_out(row, last.get(row.name)) for row in repo.all()]


@router.get("/schedules", response_model=list[s.ScheduleOut], summary="The job schedules (admins, editors)")
async def schedules(request: Request, principal: Caller, cms: Cms) -> list[s.ScheduleOut]:
    async with cms.read(request, principal, READ, AuditAction.SCHEDULE_LIST, "schedules") as session:
        return await session.run_sync(lambda db: _overview(ScheduleRepository(db)))


@router.get(
    "/schedule-runs",
    response_model=list[s.RunOut],
    summary="Recent runs of scheduled jobs, newest first (admins, editors)",
    responses=error_responses(404),
)
async def schedule_runs(
    request: Request,
    principal: Caller,
    cms: Cms,
    schedule: Annotated[str | None, Query(pattern="^[a-z0-9_-]{1,64}$")] = None,
    state: Annotated[str | None, Query(pattern="^(" + "|".join(RUN_STATES) + ")$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> list[s.RunOut]:
    target = f"schedule:{schedule}" if schedule else "schedules"
    async with cms.read(request, principal, READ, AuditAction.SCHEDULE_RUNS, target) as session:
        try:
            rows = await session.run_sync(
                lambda db: ScheduleRepository(db).runs(schedule, state=state, limit=limit)
            )
        except ScheduleNotFound as exc:
            raise _missing(exc.name) from exc
    return [s.RunOut.model_validate(r) for r in rows]


async def _manage(
    request: Request, principal: Caller, cms: Cms, name: str, action: AuditAction, paused: bool | None
) -> s.ScheduleOut:
    async with cms.write(request, principal, action, f"schedule:{name}", permission=MANAGE) as w:

        def change(db: Session) -> s.ScheduleOut:
            repo = ScheduleRepository(db)
            now = datetime.now(UTC)
            before = repo.get(name)
            if paused is None:
                after = repo.request_run(name, now=now)
            else:
                after = repo.set_paused(name, paused, now=now)
            w.before = {"paused": before.paused, "run_requested_at": _iso(before.run_requested_at)}
            w.after = {"paused": after.paused, "run_requested_at": _iso(after.run_requested_at)}
            last = repo.runs(name, limit=1)
            return _schedule_out(after, last[0] if last else None)

        try:
            return await w.session.run_sync(change)
        except ScheduleNotFound as exc:
            raise _missing(exc.name) from exc
        except ScheduleDisabled as exc:
            raise ScheduleConflict(str(exc)) from exc


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@router.post(
    "/schedules/{name}/pause",
    response_model=s.ScheduleOut,
    summary="Stop running a schedule until resumed (admin)",
    responses=error_responses(404),
)
async def pause(request: Request, name: Name, principal: Caller, cms: Cms) -> s.ScheduleOut:
    return await _manage(request, principal, cms, name, AuditAction.SCHEDULE_PAUSE, paused=True)


@router.post(
    "/schedules/{name}/resume",
    response_model=s.ScheduleOut,
    summary="Run a paused schedule again at its due times (admin)",
    responses=error_responses(404),
)
async def resume(request: Request, name: Name, principal: Caller, cms: Cms) -> s.ScheduleOut:
    return await _manage(request, principal, cms, name, AuditAction.SCHEDULE_RESUME, paused=False)


@router.post(
    "/schedules/{name}/run-now",
    response_model=s.ScheduleOut,
    status_code=202,
    summary="Run a schedule at once, even paused; never two live runs of one schedule (admin)",
    responses=error_responses(404, 409),
)
async def run_now(request: Request, name: Name, principal: Caller, cms: Cms) -> s.ScheduleOut:
    out = await _manage(request, principal, cms, name, AuditAction.SCHEDULE_RUN_NOW, paused=None)
    await _wake_scheduler(cms.args.namespace)
    return out


async def _wake_scheduler(namespace: str) -> None:
    """Make the scheduler tick now (else it picks the request up within its tick, 10 s by default)."""
    try:
        actor = await asyncio.to_thread(ray.get_actor, JOB_SCHEDULER_NAME, namespace=namespace)
        await asyncio.wait_for(actor.poke.remote(), timeout=5)
    except Exception as exc:  # the request is recorded: the next tick runs it
        logger.info("could not wake the job scheduler (%s): it runs the request at its next tick", exc)
