"""``python -m jobs.backup``: `pulse backup DEST [--keep N]` (cluster.top.backup_cli), for `ray job submit`
and the scheduler."""

from __future__ import annotations

from cluster.top.backup_cli import backup
from cluster.top.entry import from_shell, run_command


def main(argv: list[str] | None = None) -> int:
    return run_command(backup, argv, prog_name="python -m jobs.backup")


if __name__ == "__main__":
    raise SystemExit(from_shell(main))
