"""Starting or joining Ray, and logging set-up, for every entry point."""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

import ray
from ray.job_config import JobConfig

from cluster.ground.settings import RaySettings

logger = logging.getLogger(__name__)

#: Lines Ray writes to a driver's stderr or stdout that no Pulse user can act on. (1) Ray Data 2.60 passes
#: every actor-pool worker its context as an object reference, and the C++ core worker then logs this once
#: per job at ERROR level, on fd 2 (ray-project/ray#57733). (2) The raylet warns when more worker processes
#: start than cores: Pulse's jobs and actors ask for fractional CPUs on purpose (jobs.placement); the
#: driver prints it on ``sys.stdout`` (``ray._private.worker.listen_error_messages``, as "(raylet) ...").
RAY_CORE_NOISE: tuple[bytes, ...] = (
    b"has constructor arguments in the object store and max_restarts > 0",
    b"PYTHON worker processes have been started on node",
)
#: How long the process waits at exit for the last lines written to stderr to pass the filter.
_DRAIN_S = 2.0
_noise_filter: threading.Thread | None = None


#: Loggers held at WARNING, on the console and in Ray's workers: at INFO they say what Pulse's own lines
#: already say, or how a library loaded (faiss.loader: six lines in each process that imports faiss;
#: sentence_transformers: a line per model load in each encoder).
NOISY_LOGGERS = (
    "httpx",
    "alembic.runtime.migration",
    "ray.serve",
    "ray.data",
    "faiss.loader",
    "pgserver",
    "sentence_transformers",
)

#: ``LogRecord`` attributes every record has; any other attribute came from ``extra=`` (or a filter).
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record carries beyond the standard ones: what the caller passed as ``extra=``."""
    return {key: value for key, value in record.__dict__.items() if key not in _RECORD_ATTRIBUTES}


def _field_value(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if not text or '"' in text or any(c.isspace() for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


class ConsoleFormatter(logging.Formatter):
    """``<time> INFO jobs.collect.fetch: retrying url=https://a.example/ attempt=2``: the usual line, then
    the record's ``extra`` fields as ``key=value`` (empty values and those with spaces or quotes
    JSON-quoted); a traceback, if any, follows on the next lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = record_fields(record)
        if not fields:
            return line
        return line + " " + " ".join(f"{key}={_field_value(value)}" for key, value in fields.items())


def configure_logging(level: str = "INFO") -> None:
    """The console logging of a Pulse process (the `pulse` CLI, a ``python -m jobs.*`` driver): one
    stderr handler with ``ConsoleFormatter``. Its Ray workers and actors log JSON (``init_ray``)."""
    handler = logging.StreamHandler()
    handler.setFormatter(ConsoleFormatter())
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    quiet_noisy_loggers()


def quiet_noisy_loggers() -> None:
    """Hold ``NOISY_LOGGERS`` at WARNING: in every Pulse process and, through Ray's
    ``worker_process_setup_hook`` (``setup_worker``), in every worker of its jobs."""
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Jobs draw their own progress (jobs.progress) and set DataContext.enable_progress_bars = False; Ray
    # Data then warns "Progress bars disabled ..." once per process from this logger (Ray 2.60).
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


#: The environment variable that carries the submission id of a job run by ``ray job submit`` from its
#: driver to its workers (``worker_logging``), whose JSON log lines then hold it as ``submission_id``.
SUBMISSION_ID_ENV = "PULSE_JOB_SUBMISSION_ID"
#: Where ``ray job submit`` puts the submission id: the job config it hands the driver (in this
#: environment variable, as JSON), under this metadata key (Ray's ``JOB_ID_METADATA_KEY``).
_JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
_SUBMISSION_ID_KEY = "job_submission_id"


def submission_id(environ: Mapping[str, str] | None = None) -> str | None:
    """The submission id of the job this driver runs as under ``ray job submit``, else None."""
    raw = (os.environ if environ is None else environ).get(_JOB_CONFIG_ENV)
    if not raw:
        return None
    try:
        metadata = json.loads(raw).get("metadata") or {}
    except (ValueError, AttributeError):
        return None
    value = metadata.get(_SUBMISSION_ID_KEY) if isinstance(metadata, dict) else None
    return str(value) if value else None


class _SubmissionIdRecords:
    """A log record factory adding ``submission_id`` to every record (Ray's JSON formatter writes it)."""

    def __init__(self, previous: Callable[..., logging.LogRecord], submission: str) -> None:
        self.previous = previous
        self.submission = submission

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        record.submission_id = self.submission
        return record


def tag_submission_id(environ: Mapping[str, str] | None = None) -> None:
    """Give this process's log records ``submission_id`` when ``SUBMISSION_ID_ENV`` is set (once)."""
    submission = (os.environ if environ is None else environ).get(SUBMISSION_ID_ENV)
    current = logging.getLogRecordFactory()
    if not submission or isinstance(current, _SubmissionIdRecords):
        return
    logging.setLogRecordFactory(_SubmissionIdRecords(current, submission))


def setup_worker() -> None:
    """Ray's ``worker_process_setup_hook`` of Pulse's jobs (``worker_logging``): ``quiet_noisy_loggers``,
    and the job's submission id on every log record (``tag_submission_id``)."""
    quiet_noisy_loggers()
    tag_submission_id()


def worker_logging_config(level: str = "INFO") -> ray.LoggingConfig:
    """Logging of every Ray worker and actor of a Pulse job: one JSON object a line on the worker's
    stderr (its ``worker-*.err`` file, and the driver's terminal when ``log_to_driver``). Ray's
    ``JSONFormatter`` writes every record attribute outside the standard ones, so ``extra=`` fields become
    keys beside ``message``, with Ray's ``job_id``, ``worker_id``, ``node_id``, ``actor_id``, ``task_id``;
    ``name`` adds the logger's name. The formatter has no fallback for other types: ``extra`` values must
    be JSON values (str, numbers, bool, None, lists and dicts of them)."""
    return ray.LoggingConfig(encoding="JSON", log_level=level.upper(), additional_log_standard_attrs=["name"])


def worker_logging(target: str | None, level: str) -> dict[str, Any]:
    """``ray.init`` arguments that give this job's workers ``worker_logging_config`` and
    ``setup_worker`` (with the job's submission id under ``ray job submit``). The logging config goes in
    the job config rather than in ``ray.init(logging_config=...)``, which would also add a JSON handler
    to this process's root logger and reset its ``ray`` logger (a second copy of every console line).
    Ray Client (``ray://``) cannot carry a job config through ``ray.init`` (it sends the arguments as
    JSON): its workers keep Ray's default logging."""
    if target is not None and "://" in target:
        return {}
    job_config = JobConfig()
    job_config.set_py_logging_config(worker_logging_config(level))
    # A runtime_env argument (not the job config's): `ray job submit` merges it with the job's own (its
    # env_vars key by key).
    hook = f"{setup_worker.__module__}.{setup_worker.__name__}"
    runtime_env: dict[str, Any] = {"worker_process_setup_hook": hook}
    submission = submission_id()
    if submission:
        runtime_env["env_vars"] = {SUBMISSION_ID_ENV: submission}
    return {"job_config": job_config, "runtime_env": runtime_env}


class _WithoutNoise:
    """``sys.stdout`` less the ``print()`` calls whose text holds one of ``patterns`` (and the newline
    ``print`` writes after it); everything else, and every other attribute, is the stream's."""

    def __init__(self, stream: Any, patterns: tuple[str, ...]) -> None:
        self._stream = stream
        self._patterns = patterns
        self._dropped = False

    def write(self, text: str) -> int:
        if self._dropped and text == "\n":
            self._dropped = False
            return 1
        self._dropped = any(p in text for p in self._patterns)
        return len(text) if self._dropped else int(self._stream.write(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def drop_ray_core_noise(patterns: tuple[bytes, ...] = RAY_CORE_NOISE) -> None:
    """From now on, drop the lines of this process's stderr (file descriptor 2, which Ray's C++ code
    writes to directly) that contain one of ``patterns``; everything else passes at once, partial lines
    (progress redraws) included. The same lines printed on ``sys.stdout`` (by Ray's Python driver code)
    are dropped too. For console entry points only (``pulse``, ``python -m jobs.*``): it replaces the
    process's fd 2 with a pipe read by a thread (stdout stays the terminal, so colours and widths do not
    change). At exit the last lines are drained."""
    global _noise_filter
    if _noise_filter is not None:
        return
    sys.stdout = _WithoutNoise(sys.stdout, tuple(p.decode() for p in patterns))  # type: ignore[assignment]
    original = os.dup(2)
    read_end, write_end = os.pipe()
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        while chunk := os.read(read_end, 65536):
            lines = chunk.split(b"\n")
            kept = [line for line in lines if not any(p in line for p in patterns)]
            if len(kept) != len(lines) and kept == [b""]:
                continue  # the chunk was only dropped lines
            os.write(original, b"\n".join(kept))
        os.close(read_end)

    def drain() -> None:
        # Give fd 2 back (this closes our write end of the pipe), then let the thread pass what is left.
        # Children that inherited the pipe (a local Ray's processes) keep it open: wait a bounded time.
        sys.stderr.flush()
        os.dup2(original, 2)
        if _noise_filter is not None:
            _noise_filter.join(_DRAIN_S)

    _noise_filter = threading.Thread(target=pump, name="stderr-noise-filter", daemon=True)
    _noise_filter.start()
    atexit.register(drain)


def init_ray(
    settings: RaySettings, *, address: str | None = None, log_level: str = "INFO", **overrides: Any
) -> None:
    """Join ``address`` / ``PULSE_RAY__ADDRESS`` / a running local cluster, or start a local one; the
    job's workers and actors log JSON at ``log_level`` (``worker_logging_config``).

    Inside ``ray job submit`` Ray sets ``RAY_ADDRESS`` and ``ray.init()`` joins that cluster.
    """
    if ray.is_initialized():
        return
    target = address or settings.address or os.environ.get("RAY_ADDRESS")
    overrides = {**worker_logging(target, log_level), **overrides}
    if target:
        ray.init(address=target, namespace=settings.namespace, **overrides)
        logger.info("joined Ray cluster at %s", target)
        return
    kwargs: dict[str, Any] = {
        "address": "local",  # a new instance, even when `ray start` left one running here
        "logging_level": logging.WARNING,
        "namespace": settings.namespace,
        "num_cpus": settings.num_cpus,
        "num_gpus": settings.num_gpus,
        "include_dashboard": settings.include_dashboard,
        "dashboard_port": settings.dashboard_port,
    }
    if settings.object_store_memory_mb:
        kwargs["object_store_memory"] = settings.object_store_memory_mb * 1024 * 1024
    kwargs.update(overrides)
    ray.init(**kwargs)
    logger.info("started a local Ray instance (%s CPUs)", ray.cluster_resources().get("CPU"))  # type: ignore[no-untyped-call]
