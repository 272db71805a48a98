"""``python -m jobs.recluster``: `pulse recluster` (cluster.top.commands), for `ray job submit`."""

from __future__ import annotations

from cluster.top.commands.recluster import recluster
from cluster.top.entry import from_shell, run_command


def main(argv: list[str] | None = None) -> int:
    return run_command(recluster, argv, prog_name="python -m jobs.recluster")


if __name__ == "__main__":
    raise SystemExit(from_shell(main))
