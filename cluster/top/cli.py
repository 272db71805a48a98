"""The `pulse` command: one console script dispatching subcommands.

pulse up        start local PostgreSQL (if needed) and Ray, migrate, ingest the sample corpus,
                embed, load the index, start Serve; return once the API answers
pulse down      stop what `pulse up` started (data kept)
pulse status    database, model, Ray and API state
pulse migrate   bring the database schema to the latest revision
pulse ingest    load a JSONL or CSV file of documents (then `pulse embed`, or --embed)
pulse embed     embed documents lacking a current vector for the active model (or --model)
pulse models    the embedding model registry: list, add, activate (background re-embed + switch)
pulse sources   add, list, show or remove the sources the collector reads
pulse collect   fetch the due sources (feeds, sitemaps, pages, sites, local files) into documents
pulse cms       CMS operations from a shell: `pulse cms admin` restores an admin (new password, audited)

Every command except `up` and `down` first says on stderr which database (and Ray) it uses: the one set
(PULSE_DATABASE__URL, PULSE_RAY__ADDRESS), else the one `pulse up` recorded in <PULSE_VAR_DIR>/platform.json,
else the default choice (a server on 127.0.0.1:5432, else the embedded one; a local Ray for the command).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from cluster.ground.runtime import configure_logging, drop_ray_core_noise
from cluster.ground.settings import Settings, get_settings
from cluster.top import cms_cli, models_cli, sources_cli
from cluster.top.database import DatabaseChoice
from cluster.top.entry import EXIT_USER_ERROR, run_entry
from cluster.top.job_configs import collect_config, embed_config, embed_target
from cluster.top.platform import PlatformError, down, status, up
from cluster.top.targets import RayChoice, choose_database, choose_ray, using_line
from jobs.collect.schedule import collect_loop, collect_once
from jobs.embed.notify import notify_index
from jobs.embed.pipeline import run_embed
from jobs.ingest.loader import ingest_file


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pulse",
        description="Pulse: trend intelligence and content platform on Ray.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p_up = sub.add_parser("up", help="start the platform and return once the API answers")
    p_up.add_argument("--no-sample", action="store_true", help="do not ingest the bundled sample corpus")
    sub.add_parser("down", help="stop what `pulse up` started; data is kept")
    sub.add_parser("status", help="show database, model, Ray and API state")
    sub.add_parser("migrate", help="apply database migrations")
    p_ingest = sub.add_parser("ingest", help="load a JSONL or CSV file of documents")
    p_ingest.add_argument(
        "path", type=Path, help="JSONL or CSV: id, title, text, url, published_at, metadata"
    )
    p_ingest.add_argument(
        "--source", help="source name (default: the file's name without extension, lower-cased)"
    )
    p_ingest.add_argument("--embed", action="store_true", help="embed the new documents right after")
    p_embed = sub.add_parser("embed", help="embed documents lacking a vector for the active model")
    p_embed.add_argument("--full", action="store_true", help="re-embed every document")
    p_embed.add_argument("--max-actors", type=int, help="largest embedding actor pool")
    p_embed.add_argument("--model", help="entry id, model name or local folder (default: the active entry)")
    p_embed.add_argument("--input", help="read documents from this Parquet file or folder instead")
    models_cli.add_parser(sub)
    sources_cli.add_parser(sub)
    p_collect = sub.add_parser("collect", help="collect the due sources into documents")
    p_collect.add_argument("--source", action="append", default=[], help="only this source (repeatable)")
    p_collect.add_argument("--force", action="store_true", help="collect now even if not due yet")
    p_collect.add_argument("--loop", action="store_true", help="keep collecting each source at its interval")
    p_collect.add_argument("--embed", action="store_true", help="embed the new documents after collecting")
    cms_cli.add_parser(sub)
    return parser


def _embed(
    settings: Settings, database_url: str, ray_target: RayChoice, console: Console, **overrides: object
) -> None:
    cfg = embed_config(settings, database_url, **overrides)
    ray_target.join(settings)
    summary = run_embed(cfg)
    notify_index(summary, settings.ray.namespace)
    console.print(summary.line())


def console_main() -> int:
    """The `pulse` console script: ``main`` with Ray's C++ noise kept off the terminal."""
    drop_ray_core_noise()
    return main()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level)
    console = Console(highlight=False, soft_wrap=True)
    notices = Console(stderr=True, highlight=False, soft_wrap=True)

    def choose(*, uses_ray: bool = False, migrate: bool = False) -> tuple[DatabaseChoice, RayChoice]:
        """The database and Ray this command uses (cluster.top.targets), said in one line on stderr."""
        db = choose_database(settings, migrate=migrate)
        ray_target = choose_ray(settings)
        notices.print(using_line(db, ray_target if uses_ray else None), markup=False)
        return db, ray_target

    def body() -> int:
        if args.command == "up":
            try:
                up(settings, console, ingest_sample=not args.no_sample)
            except PlatformError as exc:
                sys.stderr.write(f"error: {exc}\n")
                return EXIT_USER_ERROR
            return 0
        if args.command == "down":
            down(settings, console)
            return 0
        if args.command == "status":
            return status(settings, console)
        if args.command == "migrate":
            db, _ = choose(migrate=True)
            console.print(f"migrated {db.describe()}")
            return 0
        if args.command == "ingest":
            db, ray_target = choose(uses_ray=args.embed)
            console.print(ingest_file(args.path, database_url=db.url, source_name=args.source).line())
            if args.embed:
                _embed(settings, db.url, ray_target, console)
            return 0
        if args.command == "embed":
            db, ray_target = choose(uses_ray=True)
            _embed(
                settings,
                db.url,
                ray_target,
                console,
                full=args.full,
                max_actors=args.max_actors,
                input_path=args.input,
                **embed_target(args.model, db.url, settings),
            )
            return 0
        if args.command == "models":
            db, ray_target = choose(uses_ray=args.models_command == "activate")
            return models_cli.run(args, settings, db.url, ray_target, console)
        if args.command == "sources":
            db, _ = choose()
            return sources_cli.run(args, db.url, console)
        if args.command == "cms":
            db, _ = choose()
            return cms_cli.run(args, db.url, console)
        if args.command == "collect":
            db, ray_target = choose(uses_ray=True)
            cfg = collect_config(settings, db.url, sources=tuple(args.source), force=args.force)
            ray_target.join(settings)
            if args.loop:
                collect_loop(cfg, max_sleep_s=settings.collect.loop_interval_s)
                return 0
            collect_once(cfg)
            if args.embed:
                _embed(settings, db.url, ray_target, console)
            return 0
        raise AssertionError(f"unhandled command {args.command}")

    return run_entry(body)


if __name__ == "__main__":
    raise SystemExit(console_main())
