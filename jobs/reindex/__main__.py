"""``python -m jobs.reindex``: the `pulse reindex` command (cluster.top.commands), for `ray job submit`."""

from __future__ import annotations

from cluster.top.commands.reindex import reindex
from cluster.top.entry import from_shell, run_command


def main(argv: list[str] | None = None) -> int:
    return run_command(reindex, argv, prog_name="python -m jobs.reindex")


if __name__ == "__main__":
    raise SystemExit(from_shell(main))
