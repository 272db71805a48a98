"""``python -m jobs.backfill``: the `pulse backfill` command (cluster.top.commands), for `ray job submit`."""

from __future__ import annotations

from cluster.top.commands.backfill import backfill
from cluster.top.entry import from_shell, run_command


def main(argv: list[str] | None = None) -> int:
    return run_command(backfill, argv, prog_name="python -m jobs.backfill")


if __name__ == "__main__":
    raise SystemExit(from_shell(main))
