"""Shared plumbing of entry points: one-line errors instead of tracebacks, exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from cluster.ground.errors import AddressGuardError
from cluster.ground.runtime import configure_logging
from cluster.ground.settings import Settings, get_settings
from jobs.errors import JobError
from storage.errors import StorageError

logger = logging.getLogger(__name__)

#: Exit code of an entry point that stopped on a user-facing error.
EXIT_USER_ERROR = 2


def run_job(
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace, Settings], int],
    argv: list[str] | None = None,
) -> int:
    """The ``main`` of a ``python -m jobs.<name>`` entry point: parse, read settings, log, run."""
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    return run_entry(lambda: body(args, settings))


def run_entry(body: Callable[[], int]) -> int:
    """Run ``body``; known errors become one line on stderr and exit code 2."""
    try:
        return body()
    except (StorageError, JobError, AddressGuardError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
