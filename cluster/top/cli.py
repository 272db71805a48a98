"""The `pulse` command: one console script, a click group of subcommands.

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
pulse trends    the stories the trend clusterers found, trendiest first (a table, or --json)
pulse recluster recompute stories and topics on the cluster (a Ray job; python -m jobs.recluster)
pulse profiles  rebuild the readers' profiles from all stored events (a Ray job; python -m jobs.profiles)
pulse reindex   rebuild the vector index shards and their snapshots (a Ray job; python -m jobs.reindex)
pulse backfill  load a historical dump (a path or URI) and embed it (a Ray job; python -m jobs.backfill)
pulse submit    submit a job (collect, embed, recluster, reindex, backfill, profiles) to Ray's job server
pulse jobs      list, read (logs) and stop the jobs on Ray's job server
pulse serve-config  generate serve_apps/serve_config.yaml (for `serve deploy`) from the app builders
pulse backup    back up database + storage to a folder or S3 URI (safe while running); `pulse restore SRC`
pulse schedules scheduled jobs (collect, nightly re-cluster, embed after activation, backup): list, pause...

The job commands (ingest, embed, collect) live in cluster.top.commands, one module each; ``python -m
jobs.<name>`` runs the same command object. Every command except `up`, `down` and `status` first says on
stderr which database (and Ray) it uses: the one set (PULSE_DATABASE__URL, PULSE_RAY__ADDRESS), else the
one `pulse up` recorded in <PULSE_VAR_DIR>/platform.json, else the default choice (a server on
127.0.0.1:5432, else the embedded one; a local Ray for the command).
"""

from __future__ import annotations

import click

from cluster.top.backup_cli import backup, restore
from cluster.top.cms_cli import cms
from cluster.top.commands.backfill import backfill
from cluster.top.commands.collect import collect
from cluster.top.commands.embed import embed
from cluster.top.commands.env import CommandEnv, pass_env
from cluster.top.commands.ingest import ingest
from cluster.top.commands.profiles import profiles
from cluster.top.commands.recluster import recluster
from cluster.top.commands.reindex import reindex
from cluster.top.entry import InOrderGroup, from_shell, run_command, user_error
from cluster.top.jobs_cli import jobs, submit
from cluster.top.models_cli import models
from cluster.top.platform import PlatformError, down, status, up
from cluster.top.schedules_cli import schedules
from cluster.top.serve_build import serve_config_command
from cluster.top.sources_cli import sources
from cluster.top.trends_cli import trends


@click.group("pulse", cls=InOrderGroup)
def pulse() -> None:
    """Pulse: trend intelligence and content platform on Ray.

    Every command except up, down and status first says on stderr which database (and Ray) it uses: the
    one set (PULSE_DATABASE__URL, PULSE_RAY__ADDRESS), else the one `pulse up` recorded in
    <PULSE_VAR_DIR>/platform.json, else the default choice (a server on 127.0.0.1:5432, else the
    embedded one; a local Ray for the command).
    """


@pulse.command("up", short_help="start the platform and return once the API answers")
@click.option("--no-sample", is_flag=True, help="do not ingest the bundled sample corpus")
@pass_env
def up_command(env: CommandEnv, *, no_sample: bool) -> int:
    """Start local PostgreSQL (if needed) and Ray, migrate, ingest the sample corpus, embed, load the
    index and start Serve; return once the API answers."""
    try:
        up(env.settings, env.console, ingest_sample=not no_sample)
    except PlatformError as exc:
        return user_error(exc)
    return 0


@pulse.command("down", short_help="stop what `pulse up` started; data is kept")
@pass_env
def down_command(env: CommandEnv) -> int:
    """Stop what `pulse up` started (Serve, the index actors, the Ray node and embedded PostgreSQL it
    started); data is kept."""
    down(env.settings, env.console)
    return 0


@pulse.command("status", short_help="show database, model, Ray and API state")
@pass_env
def status_command(env: CommandEnv) -> int:
    """Show the database, model, Ray and API state."""
    return status(env.settings, env.console)


@pulse.command("migrate", short_help="apply database migrations")
@pass_env
def migrate(env: CommandEnv) -> int:
    """Bring the database schema to the latest revision."""
    db = env.database(migrate=True)
    env.console.print(f"migrated {db.describe()}")
    return 0


for _command in (
    ingest,
    embed,
    models,
    sources,
    collect,
    cms,
    trends,
    recluster,
    profiles,
    reindex,
    backfill,
    submit,
    jobs,
    backup,
    restore,
    serve_config_command,
    schedules,
):
    pulse.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    """Run `pulse ARGV...` (default: the process's arguments); the exit code (cluster.top.entry)."""
    return run_command(pulse, argv, prog_name="pulse")


def console_main() -> int:
    """The `pulse` console script: ``main`` with Ray's C++ noise kept off the terminal."""
    return from_shell(main)


if __name__ == "__main__":
    raise SystemExit(console_main())
