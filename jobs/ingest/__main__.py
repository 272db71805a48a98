"""``python -m jobs.ingest``: the `pulse ingest` command (cluster.top.commands), for `ray job submit`."""

from __future__ import annotations

from cluster.top.commands.ingest import ingest
from cluster.top.entry import from_shell, run_command


def main(argv: list[str] | None = None) -> int:
    return run_command(ingest, argv, prog_name="python -m jobs.ingest")


if __name__ == "__main__":
    raise SystemExit(from_shell(main))
