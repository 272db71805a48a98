"""``python -m jobs.embed``: the `pulse embed` command (cluster.top.commands), for `ray job submit`."""

from __future__ import annotations

from cluster.top.commands.embed import embed
from cluster.top.entry import from_shell, run_command


def main(argv: list[str] | None = None) -> int:
    return run_command(embed, argv, prog_name="python -m jobs.embed")


if __name__ == "__main__":
    raise SystemExit(from_shell(main))
