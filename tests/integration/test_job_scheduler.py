"""The job scheduler on real parts: its repository on PostgreSQL (the partial unique index refuses a second
live run), and the actor against a real job server.

The job server is a `ray start --head` node with the dashboard, started here with its own ports and its
own RAY_TMPDIR (no other process's ``ray.init()`` finds it) and stopped by port in a ``finally``; the actor
is created, restarted and stopped by a probe process (``tests.support.job_scheduler_probe``), and
`pulse schedules` runs as a subprocess. This module does not use the ``ray_session`` fixture.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import pytest
from ray.job_submission import JobStatus, JobSubmissionClient
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.database import make_engine, make_session_factory, session_scope
from storage.errors import ScheduleDisabled, ScheduleNotFound
from storage.schedule_models import Schedule, ScheduleRun
from storage.schedules import RunRow, ScheduleRepository, ScheduleSpec
from tests.conftest import SCHEDULE_TABLES, truncate
from tests.support.ray_node import head_node

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NOW = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)


# ---------------------------------------------------------------------------------------- repository
@pytest.fixture
def repo(session: Session, engine: Any) -> ScheduleRepository:
    truncate(engine, SCHEDULE_TABLES)
    return ScheduleRepository(session)


def test_seed_is_idempotent_and_keeps_what_the_operator_set(repo: ScheduleRepository) -> None:
    spec = ScheduleSpec(name="recluster", kind="recluster", daily_at=dtime(3, 0))
    first = repo.seed(spec, first_run_at=NOW + timedelta(hours=2), now=NOW)
    assert (first.kind, first.daily_at, first.paused, first.enabled) == (
        "recluster",
        dtime(3, 0),
        False,
        True,
    )
    repo.set_paused("recluster", True, now=NOW)
    again = repo.seed(spec, first_run_at=NOW + timedelta(hours=9), now=NOW)
    assert again.paused and again.next_run_at == NOW + timedelta(hours=2)  # kept
    moved = repo.seed(
        ScheduleSpec(name="recluster", kind="recluster", daily_at=dtime(4, 0)),
        first_run_at=NOW + timedelta(hours=3),
        now=NOW,
    )
    assert moved.paused and moved.daily_at == dtime(4, 0) and moved.next_run_at == NOW + timedelta(hours=3)
    backup = repo.seed(
        ScheduleSpec(name="backup", kind="backup", daily_at=dtime(2, 0), enabled=False, note="set DEST"),
        first_run_at=None,
        now=NOW,
    )
    with pytest.raises(ScheduleDisabled, match="set DEST"):
        repo.request_run(backup.name, now=NOW)
    with pytest.raises(ScheduleNotFound):
        repo.set_paused("nope", True, now=NOW)
    assert [s.name for s in repo.all()] == ["backup", "recluster"]
    with pytest.raises(IntegrityError), repo.session.begin_nested():  # exactly one timing
        repo.session.execute(
            insert(Schedule).values(name="bad", kind="collect", every_s=5, daily_at=dtime(1, 0))
        )


def test_the_database_refuses_a_second_live_run(repo: ScheduleRepository) -> None:
    repo.seed(ScheduleSpec(name="collect", kind="collect", every_s=60), first_run_at=NOW, now=NOW)
    run = repo.start_run(
        schedule="collect", kind="collect", submission_id="pulse-collect-a", reason="t", now=NOW
    )
    assert run is not None and run.state == "pending"
    # The repository's own insert gets nothing back...
    assert (
        repo.start_run(
            schedule="collect", kind="collect", submission_id="pulse-collect-b", reason="t", now=NOW
        )
        is None
    )
    # ...and any other writer is refused by the partial unique index itself.
    with pytest.raises(IntegrityError, match="uq_schedule_runs_live"), repo.session.begin_nested():
        repo.session.execute(
            insert(ScheduleRun).values(schedule="collect", kind="collect", state="running", reason="by hand")
        )
    repo.mark_running(run.id, now=NOW)
    assert [r.state for r in repo.live_runs()] == ["running"]
    repo.finish_run(run.id, state="succeeded", message="Job finished successfully.", now=NOW)
    assert repo.live_runs() == []
    second = repo.start_run(
        schedule="collect", kind="collect", submission_id="pulse-collect-c", reason="t", now=NOW
    )
    assert second is not None  # once the first is over, a new one may start
    repo.record_skipped(schedule="collect", kind="collect", reason="every 60 s", message="copy live", now=NOW)
    assert [r.state for r in repo.runs("collect")] == ["skipped", "pending", "succeeded"]
    assert repo.last_runs()["collect"].state == "skipped"
    with pytest.raises(ValueError):
        repo.finish_run(second.id, state="running", message=None, now=NOW)


def test_what_is_due_comes_from_sources_and_the_registry(repo: ScheduleRepository) -> None:
    from storage.sources import SourceRepository

    assert repo.sources_due() is False
    assert repo.active_entries() == []
    SourceRepository(repo.session).add(name="feed", kind="feed", uri="http://127.0.0.1:9/feed.xml")
    assert repo.sources_due() is True  # never collected: due


# ------------------------------------------------------------------------------------ actor + job server
def job_client(url: str) -> JobSubmissionClient:
    """A job server client from this process, whose Ray config has token authentication off (the test
    session's own Ray): the node's token is sent as a header (``ray start`` wrote it to ~/.ray)."""
    token = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    headers = {"Authorization": f"Bearer {token.read_text().strip()}"} if token.exists() else None
    return JobSubmissionClient(url, headers=headers)


@pytest.fixture(scope="module")
def node() -> Iterator[tuple[str, str]]:
    """A local head node with the dashboard (the job server): (GCS address, job server URL)."""
    with head_node(prefix="pjsch") as node:
        yield node.address, node.job_server


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "RAY_ADDRESS"))}
    env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "RAY_AUTH_MODE": "token"})
    env.update(extra)
    return env


def probe(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.support.job_scheduler_probe", *args],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"
    return dict(json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1]))


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.5)


def test_actor_submits_reconciles_and_survives_a_restart(
    node: tuple[str, str], clean_db: str, engine: Any, tmp_path: Path
) -> None:
    gcs, job_server = node
    namespace = f"pulse-sched-{os.getpid()}"
    truncate(engine, SCHEDULE_TABLES)
    sessions = make_session_factory(make_engine(clean_db, pool_size=1))

    def runs(name: str) -> list[RunRow]:
        with session_scope(sessions) as session:
            return list(reversed(ScheduleRepository(session).runs(name)))

    def request(name: str) -> None:
        with session_scope(sessions) as session:
            ScheduleRepository(session).request_run(name, now=datetime.now(UTC))

    def requested(name: str) -> bool:
        with session_scope(sessions) as session:
            return ScheduleRepository(session).get(name).run_requested_at is not None

    job_env = {
        "PULSE_DATABASE__URL": clean_db,
        "PULSE_STORAGE__URI": str(tmp_path / "storage"),
        "PULSE_VAR_DIR": str(tmp_path / "var"),
    }
    config = {
        "database_url": clean_db,
        "job_server_url": job_server,
        "tick_s": 1.0,
        "env_vars": job_env,
        # The sources table is empty: a collect job ends at once ("nothing due"), or loops with --loop.
        "schedules": [
            {"name": "collect-once", "kind": "collect", "every_s": 3600, "args": ["--no-progress"]},
            {"name": "collect-loop", "kind": "collect", "every_s": 3600, "args": ["--loop", "--no-progress"]},
        ],
    }
    client = job_client(job_server)
    started = probe("start", gcs, namespace, json.dumps(config))
    try:
        # No source is due: the first due check submits nothing.
        assert runs("collect-once") == [] and not [j for j in client.list_jobs() if j.submission_id]

        # run-now through the CLI (database + a poke of the actor): a run goes running -> succeeded.
        cli_env = _env(
            PULSE_DATABASE__URL=clean_db,
            PULSE_VAR_DIR=str(tmp_path / "var"),
            PULSE_RAY__ADDRESS=gcs,
            PULSE_RAY__NAMESPACE=namespace,
        )
        cli = subprocess.run(
            [str(BIN / "pulse"), "schedules", "run-now", "collect-once"],
            env=cli_env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert cli.returncode == 0, cli.stdout + cli.stderr
        assert "requested" in cli.stdout, cli.stdout
        [run] = wait_for("a collect-once run", lambda: runs("collect-once"), 30)
        assert (
            run.submission_id and run.submission_id.startswith("pulse-collect-") and run.reason == "run-now"
        )
        done = wait_for(
            "collect-once to succeed",
            lambda: [r for r in runs("collect-once") if r.state == "succeeded"],
            120,
        )
        assert done[0].started_at is not None and done[0].finished_at is not None
        assert client.get_job_status(run.submission_id) == JobStatus.SUCCEEDED
        assert client.get_job_info(run.submission_id).metadata["pulse_kind"] == "collect"

        listed = subprocess.run(
            [str(BIN / "pulse"), "schedules", "list", "--json"],
            env=cli_env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        rows = {r["name"]: r for r in json.loads(listed.stdout)}
        assert rows["collect-once"]["last_run"]["state"] == "succeeded"
        assert rows["collect-loop"]["timing"] == "every 3600 s"

        # A job that keeps running (collect --loop): the run is live.
        request("collect-loop")
        loop_run = wait_for(
            "collect-loop running",
            lambda: (
                [r for r in runs("collect-loop") if r.state == "running"]
                and client.get_job_status(runs("collect-loop")[0].submission_id or "") == JobStatus.RUNNING
                and runs("collect-loop")[0]
            ),
            120,
        )
        sid = loop_run.submission_id
        assert sid

        # Kill the actor: Ray restarts it, it reconciles from PostgreSQL and starts no second copy.
        restarted = probe("restart", gcs, namespace)
        assert restarted["after"] != restarted["before"] == started["pid"]
        request("collect-loop")
        request("collect-once")
        wait_for(
            "both run-now requests handled",
            lambda: not requested("collect-loop") and not requested("collect-once"),
            60,
        )
        loop_runs = runs("collect-loop")
        assert [r.state for r in loop_runs] == ["running", "skipped"], loop_runs
        assert "still running" in (loop_runs[1].message or "")
        once_skip = runs("collect-once")[-1]
        assert once_skip.state == "skipped" and sid in (once_skip.message or "")  # a collect job is live
        live = [
            j
            for j in client.list_jobs()
            if j.submission_id and j.status in (JobStatus.PENDING, JobStatus.RUNNING)
        ]
        assert [j.submission_id for j in live] == [sid]

        # Stopping the job ends the run `stopped` (reconciled by the restarted actor).
        client.stop_job(sid)
        stopped = wait_for(
            "the run stopped",
            lambda: runs("collect-loop")[0].state == "stopped" and runs("collect-loop")[0],
            60,
        )
        assert stopped.finished_at is not None
    finally:
        probe("stop", gcs, namespace)
        sessions.kw["bind"].dispose()
