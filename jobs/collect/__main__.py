"""``python -m jobs.collect``: the `pulse collect` command (cluster.top.commands), for `ray job submit`."""

from __future__ import annotations

from cluster.top.commands.collect import collect
from cluster.top.entry import from_shell, run_command


def main(argv: list[str] | None = None) -> int:
    return run_command(collect, argv, prog_name="python -m jobs.collect")


if __name__ == "__main__":
    raise SystemExit(from_shell(main))
