"""``python -m jobs.collect [--source NAME ...] [--force] [--loop]``: collect the due sources.

Each source is collected when its interval has passed since its last complete collection (``--force``:
now). ``--loop`` keeps running and collects every source at its interval.
"""

from __future__ import annotations

import argparse
import sys

from cluster.ground.runtime import drop_ray_core_noise
from cluster.ground.settings import Settings
from cluster.top.entry import run_job
from cluster.top.job_configs import collect_config
from cluster.top.targets import choose_database, choose_ray, using_line
from jobs.collect.schedule import collect_loop, collect_once


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jobs.collect", description=__doc__)
    p.add_argument("--source", action="append", default=[], help="collect only this source (repeatable)")
    p.add_argument("--force", action="store_true", help="collect now even if the interval has not passed")
    p.add_argument("--loop", action="store_true", help="keep collecting each source at its interval")
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    return p


def run(args: argparse.Namespace, settings: Settings) -> int:
    db = choose_database(settings)
    ray_target = choose_ray(settings)
    sys.stderr.write(using_line(db, ray_target) + "\n")
    cfg = collect_config(
        settings, db.url, sources=tuple(args.source), force=args.force, progress=not args.no_progress
    )
    ray_target.join(settings)
    if args.loop:
        collect_loop(cfg, max_sleep_s=settings.collect.loop_interval_s)
    else:
        collect_once(cfg)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_job(parser(), run, argv)


if __name__ == "__main__":
    drop_ray_core_noise()
    raise SystemExit(main())
