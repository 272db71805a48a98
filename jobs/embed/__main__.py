"""``python -m jobs.embed [--full]``: embed documents that lack a current vector for the active model."""

from __future__ import annotations

import argparse
import sys

from cluster.ground.runtime import drop_ray_core_noise
from cluster.ground.settings import Settings
from cluster.top.entry import run_job
from cluster.top.job_configs import embed_config, embed_target
from cluster.top.targets import choose_database, choose_ray, using_line
from jobs.embed.notify import notify_index
from jobs.embed.pipeline import run_embed


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jobs.embed", description=__doc__)
    p.add_argument(
        "--full", action="store_true", help="re-embed every document, not only new or changed ones"
    )
    p.add_argument("--model", help="entry id, model name or local folder (default: the index's active entry)")
    p.add_argument("--input", help="read documents (id, content_hash, title, text) from Parquet instead")
    p.add_argument("--max-actors", type=int, help="largest embedding actor pool (default: one per CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    return p


def run(args: argparse.Namespace, settings: Settings) -> int:
    db = choose_database(settings)
    ray_target = choose_ray(settings)
    sys.stderr.write(using_line(db, ray_target) + "\n")
    cfg = embed_config(
        settings,
        db.url,
        full=args.full,
        max_actors=args.max_actors,
        input_path=args.input,
        progress=not args.no_progress,
        **embed_target(args.model, db.url, settings),
    )
    ray_target.join(settings)
    summary = run_embed(cfg)
    notify_index(summary, settings.ray.namespace)
    sys.stdout.write(summary.line() + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_job(parser(), run, argv)


if __name__ == "__main__":
    drop_ray_core_noise()
    raise SystemExit(main())
