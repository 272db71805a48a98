"""The job scheduler: submits Pulse's jobs to Ray's job server on schedule, one ``tick(now)`` at a time.

``JobScheduler`` is the plain core (no Ray): it takes a store of schedules and runs (``ScheduleStore``,
in production ``storage.schedules.ScheduleStore`` on PostgreSQL), a ``Submitter`` (in production Ray's
``JobSubmissionClient``, ``actors.job_scheduler_actor``) and a clock, and keeps no state of its own: a fresh
object (a restarted actor) carries on from the database. A tick:

1. reconciles the live runs (``pending``/``running``) with the job server: a job it knows and that is not
   over makes the run ``running``; ``SUCCEEDED``/``FAILED``/``STOPPED`` end it with the job's message; a
   job it does not know ``lost_after_s`` after the run was recorded (the scheduler stopped before
   submitting, or the cluster restarted and forgot it) ends it ``failed``, saying so;
2. starts what is due. Timed schedules run every ``every_s`` seconds (anchored: a late tick does not
   drift the next runs) or daily at ``daily_at`` (UTC); `pulse schedules run-now` (``run_requested_at``)
   runs one at the next tick, even paused, without moving its timing. A paused schedule's due times
   pass without a run, so resuming it does not fire a catch-up run at once.

"Never two copies of one job": before submitting, the core asks the job server for a live job of the same
kind (``Submitter.list_live``: also one started by `pulse submit` or by hand), then records the run
``pending`` in the database, whose partial unique index refuses a second live run of the schedule (a
second scheduler, or a restarted one, gets nothing back and skips). Only then is the job submitted, under
the submission id already recorded, so a crash between the two is healed by step 1. A timed start that
finds a live copy is recorded ``skipped`` with the reason, and waits for its next due time.

Collection: the ``collect`` schedule is a check every ``every_s`` seconds; it submits ONE collect job when
any source is due (the collect job itself fetches only the due sources, each on its own interval), never
one job per source: one job plans every due host together (per-host politeness holds only within one
job), and each job costs a driver process and a Ray Data pipeline start (seconds, and memory) that a
2-CPU machine cannot pay per source. No source due: no job and no run row, only the next check time.

Re-embedding after a model activation (``on_event = "model_activation"``): activating an entry
(`pulse models activate`, ``cluster.top.activation``) already re-embeds everything for it in a detached
actor that Ray restarts and `pulse up` resumes, then switches search to it; its last pass leaves documents
that arrived meanwhile to "the next incremental embed". The scheduler runs that embed: when an index's
active entry changed since the last one handled (``event_mark``: entry id and activation time) and
documents lack its vector, it submits one ``embed --model <id>`` job. It does not re-embed for an entry
still being activated (that would run the same work twice beside the activation actor). A live embed job
defers it to a later tick (nothing is recorded meanwhile); run-now embeds every active entry with pending
documents.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol

from cluster.ground.job_specs import submission_id
from storage.schedules import ActiveEntry, RunRow, ScheduleRow, ScheduleSpec

logger = logging.getLogger(__name__)

#: The event of the schedule that re-embeds after a model entry became active.
EVENT_MODEL_ACTIVATION = "model_activation"
#: Events a schedule may name.
EVENTS: tuple[str, ...] = (EVENT_MODEL_ACTIVATION,)
#: Job server states of a job that is not over (Ray's ``JobStatus`` values).
LIVE_JOB_STATES = ("PENDING", "RUNNING")
#: Run state for each final job server state.
FINAL_JOB_STATES = {"SUCCEEDED": "succeeded", "FAILED": "failed", "STOPPED": "stopped"}


@dataclass(frozen=True)
class JobState:
    """What the job server says of one submission: Ray's status name and its message."""

    status: str
    message: str | None = None


class Submitter(Protocol):
    """The job server, as the scheduler uses it."""

    def submit(self, kind: str, args: Sequence[str], submission_id: str) -> str:
        """Submit ``python -m jobs.<kind> ARGS`` under ``submission_id``; returns the id."""
        ...

    def status(self, submission_id: str) -> JobState | None:
        """The job's state; None when the job server does not know the id."""
        ...

    def list_live(self, kind: str) -> list[str]:
        """Submission ids of the jobs of ``kind`` that are pending or running."""
        ...


class ScheduleStore(Protocol):
    """Schedules and runs (``storage.schedules.ScheduleStore``); every time is the core's clock."""

    def seed(
        self, specs: Sequence[ScheduleSpec], first_runs: Sequence[datetime | None], now: datetime
    ) -> None: ...

    def schedules(self) -> list[ScheduleRow]: ...

    def set_paused(self, name: str, paused: bool, now: datetime) -> ScheduleRow: ...

    def request_run(self, name: str, now: datetime) -> ScheduleRow: ...

    def set_next(
        self,
        name: str,
        next_run_at: datetime | None,
        now: datetime,
        *,
        clear_request: bool = False,
        event_mark: str | None = None,
    ) -> None: ...

    def start_run(
        self, schedule: str, kind: str, submission_id: str, reason: str, now: datetime
    ) -> RunRow | None: ...

    def mark_running(self, run_id: int, now: datetime) -> None: ...

    def finish_run(self, run_id: int, state: str, message: str | None, now: datetime) -> None: ...

    def record_skipped(self, schedule: str, kind: str, reason: str, message: str, now: datetime) -> None: ...

    def live_runs(self) -> list[RunRow]: ...

    def sources_due(self) -> bool: ...

    def active_entries(self) -> list[ActiveEntry]: ...


@dataclass(frozen=True)
class TickReport:
    """What one tick did."""

    at: datetime
    started: tuple[str, ...] = ()  # "<schedule>: <submission id>"
    skipped: tuple[str, ...] = ()  # "<schedule>: <why>"
    finished: tuple[str, ...] = ()  # "<schedule>: <state>"
    errors: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.started or self.skipped or self.finished or self.errors)

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "started": list(self.started),
            "skipped": list(self.skipped),
            "finished": list(self.finished),
            "errors": list(self.errors),
        }


@dataclass
class _Tally:
    started: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def utc_now() -> datetime:
    return datetime.now(UTC)


def parse_daily(value: str) -> time:
    """``"HH:MM"`` (UTC) as a time; a clear error otherwise."""
    try:
        hours, minutes = (int(part) for part in value.strip().split(":"))
        return time(hours, minutes)
    except ValueError:
        raise ValueError(f"daily time {value!r}: write it as HH:MM (UTC, 24-hour), e.g. 03:00") from None


def next_interval(previous: datetime | None, every_s: int, now: datetime) -> datetime:
    """The first ``previous + k * every_s`` after ``now`` (``now + every_s`` without a previous time)."""
    step = timedelta(seconds=every_s)
    if previous is None or previous > now:
        return now + step if previous is None else previous
    steps = math.floor((now - previous) / step) + 1
    return previous + steps * step


def next_daily(at: time, now: datetime) -> datetime:
    """The first ``at`` (UTC) strictly after ``now``."""
    now_utc = now.astimezone(UTC)
    candidate = now_utc.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    return candidate if candidate > now_utc else candidate + timedelta(days=1)


def first_run(spec: ScheduleSpec, now: datetime) -> datetime | None:
    """When a new schedule first runs: an interval at once (collect checks for due sources straight
    away), a daily one at its next time, an event schedule never by time."""
    if spec.every_s is not None:
        return now
    if spec.daily_at is not None:
        return next_daily(spec.daily_at, now)
    return None


def following_run(schedule: ScheduleRow, now: datetime) -> datetime | None:
    """The next due time of a timed schedule after a due time at or before ``now``."""
    if schedule.every_s is not None:
        return next_interval(schedule.next_run_at, schedule.every_s, now)
    if schedule.daily_at is not None:
        return next_daily(schedule.daily_at, now)
    return None


def describe_timing(schedule: ScheduleSpec) -> str:
    if schedule.every_s is not None:
        return f"every {schedule.every_s} s"
    if schedule.daily_at is not None:
        return f"daily at {schedule.daily_at.strftime('%H:%M')} UTC"
    return f"on {schedule.on_event}"


def _mark_token(entry: ActiveEntry) -> str:
    stamp = entry.activated_at.isoformat() if entry.activated_at else "-"
    return f"{entry.model_id}@{stamp}"


class JobScheduler:
    def __init__(
        self,
        store: ScheduleStore,
        submitter: Submitter,
        *,
        clock: Callable[[], datetime] = utc_now,
        lost_after_s: float = 120.0,
    ) -> None:
        self._store = store
        self._submitter = submitter
        self._clock = clock
        self._lost_after = timedelta(seconds=lost_after_s)

    # ----------------------------------------------------------------------------------- operations
    def seed(self, specs: Sequence[ScheduleSpec]) -> None:
        """Create the schedules (or bring their job and timing in line); paused states and history kept."""
        for spec in specs:
            if spec.on_event is not None and spec.on_event not in EVENTS:
                raise ValueError(f"schedule {spec.name!r}: unknown event {spec.on_event!r}; one of {EVENTS}")
        now = self._clock()
        self._store.seed(specs, [first_run(s, now) for s in specs], now)

    def pause(self, name: str) -> ScheduleRow:
        return self._store.set_paused(name, True, self._clock())

    def resume(self, name: str) -> ScheduleRow:
        return self._store.set_paused(name, False, self._clock())

    def run_now(self, name: str) -> ScheduleRow:
        return self._store.request_run(name, self._clock())

    # ----------------------------------------------------------------------------------------- tick
    def tick(self, now: datetime | None = None) -> TickReport:
        """Reconcile live runs with the job server, then start what is due at ``now`` (default: the clock)."""
        now = now or self._clock()
        tally = _Tally()
        live: dict[str, RunRow] = {}
        try:
            live = self._reconcile(now, tally)
        except Exception as exc:  # e.g. PostgreSQL down: nothing else can be done this tick
            logger.exception("job scheduler: reading live runs failed")
            tally.errors.append(f"reconcile: {type(exc).__name__}: {exc}")
            return self._report(now, tally)
        try:
            schedules = self._store.schedules()
        except Exception as exc:
            logger.exception("job scheduler: reading schedules failed")
            tally.errors.append(f"schedules: {type(exc).__name__}: {exc}")
            schedules = []
        for schedule in schedules:
            try:
                if schedule.on_event is not None:
                    self._event(schedule, now, live, tally)
                else:
                    self._timed(schedule, now, live, tally)
            except Exception as exc:  # one schedule failing must not stop the others; retried next tick
                logger.exception("job scheduler: schedule %s failed", schedule.name)
                tally.errors.append(f"{schedule.name}: {type(exc).__name__}: {exc}")
        return self._report(now, tally)

    def _report(self, now: datetime, tally: _Tally) -> TickReport:
        report = TickReport(
            at=now,
            started=tuple(tally.started),
            skipped=tuple(tally.skipped),
            finished=tuple(tally.finished),
            errors=tuple(tally.errors),
        )
        if report.changed:
            logger.info("job scheduler tick: %s", report.as_json())
        return report

    # ------------------------------------------------------------------------------------ reconcile
    def _reconcile(self, now: datetime, tally: _Tally) -> dict[str, RunRow]:
        """Bring live runs in line with the job server; the runs still live, by schedule."""
        live: dict[str, RunRow] = {}
        for run in self._store.live_runs():
            live[run.schedule] = run
            if run.submission_id is None:  # not written by this core; leave it to be seen
                continue
            try:
                state = self._submitter.status(run.submission_id)
            except Exception as exc:  # the job server does not answer: the run stays as it is
                tally.errors.append(f"{run.schedule}: job server: {type(exc).__name__}: {exc}")
                continue
            if state is None:
                if now - run.created_at >= self._lost_after:
                    self._store.finish_run(
                        run.id,
                        "failed",
                        f"lost: the job server does not know {run.submission_id} (the scheduler stopped "
                        "before submitting it, or the Ray cluster restarted); the schedule runs again "
                        "when next due",
                        now,
                    )
                    tally.finished.append(f"{run.schedule}: failed (lost)")
                    del live[run.schedule]
                continue
            final = FINAL_JOB_STATES.get(state.status)
            if final is not None:
                self._store.finish_run(run.id, final, state.message, now)
                tally.finished.append(f"{run.schedule}: {final}")
                del live[run.schedule]
            elif run.state == "pending":
                self._store.mark_running(run.id, now)
        return live

    # ---------------------------------------------------------------------------------------- timed
    def _timed(self, schedule: ScheduleRow, now: datetime, live: dict[str, RunRow], tally: _Tally) -> None:
        if not schedule.enabled:
            return
        requested = schedule.run_requested_at is not None
        if schedule.next_run_at is None:
            schedule_due = False
            next_at = first_run(schedule, now)
        else:
            schedule_due = schedule.next_run_at <= now
            next_at = following_run(schedule, now) if schedule_due else schedule.next_run_at
        if not requested and (not schedule_due or schedule.paused):
            if next_at != schedule.next_run_at:  # a paused schedule's due time passes without a run
                self._store.set_next(schedule.name, next_at, now)
            return
        if requested:
            reason = "run-now"
        elif schedule.kind == "collect" and not self._store.sources_due():
            self._store.set_next(schedule.name, next_at, now)  # nothing to collect: no job, no run
            return
        else:
            reason = describe_timing(schedule)
        self._start(schedule, schedule.args, reason, now, live, tally, record_skip=True)
        self._store.set_next(schedule.name, next_at, now, clear_request=requested)

    # ---------------------------------------------------------------------------------------- event
    def _event(self, schedule: ScheduleRow, now: datetime, live: dict[str, RunRow], tally: _Tally) -> None:
        if not schedule.enabled or schedule.on_event != EVENT_MODEL_ACTIVATION:
            return
        requested = schedule.run_requested_at is not None
        if schedule.paused and not requested:
            return
        entries = self._store.active_entries()
        handled = set((schedule.event_mark or "").split(",")) - {""}
        done = {_mark_token(e) for e in entries} & handled
        attempted = False
        for entry in entries:
            token = _mark_token(entry)
            if token in done and not requested:
                continue
            if entry.pending == 0:
                done.add(token)  # nothing lacks its vector: the activation embedded everything
                continue
            if attempted:
                continue  # one live run per schedule: this entry waits for a later tick
            attempted = True
            reason = "run-now" if requested else f"entry {entry.model_id} activated"
            args = ("--model", str(entry.model_id), "--no-progress", *schedule.args)
            if self._start(schedule, args, reason, now, live, tally, record_skip=requested):
                done.add(token)
        if requested and not attempted:
            message = "nothing to embed: every active entry has a vector for every document"
            tally.skipped.append(f"{schedule.name}: {message}")
            self._store.record_skipped(schedule.name, schedule.kind, "run-now", message, now)
        mark = ",".join(sorted(done))
        if requested or mark != (schedule.event_mark or ""):
            self._store.set_next(schedule.name, None, now, clear_request=requested, event_mark=mark)

    # ---------------------------------------------------------------------------------------- start
    def _start(
        self,
        schedule: ScheduleRow,
        args: Sequence[str],
        reason: str,
        now: datetime,
        live: dict[str, RunRow],
        tally: _Tally,
        *,
        record_skip: bool,
    ) -> bool:
        """Submit one run of the schedule unless a copy is live; whether it was submitted."""
        why: str | None = None
        running = live.get(schedule.name)
        if running is not None:
            why = f"run {running.id} of this schedule ({running.submission_id}) is still {running.state}"
        else:
            jobs = self._submitter.list_live(schedule.kind)
            if jobs:
                why = f"a {schedule.kind} job is live on the cluster: {', '.join(jobs)}"
        sid = submission_id(schedule.kind, key=f"{schedule.name}@{now.isoformat()}")
        run = None
        if why is None:
            run = self._store.start_run(schedule.name, schedule.kind, sid, reason, now)
            if run is None:
                why = "the database holds a live run of this schedule (started by another scheduler)"
        if why is not None or run is None:
            message = why or "not started"
            tally.skipped.append(f"{schedule.name}: {message}")
            if record_skip:
                self._store.record_skipped(schedule.name, schedule.kind, reason, message, now)
            return False
        try:
            self._submitter.submit(schedule.kind, args, sid)
        except Exception as exc:
            logger.exception("job scheduler: submitting %s failed", sid)
            self._store.finish_run(run.id, "failed", f"submitting failed: {type(exc).__name__}: {exc}", now)
            tally.errors.append(f"{schedule.name}: submit: {type(exc).__name__}: {exc}")
            return False
        self._store.mark_running(run.id, now)
        live[schedule.name] = run
        tally.started.append(f"{schedule.name}: {sid}")
        return True
