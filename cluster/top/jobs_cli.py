"""`pulse submit` and `pulse jobs`: Pulse's jobs through Ray's job server (the dashboard's job API).

`pulse submit KIND [ARGS...]` submits ``python -m jobs.<kind> ARGS`` (cluster.ground.job_specs) with the
repository root as the uploaded working directory and the submitter's ``PULSE_*`` settings as the job's
environment, records the kind in the job's metadata, and prints the job id. It refuses a second job of a
kind while one is PENDING or RUNNING on that cluster ("never two copies"; ``--allow-concurrent``
overrides). Each job is idempotent (rerunning it does no harm, a stopped one is simply submitted again).

`pulse jobs list|logs|stop` read and stop those jobs.

The job server is, in order: ``--address``, ``PULSE_JOBS__ADDRESS``, the dashboard `pulse up` recorded in
``<var_dir>/platform.json``, ``http://127.0.0.1:8265``. Ray's SDK reads a cluster's token authentication
from the environment itself (``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import click
from dotenv import dotenv_values
from ray.exceptions import AuthenticationError
from ray.job_submission import JobDetails, JobStatus, JobSubmissionClient
from rich.console import Console
from rich.table import Table

from cluster.ground.job_specs import (
    JOB_KINDS,
    JOB_METADATA_KIND,
    entrypoint,
    job_env_vars,
    job_runtime_env,
    kind_of_entrypoint,
    submission_id,
)
from cluster.ground.settings import Settings
from cluster.top.commands.env import CommandEnv, pass_env
from cluster.top.entry import InOrderGroup
from cluster.top.platform_state import PlatformState, state_path
from cluster.top.targets import RAY_AUTH_MODE_VAR
from storage.vector_files import absolute_storage_uri

logger = logging.getLogger(__name__)

#: The job server when nothing else names one: the dashboard of a local `ray start --head`.
DEFAULT_JOB_SERVER = "http://127.0.0.1:8265"
#: Exit code of a refused or failed job command (an unknown id, a second copy, a job that did not succeed).
EXIT_FAILED = 1
#: States of a job that is not over yet.
ACTIVE_STATES = (JobStatus.PENDING, JobStatus.RUNNING)
#: Width of `pulse jobs list` when its output is not a terminal (one line per job).
LIST_WIDTH_PIPED = 400
#: Seconds between status checks while waiting for a job to end after its log stream closed.
STATUS_POLL_S = 0.5

AUTH_HELP = (
    "A cluster with token authentication (the default of `ray start`): the token in ~/.ray/auth_token is "
    "used when the job server asks for one; else set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or "
    "RAY_AUTH_TOKEN_PATH), which Ray's SDK reads from the environment."
)


class JobServerError(Exception):
    """A job server that does not answer, an unknown job id, or a refused submission; the message says
    what to do."""


def job_server_address(settings: Settings, explicit: str | None) -> tuple[str, str]:
    """The job server URL and where it came from (see the module docstring for the order)."""
    if explicit:
        return explicit, "--address"
    if settings.jobs.address:
        return settings.jobs.address, "PULSE_JOBS__ADDRESS"
    path = state_path(settings.var_dir)
    recorded = PlatformState.load(path).dashboard_url
    if recorded:
        return recorded, f"recorded by `pulse up` in {path}"
    return DEFAULT_JOB_SERVER, "the default"


#: Where `ray start` writes the token of a cluster with token authentication (Ray 2.60's default).
DEFAULT_TOKEN_FILE = Path.home() / ".ray" / "auth_token"


def local_auth_token(environ: dict[str, str]) -> str | None:
    """The token Ray's own tools would use: ``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH`` names, else
    ``~/.ray/auth_token``; None when there is none."""
    if environ.get("RAY_AUTH_TOKEN"):
        return environ["RAY_AUTH_TOKEN"].strip()
    path = Path(environ.get("RAY_AUTH_TOKEN_PATH") or DEFAULT_TOKEN_FILE)
    try:
        token = path.read_text().strip()
    except OSError:
        return None
    return token or None


def connect(address: str, origin: str) -> JobSubmissionClient:
    """A client of the job server at ``address``; ``JobServerError`` when it does not answer.

    A cluster with token authentication (the default of `ray start` since Ray 2.59) refuses a client
    without its token. Unless ``RAY_AUTH_MODE`` is set (then Ray's SDK reads the token itself), a refused
    client is made again with the local token (``local_auth_token``) as its bearer header.
    """
    try:
        try:
            return JobSubmissionClient(address)
        except AuthenticationError:
            token = local_auth_token(dict(os.environ))
            if token is None or RAY_AUTH_MODE_VAR in os.environ:
                raise
            return JobSubmissionClient(address, headers={"Authorization": f"Bearer {token}"})
    except AuthenticationError as exc:
        raise JobServerError(
            f"the Ray job server at {address} ({origin}) refused this client: it needs the cluster's token. "
            "Set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) and try again"
        ) from exc
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise JobServerError(
            f"no Ray job server answers at {address} ({origin}): {exc}. Start one with `pulse up` or "
            "`ray start --head --include-dashboard=true`, or name it with --address or PULSE_JOBS__ADDRESS"
        ) from exc


def repository_root(start: Path) -> Path:
    """The checkout holding ``start``: the nearest folder with ``pyproject.toml`` and the ``jobs`` package."""
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "jobs" / "__init__.py").is_file():
            return folder
    raise JobServerError(
        f"{start} is not inside a Pulse checkout (no folder above it holds pyproject.toml and jobs/): "
        "run `pulse submit` from the repository, or give --working-dir"
    )


def submitted_env(settings: Settings, environ: dict[str, str], dotenv: dict[str, str]) -> dict[str, str]:
    """The job's ``PULSE_*`` environment: ``.env`` then the process's variables (which win), the storage
    URI made absolute (a relative one would land in the job's unpacked working directory), and the database
    `pulse up` recorded when none is set."""
    env = job_env_vars({**dotenv, **environ})
    if settings.storage.uri:
        env["PULSE_STORAGE__URI"] = absolute_storage_uri(settings.storage.uri)
    if not any(name.upper() == "PULSE_DATABASE__URL" for name in env):
        recorded = PlatformState.load(state_path(settings.var_dir)).database_url
        if recorded:
            env["PULSE_DATABASE__URL"] = recorded
    return env


def job_kind(job: JobDetails) -> str:
    """The Pulse kind of a job: its metadata, else its entrypoint; "-" for another job."""
    kind = (job.metadata or {}).get(JOB_METADATA_KIND)
    return kind or kind_of_entrypoint(job.entrypoint) or "-"


def running_of_kind(client: JobSubmissionClient, kind: str) -> list[JobDetails]:
    """The jobs of ``kind`` that are PENDING or RUNNING."""
    return [job for job in client.list_jobs() if job.status in ACTIVE_STATES and job_kind(job) == kind]


def job_info(client: JobSubmissionClient, job_id: str) -> JobDetails:
    """The job with this submission id (or Ray job id); ``JobServerError`` naming it when unknown."""
    try:
        return client.get_job_info(job_id)
    except RuntimeError as exc:
        if "404" in str(exc) or "does not exist" in str(exc):
            raise JobServerError(
                f"no job {job_id!r} on this job server; `pulse jobs list --all` lists them"
            ) from exc
        raise JobServerError(f"the job server could not answer about job {job_id!r}: {exc}") from exc


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(job: JobDetails) -> str:
    if not job.start_time:
        return "-"
    end = job.end_time or int(time.time() * 1000)
    seconds = max(0, end - job.start_time) // 1000
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _write(console: Console, text: str) -> None:
    console.out(text, end="", highlight=False)
    console.file.flush()


async def _stream(client: JobSubmissionClient, job_id: str, console: Console) -> None:
    async for chunk in client.tail_job_logs(job_id):
        _write(console, chunk)


def follow_logs(client: JobSubmissionClient, job_id: str, console: Console) -> JobStatus:
    """Print the job's logs as they come until it ends; its final status."""
    asyncio.run(_stream(client, job_id, console))
    status = client.get_job_status(job_id)
    while not status.is_terminal():
        time.sleep(STATUS_POLL_S)
        status = client.get_job_status(job_id)
    return status


def _fail(env: CommandEnv, exc: Exception) -> int:
    env.notices.print(f"error: {exc}", markup=False)
    return EXIT_FAILED


address_option = click.option(
    "--address",
    metavar="URL",
    help="job server (dashboard) URL; default PULSE_JOBS__ADDRESS, the one `pulse up` recorded, "
    f"else {DEFAULT_JOB_SERVER}",
)


@click.command(
    "submit",
    short_help="submit a job to Ray's job server; prints its id",
    context_settings={"ignore_unknown_options": True},
    epilog=AUTH_HELP,
)
@click.argument("kind", type=click.Choice(JOB_KINDS))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@address_option
@click.option(
    "--working-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="folder uploaded as the job's working directory (default: the checkout around this folder)",
)
@click.option("--wait", is_flag=True, help="stream the job's logs until it ends; exit 0 only if it succeeded")
@click.option(
    "--allow-concurrent", is_flag=True, help="submit even if a job of this kind is pending or running"
)
@click.option(
    "--key",
    help="idempotency key: the submission id is derived from it, and the job server refuses it twice",
)
@pass_env
def submit(
    env: CommandEnv,
    *,
    kind: str,
    args: tuple[str, ...],
    address: str | None,
    working_dir: Path | None,
    wait: bool,
    allow_concurrent: bool,
    key: str | None,
) -> int:
    """Submit `python -m jobs.KIND ARGS...` to Ray's job server and print the job id.

    ARGS go to the job as they are (`pulse submit embed --full`); put them after `--` when one has the
    name of an option of submit. The checkout is uploaded as the job's working directory (less .venv, var,
    .git and caches), and the job gets this shell's PULSE_* settings (but PULSE_RAY__ADDRESS: the job
    joins the cluster it runs on), so it uses the same database and storage.
    """
    try:
        server, origin = job_server_address(env.settings, address)
        root = (working_dir or repository_root(Path.cwd())).resolve()
        if working_dir is not None and not root.is_dir():
            raise JobServerError(f"--working-dir {working_dir} is not a folder")
        client = connect(server, origin)
        if not allow_concurrent:
            running = running_of_kind(client, kind)
            if running:
                ids = ", ".join(f"{j.submission_id} ({j.status.value})" for j in running)
                raise JobServerError(
                    f"a {kind} job is already active on {server}: {ids}; wait for it "
                    f"(`pulse jobs logs {running[0].submission_id} --follow`), stop it (`pulse jobs stop "
                    f"{running[0].submission_id}`), or pass --allow-concurrent"
                )
        dotenv = {k: v for k, v in dotenv_values(".env").items() if v is not None}
        runtime_env = job_runtime_env(
            working_dir=str(root), env_vars=submitted_env(env.settings, dict(os.environ), dotenv)
        )
        try:
            job_id = client.submit_job(
                entrypoint=entrypoint(kind, args),
                runtime_env=runtime_env,
                submission_id=submission_id(kind, key),
                metadata={JOB_METADATA_KIND: kind},
            )
        except RuntimeError as exc:
            raise JobServerError(f"the job server at {server} refused the {kind} job: {exc}") from exc
    except JobServerError as exc:
        return _fail(env, exc)
    env.console.print(job_id, markup=False)
    env.notices.print(
        f"submitted {kind} to {server} ({origin}); follow it with `pulse jobs logs {job_id} --follow`, "
        f"stop it with `pulse jobs stop {job_id}`",
        markup=False,
    )
    if not wait:
        return 0
    status = follow_logs(client, job_id, env.console)
    env.notices.print(f"job {job_id}: {status.value}", markup=False)
    return 0 if status == JobStatus.SUCCEEDED else EXIT_FAILED


@click.group(
    "jobs", cls=InOrderGroup, epilog=AUTH_HELP, short_help="list, read and stop the jobs on Ray's job server"
)
def jobs() -> None:
    """List, read and stop the jobs on Ray's job server (`pulse submit` submits them)."""


@jobs.command("list", short_help="the jobs on the job server, newest first")
@address_option
@click.option("--all", "show_all", is_flag=True, help="every job on the cluster, not only Pulse's")
@pass_env
def list_jobs(env: CommandEnv, *, address: str | None, show_all: bool) -> int:
    """The job server's Pulse jobs, newest first: id, kind, status, start, duration, entrypoint."""
    try:
        client = connect(*job_server_address(env.settings, address))
        found = client.list_jobs()
    except JobServerError as exc:
        return _fail(env, exc)
    rows = [job for job in found if show_all or job_kind(job) != "-"]
    rows.sort(key=lambda job: job.start_time or 0, reverse=True)
    table = Table(box=None)
    for column in ("id", "kind", "status", "start (UTC)", "duration"):
        table.add_column(column, no_wrap=True)
    table.add_column("entrypoint", overflow="fold")
    for job in rows:
        table.add_row(
            job.submission_id or job.job_id or "-",
            job_kind(job),
            job.status.value,
            _when(job.start_time),
            _duration(job),
            job.entrypoint,
        )
    # Piped (not a terminal), rich would fold the table to 80 columns: one line per job instead.
    out = env.console
    if not out.is_terminal:
        out = Console(file=out.file, width=LIST_WIDTH_PIPED, highlight=False)
    out.print(table)
    env.notices.print(f"{len(rows)} job(s)" + ("" if show_all else "; --all lists every job"), markup=False)
    return 0


@jobs.command("logs", short_help="a job's output (--follow: until it ends)")
@click.argument("job_id")
@address_option
@click.option("--follow", is_flag=True, help="keep printing until the job ends")
@pass_env
def logs(env: CommandEnv, *, job_id: str, address: str | None, follow: bool) -> int:
    """Print the output of job JOB_ID (its submission id)."""
    try:
        client = connect(*job_server_address(env.settings, address))
        job_info(client, job_id)
        if not follow:
            _write(env.console, client.get_job_logs(job_id))
            return 0
    except JobServerError as exc:
        return _fail(env, exc)
    status = follow_logs(client, job_id, env.console)
    env.notices.print(f"job {job_id}: {status.value}", markup=False)
    return 0


@jobs.command("stop", short_help="stop a running job")
@click.argument("job_id")
@address_option
@pass_env
def stop(env: CommandEnv, *, job_id: str, address: str | None) -> int:
    """Ask the job server to stop job JOB_ID (SIGTERM to its driver, then SIGKILL)."""
    try:
        client = connect(*job_server_address(env.settings, address))
        info = job_info(client, job_id)
    except JobServerError as exc:
        return _fail(env, exc)
    if info.status.is_terminal():
        env.console.print(f"job {job_id} already ended: {info.status.value}", markup=False)
        return 0
    client.stop_job(job_id)
    env.console.print(f"job {job_id}: stop requested (was {info.status.value})", markup=False)
    return 0
