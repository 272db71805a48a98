"""Running a click command as an entry point (`pulse`, `python -m jobs.<name>`): exit codes, one-line errors.

Exit codes: what the command returns (0 when it returns nothing); 2 for a usage error (click's message,
as argparse did) and for a user-facing error (one ``error: ...`` line on stderr, no traceback); 130 when
interrupted (Ctrl-C). PostgreSQL going away mid-command (stopped, restarted) is a user-facing error too:
the line says that what was committed is kept and that a rerun completes the work.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from cluster.ground.errors import AddressGuardError
from cluster.ground.runtime import drop_ray_core_noise
from jobs.errors import JobError
from storage.database import database_lost
from storage.errors import StorageError

#: Exit code of an entry point that stopped on a user-facing error (click's usage errors exit 2 too).
EXIT_USER_ERROR = 2
#: Exit code of an entry point interrupted by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130
#: Errors a user can mend (a database that does not answer, a model not found, a refused URL...): they
#: end a command with one line, not a traceback.
USER_ERRORS = (StorageError, JobError, AddressGuardError)


class InOrderGroup(click.Group):
    """A click group whose help lists its commands in the order they were added, not alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


def user_error(message: object) -> int:
    """Say ``error: <message>`` on stderr; the exit code of a user-facing error."""
    sys.stderr.write(f"error: {message}\n")
    return EXIT_USER_ERROR


def run_command(command: click.Command, argv: list[str] | None = None, *, prog_name: str) -> int:
    """Parse ``argv`` (default: the process's arguments) with ``command`` and run it; the exit code.

    A usage error prints click's usage and message on stderr and raises ``SystemExit(2)``, as an
    argparse parser did; ``--help`` prints the help and returns 0."""
    try:
        result = command.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except USER_ERRORS as exc:
        return user_error(exc)
    except click.Abort:  # click's form of KeyboardInterrupt (and of EOFError) outside standalone mode
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    except Exception as exc:
        lost = database_lost(exc)  # PostgreSQL stopped mid-command: one line that says to rerun
        if lost is None:
            raise
        return user_error(lost)
    return result if isinstance(result, int) else 0


def from_shell(main: Callable[[], int]) -> int:
    """``main()`` of a console entry point started from a shell: Ray's C++ noise kept off the terminal."""
    drop_ray_core_noise()
    return main()
