"""The catalogue of jobs Pulse submits to Ray's job server, and how each is submitted.

Pure (no Ray import): `pulse submit` and the scheduler actor build a submission from these values and hand
them to ``ray.job_submission.JobSubmissionClient.submit_job``:

- ``entrypoint(kind, args)``: the shell command the job's driver runs, ``python -m jobs.<kind> ...``
  (each ``jobs/<kind>/__main__.py`` runs the same click command as ``pulse <kind>``);
- ``job_runtime_env(working_dir=..., env_vars=...)``: Ray's ``runtime_env``: the repository root uploaded
  as the working directory (so ``python -m jobs.embed`` imports the same code as on the submitter's
  machine) less ``DEFAULT_EXCLUDES``, and the environment the driver needs;
- ``job_env_vars(os.environ)``: the submitter's ``PULSE_*`` settings to pass on, so the driver on the
  cluster writes to the same database and storage URI; never ``PULSE_RAY__ADDRESS`` (the driver joins the
  cluster it runs on) nor the submitter-only ``PULSE_JOBS__*``;
- ``submission_id(kind, key)``: Ray's submission id, random per run or derived from a key, so that a
  scheduler submitting "the embed of hour H" twice gets Ray's "already exists" refusal the second time;
- ``JOB_METADATA_KIND``: the metadata key that records the kind, so listings can show it.

Note that ``env_vars`` are visible to anyone who can read the job server (dashboard, ``ray job list``),
like the rest of a job's runtime environment.
"""

from __future__ import annotations

import hashlib
import secrets
import shlex
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

#: Jobs that `pulse submit` and the scheduler can submit; each is a ``jobs.<kind>`` package with a
#: ``__main__``.
JOB_KINDS: tuple[str, ...] = ("collect", "embed", "recluster", "reindex", "backfill", "profiles", "backup")

#: Metadata key (``submit_job(metadata=...)``) that records which kind of Pulse job a submission is.
JOB_METADATA_KIND = "pulse_kind"

#: Prefix of every Pulse submission id (``pulse-<kind>-...``).
SUBMISSION_PREFIX = "pulse"

#: Paths (gitignore syntax, relative to the working directory) left out of the uploaded working directory:
#: the virtual environment, local state (databases, storage, platform.json), caches and build outputs.
DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".venv",
    "var",
    ".git",
    "**/__pycache__",
    "*.pyc",
    "*.egg-info",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    ".import_linter_cache",
    ".hypothesis",
    ".schemathesis",
    "build",
    "dist",
    "bench/.cache",
    "bench/results",
    ".env",
)

#: Environment every job driver gets: the embedding model is packaged or cached, never downloaded, and
#: tokenizers must not fork thread pools inside Ray workers.
JOB_FIXED_ENV: Mapping[str, str] = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

#: Prefix of the settings variables passed on to a job.
SETTINGS_PREFIX = "PULSE_"

#: Settings never passed on: the driver joins the cluster it runs on, and ``PULSE_JOBS__*`` configure the
#: submitter (which job server to talk to), not the job.
SUBMITTER_ONLY_ENV: tuple[str, ...] = ("PULSE_RAY__ADDRESS",)
SUBMITTER_ONLY_PREFIXES: tuple[str, ...] = ("PULSE_JOBS__",)


def _check_kind(kind: str) -> None:
    if kind not in JOB_KINDS:
        raise ValueError(f"unknown job kind {kind!r}; valid kinds: {', '.join(JOB_KINDS)}")


def entrypoint(kind: str, args: Sequence[str] = ()) -> str:
    """The shell command a job's driver runs: ``python -m jobs.<kind>`` and ``args``, each shell-quoted."""
    _check_kind(kind)
    if isinstance(args, str):
        raise TypeError("args is a sequence of arguments, not one string; split it with shlex.split first")
    return " ".join(["python", "-m", f"jobs.{kind}", *(shlex.quote(str(a)) for a in args)])


def kind_of_entrypoint(command: str) -> str | None:
    """The kind of a job from its entrypoint (``python -m jobs.<kind> ...``), or None for another command."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    for i, word in enumerate(words[:-1]):
        if word == "-m" and words[i + 1].startswith("jobs."):
            kind = words[i + 1].removeprefix("jobs.")
            return kind if kind in JOB_KINDS else None
    return None


def job_runtime_env(
    *,
    working_dir: str | None,
    env_vars: Mapping[str, str],
    excludes: Sequence[str] = DEFAULT_EXCLUDES,
) -> dict[str, Any]:
    """Ray's ``runtime_env`` for a Pulse job.

    ``working_dir``: a local folder (the repository root) that Ray zips and uploads, or a ``gcs://``,
    ``s3://``... URI of a package already uploaded; None when the cluster's image already holds the code
    (then ``excludes`` do not apply). ``env_vars`` are added to ``JOB_FIXED_ENV`` (which they may override).
    """
    if isinstance(excludes, str):
        raise TypeError("excludes is a sequence of patterns, not one string")
    bad = sorted(k for k, v in env_vars.items() if not isinstance(k, str) or not isinstance(v, str))
    if bad:
        raise TypeError(f"env_vars must map strings to strings; fix {', '.join(map(str, bad))}")
    runtime_env: dict[str, Any] = {"env_vars": {**JOB_FIXED_ENV, **env_vars}}
    if working_dir is not None:
        if not working_dir.strip():
            raise ValueError("working_dir is empty; give the repository root or a package URI, or None")
        runtime_env["working_dir"] = working_dir
        if "://" not in working_dir and excludes:
            runtime_env["excludes"] = list(excludes)
    return runtime_env


def submission_id(kind: str, key: str | None = None) -> str:
    """Ray's submission id of a job: ``pulse-<kind>-<UTC timestamp>-<6 hex>``, or from ``key``.

    With a key the id is ``pulse-<kind>-<16 hex of sha256(key)>``: the same key always gives the same id,
    and Ray refuses a second submission under an id it already holds.
    """
    _check_kind(kind)
    if key is not None:
        if not key:
            raise ValueError("key is empty; give a non-empty key or None for a fresh id")
        digest = hashlib.sha256(f"{kind}\0{key}".encode()).hexdigest()[:16]
        return f"{SUBMISSION_PREFIX}-{kind}-{digest}"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{SUBMISSION_PREFIX}-{kind}-{stamp}-{secrets.token_hex(3)}"


def job_env_vars(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``PULSE_*`` variables of ``environ`` to pass to a job, less the submitter-only ones.

    Names compare case-insensitively, as pydantic-settings reads them (``pulse_ray__address`` is left out
    too).
    """
    passed: dict[str, str] = {}
    for name, value in sorted(environ.items()):
        upper = name.upper()
        if not upper.startswith(SETTINGS_PREFIX) or upper in SUBMITTER_ONLY_ENV:
            continue
        if upper.startswith(SUBMITTER_ONLY_PREFIXES):
            continue
        passed[name] = value
    return passed
