"""The job scheduler's core (``actors.job_scheduler.JobScheduler``) with a test clock, an in-memory store
that keeps the database's rule (one live run per schedule) and a job server stand-in whose jobs the test
moves from state to state: due and not due, daily times, skips when a copy is live, reconciling, pause and
resume, run-now, the re-embed after an activation, and a restart (a new core over the same store)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta

import pytest

from actors.job_scheduler import (
    EVENT_MODEL_ACTIVATION,
    JobScheduler,
    JobState,
    next_daily,
    next_interval,
    parse_daily,
)
from storage.errors import ScheduleDisabled, ScheduleNotFound
from storage.schedules import ActiveEntry, RunRow, ScheduleRow, ScheduleSpec

T0 = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


class MemoryStore:
    """The ``ScheduleStore`` protocol in memory, with the partial unique index's rule."""

    def __init__(self) -> None:
        self.rows: dict[str, ScheduleRow] = {}
        self.runs: list[RunRow] = []
        self.due_sources = True
        self.entries: list[ActiveEntry] = []

    def seed(
        self, specs: Sequence[ScheduleSpec], first_runs: Sequence[datetime | None], now: datetime
    ) -> None:
        for spec, first in zip(specs, first_runs, strict=True):
            old = self.rows.get(spec.name)
            if old is None:
                self.rows[spec.name] = ScheduleRow(**dataclasses.asdict(spec), next_run_at=first)
            elif old.spec() != spec:
                keep = old.timing() == spec.timing() and old.next_run_at is not None
                self.rows[spec.name] = dataclasses.replace(
                    old, **dataclasses.asdict(spec), next_run_at=old.next_run_at if keep else first
                )

    def schedules(self) -> list[ScheduleRow]:
        return [self.rows[k] for k in sorted(self.rows)]

    def get(self, name: str) -> ScheduleRow:
        if name not in self.rows:
            raise ScheduleNotFound(name)
        return self.rows[name]

    def set_paused(self, name: str, paused: bool, now: datetime) -> ScheduleRow:
        self.rows[name] = dataclasses.replace(self.get(name), paused=paused)
        return self.rows[name]

    def request_run(self, name: str, now: datetime) -> ScheduleRow:
        row = self.get(name)
        if not row.enabled:
            raise ScheduleDisabled(name, row.note)
        self.rows[name] = dataclasses.replace(row, run_requested_at=now)
        return self.rows[name]

    def set_next(
        self,
        name: str,
        next_run_at: datetime | None,
        now: datetime,
        *,
        clear_request: bool = False,
        event_mark: str | None = None,
    ) -> None:
        row = dataclasses.replace(self.get(name), next_run_at=next_run_at)
        if clear_request:
            row = dataclasses.replace(row, run_requested_at=None)
        if event_mark is not None:
            row = dataclasses.replace(row, event_mark=event_mark)
        self.rows[name] = row

    def _put(self, run: RunRow) -> None:
        self.runs = [run if r.id == run.id else r for r in self.runs]

    def _run(self, run_id: int) -> RunRow:
        return next(r for r in self.runs if r.id == run_id)

    def start_run(
        self, schedule: str, kind: str, submission_id: str, reason: str, now: datetime
    ) -> RunRow | None:
        if any(r.schedule == schedule and r.live for r in self.runs):
            return None  # what uq_schedule_runs_live does
        run = RunRow(
            len(self.runs) + 1, schedule, kind, submission_id, "pending", reason, None, now, None, None
        )
        self.runs.append(run)
        return run

    def mark_running(self, run_id: int, now: datetime) -> None:
        run = self._run(run_id)
        if run.state == "pending":
            self._put(dataclasses.replace(run, state="running", started_at=run.started_at or now))

    def finish_run(self, run_id: int, state: str, message: str | None, now: datetime) -> None:
        run = self._run(run_id)
        if run.live:
            self._put(dataclasses.replace(run, state=state, message=message, finished_at=now))

    def record_skipped(self, schedule: str, kind: str, reason: str, message: str, now: datetime) -> None:
        self.runs.append(
            RunRow(len(self.runs) + 1, schedule, kind, None, "skipped", reason, message, now, None, now)
        )

    def live_runs(self) -> list[RunRow]:
        return [r for r in self.runs if r.live]

    def sources_due(self) -> bool:
        return self.due_sources

    def active_entries(self) -> list[ActiveEntry]:
        return list(self.entries)

    def of(self, name: str) -> list[RunRow]:
        return [r for r in self.runs if r.schedule == name]


class JobServer:
    """A job server stand-in: submitted jobs start RUNNING; the test ends them."""

    def __init__(self) -> None:
        self.jobs: dict[str, tuple[str, tuple[str, ...], JobState]] = {}
        self.fail_submit = False
        self.down = False

    def submit(self, kind: str, args: Sequence[str], submission_id: str) -> str:
        if self.fail_submit:
            raise RuntimeError("Request failed with status code 500")
        assert submission_id not in self.jobs, "a submission id is used once"
        self.jobs[submission_id] = (kind, tuple(args), JobState("RUNNING"))
        return submission_id

    def status(self, submission_id: str) -> JobState | None:
        if self.down:
            raise ConnectionError("job server down")
        job = self.jobs.get(submission_id)
        return job[2] if job else None

    def list_live(self, kind: str) -> list[str]:
        return [
            sid for sid, (k, _, s) in self.jobs.items() if k == kind and s.status in ("PENDING", "RUNNING")
        ]

    def end(self, submission_id: str, status: str, message: str = "done") -> None:
        kind, args, _ = self.jobs[submission_id]
        self.jobs[submission_id] = (kind, args, JobState(status, message))

    def of(self, kind: str) -> list[str]:
        return [sid for sid, (k, _, _) in self.jobs.items() if k == kind]


COLLECT = ScheduleSpec(name="collect", kind="collect", args=("--no-progress",), every_s=300)
RECLUSTER = ScheduleSpec(name="recluster", kind="recluster", daily_at=time(3, 0))
EMBED = ScheduleSpec(name="embed", kind="embed", on_event=EVENT_MODEL_ACTIVATION)
BACKUP = ScheduleSpec(name="backup", kind="backup", daily_at=time(2, 0), enabled=False, note="no destination")


@pytest.fixture
def world() -> tuple[Clock, MemoryStore, JobServer, JobScheduler]:
    clock, store, server = Clock(T0), MemoryStore(), JobServer()
    core = JobScheduler(store, server, clock=clock, lost_after_s=60)
    core.seed([COLLECT, RECLUSTER, EMBED, BACKUP])
    return clock, store, server, core


def test_time_helpers() -> None:
    assert parse_daily("03:00") == time(3, 0)
    with pytest.raises(ValueError, match="HH:MM"):
        parse_daily("3am")
    assert next_daily(time(3, 0), T0) == T0.replace(hour=3)
    assert next_daily(time(3, 0), T0.replace(hour=3)) == T0.replace(hour=3) + timedelta(days=1)
    # Anchored intervals: a late tick does not drift the following runs.
    assert next_interval(T0, 300, T0 + timedelta(seconds=301)) == T0 + timedelta(seconds=600)
    assert next_interval(T0, 300, T0 + timedelta(seconds=1000)) == T0 + timedelta(seconds=1200)


def test_interval_runs_when_due_and_not_before(world) -> None:  # type: ignore[no-untyped-def]
    clock, store, server, core = world
    report = core.tick()
    assert len(report.started) == 1 and report.started[0].startswith("collect: pulse-collect-")
    [sid] = server.of("collect")
    assert server.jobs[sid][1] == ("--no-progress",)
    [run] = store.of("collect")
    assert (run.state, run.reason, run.submission_id) == ("running", "every 300 s", sid)
    assert store.rows["collect"].next_run_at == T0 + timedelta(seconds=300)

    clock.advance(100)
    assert core.tick().started == ()  # not due yet
    server.end(sid, "SUCCEEDED", "Job finished successfully.")
    report = core.tick()
    assert report.finished == ("collect: succeeded",)
    assert store.of("collect")[0].message == "Job finished successfully."
    assert report.started == ()

    clock.advance(200)  # due again
    assert len(core.tick().started) == 1
    assert len(server.of("collect")) == 2


def test_collect_submits_nothing_when_no_source_is_due(world) -> None:  # type: ignore[no-untyped-def]
    _clock, store, _server, core = world
    store.due_sources = False
    assert core.tick().started == ()
    assert store.of("collect") == []  # no run row for "nothing due"
    assert store.rows["collect"].next_run_at == T0 + timedelta(seconds=300)


def test_daily_runs_at_its_time(world) -> None:  # type: ignore[no-untyped-def]
    clock, store, _server, core = world
    assert store.rows["recluster"].next_run_at == T0.replace(hour=3)
    store.due_sources = False
    clock.now = T0.replace(hour=2, minute=59)
    assert core.tick().started == ()
    clock.now = T0.replace(hour=3, minute=0, second=5)
    report = core.tick()
    assert [s.split(":")[0] for s in report.started] == ["recluster"]
    assert store.rows["recluster"].next_run_at == T0.replace(hour=3) + timedelta(days=1)
    assert store.of("recluster")[0].reason == "daily at 03:00 UTC"


def test_skipped_when_a_copy_is_live(world) -> None:  # type: ignore[no-untyped-def]
    clock, store, server, core = world
    core.tick()
    [first] = server.of("collect")
    clock.advance(300)  # due again while the first still runs
    report = core.tick()
    assert report.started == ()
    skipped = store.of("collect")[-1]
    assert skipped.state == "skipped" and "still running" in (skipped.message or "")
    assert len(server.of("collect")) == 1

    # A collect job started by hand (`pulse submit collect`) counts too.
    server.end(first, "SUCCEEDED")
    server.jobs["raysubmit_by_hand"] = ("collect", (), JobState("RUNNING"))
    clock.advance(300)
    report = core.tick()
    assert report.started == ()
    assert "raysubmit_by_hand" in (store.of("collect")[-1].message or "")


def test_reconciles_failed_stopped_and_lost_runs(world) -> None:  # type: ignore[no-untyped-def]
    clock, store, server, core = world
    core.tick()
    [sid] = server.of("collect")
    server.end(sid, "FAILED", "Job entrypoint command failed with exit code 1")
    assert core.tick().finished == ("collect: failed",)
    assert "exit code 1" in (store.of("collect")[0].message or "")

    core.run_now("recluster")
    core.tick()
    [rsid] = server.of("recluster")
    server.end(rsid, "STOPPED", "Job was intentionally stopped.")
    core.tick()
    assert store.of("recluster")[0].state == "stopped"

    # A run recorded but never submitted (the scheduler died in between): lost after lost_after_s.
    store.start_run("recluster", "recluster", "pulse-recluster-never", "run-now", clock.now)
    core.tick()
    assert store.of("recluster")[-1].state == "pending"
    clock.advance(61)
    assert "recluster: failed (lost)" in core.tick().finished
    assert "does not know pulse-recluster-never" in (store.of("recluster")[-1].message or "")


def test_a_pending_run_the_job_server_knows_becomes_running(world) -> None:  # type: ignore[no-untyped-def]
    """The scheduler died after submitting but before recording `running`: the next tick heals it."""
    clock, store, server, core = world
    run = store.start_run("recluster", "recluster", "pulse-recluster-x", "run-now", clock.now)
    assert run is not None
    server.jobs["pulse-recluster-x"] = ("recluster", (), JobState("RUNNING"))
    core.tick()
    assert store.of("recluster")[0].state == "running"


def test_job_server_down_leaves_runs_as_they_are(world) -> None:  # type: ignore[no-untyped-def]
    clock, store, server, core = world
    core.tick()
    server.down = True
    clock.advance(3600)
    report = core.tick()
    assert any("job server" in e for e in report.errors)
    assert store.of("collect")[0].state == "running"


def test_submit_failure_is_a_failed_run(world) -> None:  # type: ignore[no-untyped-def]
    clock, store, server, core = world
    server.fail_submit = True
    report = core.tick()
    assert report.started == () and report.errors
    [run] = store.of("collect")
    assert run.state == "failed" and "submitting failed" in (run.message or "")
    server.fail_submit = False
    clock.advance(300)
    assert len(core.tick().started) == 1  # the next due time tries again


def test_pause_resume_and_run_now(world) -> None:  # type: ignore[no-untyped-def]
    clock, store, server, core = world
    core.pause("collect")
    clock.advance(1000)
    assert core.tick().started == ()
    assert store.rows["collect"].next_run_at > clock.now  # the missed times passed without a run
    core.run_now("collect")  # run-now runs even a paused schedule
    report = core.tick()
    assert len(report.started) == 1 and store.of("collect")[0].reason == "run-now"
    assert store.rows["collect"].run_requested_at is None
    core.resume("collect")
    assert core.tick().started == ()  # no catch-up run on resume
    clock.now = store.rows["collect"].next_run_at
    server.end(server.of("collect")[0], "SUCCEEDED")
    assert len(core.tick().started) == 1
    with pytest.raises(ScheduleDisabled, match="no destination"):
        core.run_now("backup")
    with pytest.raises(ScheduleNotFound):
        core.pause("nope")


def test_run_now_while_live_is_recorded_skipped(world) -> None:  # type: ignore[no-untyped-def]
    _clock, store, _server, core = world
    core.tick()
    core.run_now("collect")
    core.tick()
    assert [r.state for r in store.of("collect")] == ["running", "skipped"]
    assert store.rows["collect"].run_requested_at is None


def test_reseeding_keeps_pause_and_follows_new_timing(world) -> None:  # type: ignore[no-untyped-def]
    _clock, store, _server, core = world
    core.pause("recluster")
    core.seed([COLLECT, dataclasses.replace(RECLUSTER, daily_at=time(4, 30)), EMBED, BACKUP])
    row = store.rows["recluster"]
    assert row.paused and row.daily_at == time(4, 30) and row.next_run_at == T0.replace(hour=4, minute=30)
    enabled = dataclasses.replace(BACKUP, args=("/backups", "--keep", "3"), enabled=True, note=None)
    core.seed([COLLECT, RECLUSTER, EMBED, enabled])
    assert store.rows["backup"].enabled and store.rows["backup"].args == ("/backups", "--keep", "3")


def test_disabled_schedules_never_run(world) -> None:  # type: ignore[no-untyped-def]
    clock, _store, server, core = world
    clock.now = T0.replace(hour=2, minute=1)
    core.tick()
    assert server.of("backup") == []


def test_embed_after_an_activation_once(world) -> None:  # type: ignore[no-untyped-def]
    _clock, store, server, core = world
    store.due_sources = False
    activated = T0 - timedelta(minutes=5)
    store.entries = [ActiveEntry(7, "default", activated, pending=0)]
    core.tick()
    assert server.of("embed") == []  # the activation embedded everything
    store.entries = [ActiveEntry(7, "default", activated, pending=12)]
    core.tick()
    assert server.of("embed") == []  # same activation, already handled: not an event
    store.entries = [ActiveEntry(8, "default", T0, pending=40)]  # a new entry became active
    core.tick()
    [sid] = server.of("embed")
    assert server.jobs[sid][1] == ("--model", "8", "--no-progress")
    assert store.of("embed")[0].reason == "entry 8 activated"
    server.end(sid, "SUCCEEDED")
    core.tick()
    assert len(server.of("embed")) == 1  # handled once


def test_embed_event_waits_for_a_live_embed_job(world) -> None:  # type: ignore[no-untyped-def]
    _clock, store, server, core = world
    store.due_sources = False
    server.jobs["raysubmit_embed"] = ("embed", (), JobState("RUNNING"))
    store.entries = [ActiveEntry(8, "default", T0, pending=40)]
    core.tick()
    assert server.of("embed") == ["raysubmit_embed"] and store.of("embed") == []  # deferred, not recorded
    server.end("raysubmit_embed", "SUCCEEDED")
    core.tick()
    assert len(server.of("embed")) == 2


def test_embed_run_now_with_nothing_pending_says_so(world) -> None:  # type: ignore[no-untyped-def]
    _clock, store, _server, core = world
    store.entries = [ActiveEntry(8, "default", T0, pending=0)]
    core.run_now("embed")
    core.tick()
    [run] = store.of("embed")
    assert run.state == "skipped" and "nothing to embed" in (run.message or "")


def test_restart_continues_without_double_running(world) -> None:  # type: ignore[no-untyped-def]
    clock, store, server, core = world
    core.tick()
    [sid] = server.of("collect")
    # The actor restarts: a new core over the same store and job server.
    again = JobScheduler(store, server, clock=clock, lost_after_s=60)
    again.seed([COLLECT, RECLUSTER, EMBED, BACKUP])
    clock.advance(300)
    again.tick()
    assert server.of("collect") == [sid]  # the live run is seen: no second copy
    server.end(sid, "SUCCEEDED")
    again.tick()
    assert store.of("collect")[0].state == "succeeded"
    clock.advance(300)
    assert len(again.tick().started) == 1


def test_two_schedulers_at_once_start_one_copy(world) -> None:  # type: ignore[no-untyped-def]
    """Two cores (a restarted actor while the old one still ticks) on one store: one live run."""
    clock, store, server, core = world
    other = JobScheduler(store, server, clock=clock, lost_after_s=60)
    store.due_sources = True
    core.tick()
    other.tick()
    assert len(server.of("collect")) == 1
    assert len([r for r in store.of("collect") if r.live]) == 1


def test_default_schedules_follow_the_settings() -> None:
    from cluster.ground.settings import Settings
    from cluster.top.job_scheduler import (
        default_schedules,
        job_server_url,
        jobs_environment,
        scheduler_off_reason,
    )

    specs = {s.name: s for s in default_schedules(Settings(_env_file=None))}  # type: ignore[call-arg]
    assert (specs["collect"].every_s, specs["collect"].enabled) == (300, True)
    assert specs["recluster"].daily_at == time(3, 0)
    assert specs["embed"].on_event == EVENT_MODEL_ACTIVATION
    assert not specs["backup"].enabled and "PULSE_SCHEDULES__BACKUP_DEST" in (specs["backup"].note or "")

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        schedules={
            "backup_dest": "s3://bucket/pulse",
            "backup_keep": 3,
            "collect_every_s": 0,
            "recluster_at": "",
        },
    )
    specs = {s.name: s for s in default_schedules(settings)}
    assert specs["backup"].enabled and specs["backup"].args == ("s3://bucket/pulse", "--keep", "3")
    assert not specs["collect"].enabled and not specs["recluster"].enabled

    assert job_server_url(Settings(_env_file=None)) == "http://127.0.0.1:8265"  # type: ignore[call-arg]
    no_dashboard = Settings(_env_file=None, ray={"include_dashboard": False})  # type: ignore[call-arg]
    assert "PULSE_RAY__INCLUDE_DASHBOARD" in (scheduler_off_reason(no_dashboard) or "")
    joined = Settings(_env_file=None, ray={"address": "ray://head:10001"})  # type: ignore[call-arg]
    assert "PULSE_JOBS__ADDRESS" in (scheduler_off_reason(joined) or "")

    env = jobs_environment(
        Settings(_env_file=None),  # type: ignore[call-arg]
        "postgresql://chosen/db",
        {"PULSE_DATABASE__URL": "postgresql://other/db", "PULSE_RAY__ADDRESS": "auto", "HOME": "/root"},
    )
    assert env["PULSE_DATABASE__URL"] == "postgresql://chosen/db"
    assert "PULSE_RAY__ADDRESS" not in env and "HOME" not in env
