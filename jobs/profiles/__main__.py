"""``python -m jobs.profiles``: `pulse profiles rebuild` (cluster.top.commands), for `ray job submit`."""

from __future__ import annotations

from cluster.top.commands.profiles import rebuild
from cluster.top.entry import from_shell, run_command


def main(argv: list[str] | None = None) -> int:
    return run_command(rebuild, argv, prog_name="python -m jobs.profiles")


if __name__ == "__main__":
    raise SystemExit(from_shell(main))
