"""``python -m jobs.ingest PATH [--source NAME]``: load a JSONL or CSV file of documents."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cluster.ground.runtime import drop_ray_core_noise
from cluster.ground.settings import Settings
from cluster.top.entry import run_job
from cluster.top.targets import choose_database, using_line
from jobs.ingest.loader import ingest_file


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jobs.ingest", description=__doc__)
    p.add_argument("path", type=Path, help="JSONL or CSV file: id, title, text, url, published_at, metadata")
    p.add_argument(
        "--source",
        help="source name of the documents (default: the file name without extension, lower-cased)",
    )
    p.add_argument("--batch-size", type=int, default=1000, help="records per upsert transaction")
    return p


def run(args: argparse.Namespace, settings: Settings) -> int:
    db = choose_database(settings)
    sys.stderr.write(using_line(db) + "\n")
    summary = ingest_file(args.path, database_url=db.url, source_name=args.source, batch_size=args.batch_size)
    sys.stdout.write(summary.line() + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_job(parser(), run, argv)


if __name__ == "__main__":
    drop_ray_core_noise()
    raise SystemExit(main())
