"""Schedules and their runs: the SQL of the job scheduler (``actors.job_scheduler``).

``ScheduleRepository`` works on a caller-owned session; ``ScheduleStore`` opens one transaction per call
on a session factory and is what the scheduler's core takes (it implements the core's ``ScheduleStore``
protocol). Every time is passed in (the core's clock), never read from the server, so a core driven by a
test clock and the database agree.

"Never two copies": ``start_run`` inserts the ``pending`` row with ``ON CONFLICT DO NOTHING`` against the
partial unique index ``uq_schedule_runs_live`` (one ``pending``/``running`` run per schedule), so a second
scheduler (or a restarted one that lost track) gets ``None`` back instead of a second live run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import distinct_on, insert
from sqlalchemy.orm import Session, sessionmaker

from storage.database import session_scope
from storage.embeddings import EmbeddingRepository
from storage.errors import ScheduleDisabled, ScheduleNotFound
from storage.model_registry import ACTIVE, ModelRegistry
from storage.schedule_models import LIVE_CONDITION, LIVE_STATES, RUN_STATES, Schedule, ScheduleRun
from storage.sources import SourceRepository

__all__ = [
    "LIVE_STATES",
    "RUN_STATES",
    "ActiveEntry",
    "RunRow",
    "ScheduleRepository",
    "ScheduleRow",
    "ScheduleSpec",
    "ScheduleStore",
]

#: Longest run message kept (a job's message may end with its last log lines).
MAX_MESSAGE_CHARS = 4000


@dataclass(frozen=True, kw_only=True)
class ScheduleSpec:
    """A schedule as the settings define it: the job and when it runs (exactly one of the three timings)."""

    name: str
    kind: str
    args: tuple[str, ...] = ()
    every_s: int | None = None
    daily_at: time | None = None  # UTC
    on_event: str | None = None
    enabled: bool = True
    note: str | None = None  # why it is disabled

    def __post_init__(self) -> None:
        timings = sum(x is not None for x in (self.every_s, self.daily_at, self.on_event))
        if timings != 1:
            raise ValueError(f"schedule {self.name!r}: give exactly one of every_s, daily_at, on_event")
        if self.every_s is not None and self.every_s <= 0:
            raise ValueError(f"schedule {self.name!r}: every_s must be positive, not {self.every_s}")

    def timing(self) -> tuple[int | None, time | None, str | None]:
        return self.every_s, self.daily_at, self.on_event


@dataclass(frozen=True, kw_only=True)
class ScheduleRow(ScheduleSpec):
    paused: bool = False
    next_run_at: datetime | None = None
    run_requested_at: datetime | None = None
    event_mark: str | None = None
    updated_at: datetime | None = None

    def spec(self) -> ScheduleSpec:
        return ScheduleSpec(
            name=self.name,
            kind=self.kind,
            args=self.args,
            every_s=self.every_s,
            daily_at=self.daily_at,
            on_event=self.on_event,
            enabled=self.enabled,
            note=self.note,
        )


@dataclass(frozen=True)
class RunRow:
    id: int
    schedule: str
    kind: str
    submission_id: str | None
    state: str
    reason: str
    message: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


@dataclass(frozen=True)
class ActiveEntry:
    """An index's active model entry, when it became active, and how many documents lack its vector."""

    model_id: int
    index_name: str
    activated_at: datetime | None
    pending: int


def _schedule_row(s: Schedule) -> ScheduleRow:
    return ScheduleRow(
        name=s.name,
        kind=s.kind,
        args=tuple(str(a) for a in s.args or ()),
        every_s=s.every_s,
        daily_at=s.daily_at,
        on_event=s.on_event,
        enabled=s.enabled,
        note=s.note,
        paused=s.paused,
        next_run_at=s.next_run_at,
        run_requested_at=s.run_requested_at,
        event_mark=s.event_mark,
        updated_at=s.updated_at,
    )


def _run_row(r: ScheduleRun) -> RunRow:
    return RunRow(
        id=r.id,
        schedule=r.schedule,
        kind=r.kind,
        submission_id=r.submission_id,
        state=r.state,
        reason=r.reason,
        message=r.message,
        created_at=r.created_at,
        started_at=r.started_at,
        finished_at=r.finished_at,
    )


def _clip(message: str | None) -> str | None:
    if message is None or len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 3] + "..."


class ScheduleRepository:
    """SQL of schedules and runs, on a caller-owned session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # ------------------------------------------------------------------------------------- schedules
    def seed(self, spec: ScheduleSpec, *, first_run_at: datetime | None, now: datetime) -> ScheduleRow:
        """Create the schedule, or bring an existing one's job and timing in line with ``spec``.

        What the operator set is kept: ``paused``, a pending run-now, the run history. ``next_run_at`` is
        kept unless the timing changed (then it becomes ``first_run_at``) or it was never set."""
        existing = self.session.execute(
            select(Schedule).where(Schedule.name == spec.name).with_for_update()
        ).scalar_one_or_none()
        if existing is None:
            self.session.execute(
                insert(Schedule)
                .values(
                    name=spec.name,
                    kind=spec.kind,
                    args=list(spec.args),
                    every_s=spec.every_s,
                    daily_at=spec.daily_at,
                    on_event=spec.on_event,
                    enabled=spec.enabled,
                    note=spec.note,
                    next_run_at=first_run_at,
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=[Schedule.name])
            )
            return self.get(spec.name)
        current = _schedule_row(existing).spec()
        if current != spec:
            timing_changed = current.timing() != spec.timing()
            self.session.execute(
                update(Schedule)
                .where(Schedule.name == spec.name)
                .values(
                    kind=spec.kind,
                    args=list(spec.args),
                    every_s=spec.every_s,
                    daily_at=spec.daily_at,
                    on_event=spec.on_event,
                    enabled=spec.enabled,
                    note=spec.note,
                    next_run_at=first_run_at
                    if timing_changed or existing.next_run_at is None
                    else existing.next_run_at,
                    updated_at=now,
                )
            )
        elif existing.next_run_at is None and first_run_at is not None:
            self.set_next(spec.name, next_run_at=first_run_at, now=now)
        return self.get(spec.name)

    def get(self, name: str) -> ScheduleRow:
        found = self.session.execute(
            select(Schedule).where(Schedule.name == name), execution_options={"populate_existing": True}
        ).scalar_one_or_none()
        if found is None:
            raise ScheduleNotFound(name)
        return _schedule_row(found)

    def all(self) -> list[ScheduleRow]:
        stmt = select(Schedule).order_by(Schedule.name)
        rows = self.session.execute(stmt, execution_options={"populate_existing": True}).scalars()
        return [_schedule_row(s) for s in rows]

    def set_paused(self, name: str, paused: bool, *, now: datetime) -> ScheduleRow:
        self.get(name)
        self.session.execute(
            update(Schedule).where(Schedule.name == name).values(paused=paused, updated_at=now)
        )
        return self.get(name)

    def request_run(self, name: str, *, now: datetime) -> ScheduleRow:
        """`run-now`: the scheduler runs it at its next tick (even when paused), keeping its timing."""
        row = self.get(name)
        if not row.enabled:
            raise ScheduleDisabled(name, row.note)
        self.session.execute(
            update(Schedule).where(Schedule.name == name).values(run_requested_at=now, updated_at=now)
        )
        return self.get(name)

    def set_next(
        self,
        name: str,
        *,
        next_run_at: datetime | None,
        now: datetime,
        clear_request: bool = False,
        event_mark: str | None = None,
    ) -> None:
        """Move the schedule's next run; clear a handled run-now; record the last event handled."""
        values: dict[str, Any] = {"next_run_at": next_run_at, "updated_at": now}
        if clear_request:
            values["run_requested_at"] = None
        if event_mark is not None:
            values["event_mark"] = event_mark
        self.session.execute(update(Schedule).where(Schedule.name == name).values(**values))

    # ------------------------------------------------------------------------------------------ runs
    def start_run(
        self, *, schedule: str, kind: str, submission_id: str, reason: str, now: datetime
    ) -> RunRow | None:
        """Record a ``pending`` run, or None when the schedule already has a live one (the unique index)."""
        new_id = self.session.execute(
            insert(ScheduleRun)
            .values(
                schedule=schedule,
                kind=kind,
                submission_id=submission_id,
                state="pending",
                reason=reason,
                created_at=now,
            )
            .on_conflict_do_nothing(
                index_elements=[ScheduleRun.schedule], index_where=sql_text(LIVE_CONDITION)
            )
            .returning(ScheduleRun.id)
        ).scalar_one_or_none()
        return None if new_id is None else self.run(new_id)

    def run(self, run_id: int) -> RunRow:
        found = self.session.execute(
            select(ScheduleRun).where(ScheduleRun.id == run_id), execution_options={"populate_existing": True}
        ).scalar_one()
        return _run_row(found)

    def mark_running(self, run_id: int, *, now: datetime) -> None:
        self.session.execute(
            update(ScheduleRun)
            .where(ScheduleRun.id == run_id, ScheduleRun.state == "pending")
            .values(state="running", started_at=func.coalesce(ScheduleRun.started_at, now))
        )

    def finish_run(self, run_id: int, *, state: str, message: str | None, now: datetime) -> None:
        if state not in RUN_STATES or state in LIVE_STATES:
            raise ValueError(f"a run finishes succeeded, failed, stopped or skipped, not {state!r}")
        self.session.execute(
            update(ScheduleRun)
            .where(ScheduleRun.id == run_id, ScheduleRun.state.in_(LIVE_STATES))
            .values(state=state, message=_clip(message), finished_at=now)
        )

    def record_skipped(self, *, schedule: str, kind: str, reason: str, message: str, now: datetime) -> RunRow:
        new_id = self.session.execute(
            insert(ScheduleRun)
            .values(
                schedule=schedule,
                kind=kind,
                state="skipped",
                reason=reason,
                message=_clip(message),
                created_at=now,
                finished_at=now,
            )
            .returning(ScheduleRun.id)
        ).scalar_one()
        return self.run(new_id)

    def live_runs(self) -> list[RunRow]:
        stmt = select(ScheduleRun).where(ScheduleRun.state.in_(LIVE_STATES)).order_by(ScheduleRun.id)
        rows = self.session.execute(stmt, execution_options={"populate_existing": True}).scalars()
        return [_run_row(r) for r in rows]

    def runs(self, name: str | None = None, *, state: str | None = None, limit: int = 20) -> list[RunRow]:
        """The most recent runs (of one schedule, or of all; in one state, or any), newest first."""
        stmt = select(ScheduleRun).order_by(ScheduleRun.id.desc()).limit(limit)
        if name is not None:
            self.get(name)
            stmt = stmt.where(ScheduleRun.schedule == name)
        if state is not None:
            stmt = stmt.where(ScheduleRun.state == state)
        rows = self.session.execute(stmt, execution_options={"populate_existing": True}).scalars()
        return [_run_row(r) for r in rows]

    def last_runs(self) -> dict[str, RunRow]:
        """Each schedule's most recent run."""
        stmt = (
            select(ScheduleRun)
            .ext(distinct_on(ScheduleRun.schedule))
            .order_by(ScheduleRun.schedule, ScheduleRun.id.desc())
        )
        return {r.schedule: _run_row(r) for r in self.session.execute(stmt).scalars()}

    # ------------------------------------------------------------------------------- what is due
    def sources_due(self) -> bool:
        """Whether an enabled collectable source is due now (the collect job fetches only those)."""
        return SourceRepository(self.session).next_due_in_s() == 0.0

    def active_entries(self) -> list[ActiveEntry]:
        """Each index's active model entry with the count of documents lacking its current vector."""
        registry = ModelRegistry(self.session)
        embeddings = EmbeddingRepository(self.session)
        return [
            ActiveEntry(m.id, m.index_name, m.activated_at, embeddings.count_pending(model_id=m.id))
            for m in registry.all()
            if m.status == ACTIVE
        ]


class ScheduleStore:
    """``ScheduleRepository`` with one transaction per call, on a session factory (the scheduler's store)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    @contextmanager
    def _repo(self) -> Iterator[ScheduleRepository]:
        with session_scope(self._sessions) as session:
            yield ScheduleRepository(session)

    def seed(
        self, specs: Sequence[ScheduleSpec], first_runs: Sequence[datetime | None], now: datetime
    ) -> None:
        with self._repo() as repo:
            for spec, first in zip(specs, first_runs, strict=True):
                repo.seed(spec, first_run_at=first, now=now)

    def schedules(self) -> list[ScheduleRow]:
        with self._repo() as repo:
            return repo.all()

    def get(self, name: str) -> ScheduleRow:
        with self._repo() as repo:
            return repo.get(name)

    def set_paused(self, name: str, paused: bool, now: datetime) -> ScheduleRow:
        with self._repo() as repo:
            return repo.set_paused(name, paused, now=now)

    def request_run(self, name: str, now: datetime) -> ScheduleRow:
        with self._repo() as repo:
            return repo.request_run(name, now=now)

    def set_next(
        self,
        name: str,
        next_run_at: datetime | None,
        now: datetime,
        *,
        clear_request: bool = False,
        event_mark: str | None = None,
    ) -> None:
        with self._repo() as repo:
            repo.set_next(
                name, next_run_at=next_run_at, now=now, clear_request=clear_request, event_mark=event_mark
            )

    def start_run(
        self, schedule: str, kind: str, submission_id: str, reason: str, now: datetime
    ) -> RunRow | None:
        with self._repo() as repo:
            return repo.start_run(
                schedule=schedule, kind=kind, submission_id=submission_id, reason=reason, now=now
            )

    def mark_running(self, run_id: int, now: datetime) -> None:
        with self._repo() as repo:
            repo.mark_running(run_id, now=now)

    def finish_run(self, run_id: int, state: str, message: str | None, now: datetime) -> None:
        with self._repo() as repo:
            repo.finish_run(run_id, state=state, message=message, now=now)

    def record_skipped(self, schedule: str, kind: str, reason: str, message: str, now: datetime) -> None:
        with self._repo() as repo:
            repo.record_skipped(schedule=schedule, kind=kind, reason=reason, message=message, now=now)

    def live_runs(self) -> list[RunRow]:
        with self._repo() as repo:
            return repo.live_runs()

    def runs(self, name: str | None = None, limit: int = 20) -> list[RunRow]:
        with self._repo() as repo:
            return repo.runs(name, limit=limit)

    def sources_due(self) -> bool:
        with self._repo() as repo:
            return repo.sources_due()

    def active_entries(self) -> list[ActiveEntry]:
        with self._repo() as repo:
            return repo.active_entries()
