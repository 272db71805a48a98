"""`pulse collect` (and ``python -m jobs.collect``): collect the due sources into documents."""

from __future__ import annotations

import click

from cluster.top.commands.embed import embed_step, no_progress_option
from cluster.top.commands.env import CommandEnv, pass_env
from cluster.top.job_configs import collect_config
from jobs.collect.schedule import collect_loop, collect_once


@click.command("collect", short_help="collect the due sources into documents")
@click.option("--source", "sources", multiple=True, help="collect only this source (repeatable)")
@click.option("--force", is_flag=True, help="collect now even if the interval has not passed")
@click.option("--loop", is_flag=True, help="keep collecting each source at its interval")
@click.option("--embed", is_flag=True, help="embed the new documents after collecting (not with --loop)")
@no_progress_option
@pass_env
def collect(
    env: CommandEnv, *, sources: tuple[str, ...], force: bool, loop: bool, embed: bool, no_progress: bool
) -> int:
    """Collect the due sources (feeds, sitemaps, pages, sites, local files) into documents.

    Each source is collected when its interval has passed since its last complete collection (--force:
    now). --loop keeps running and collects every source at its interval.
    """
    db, ray_target = env.database_and_ray()
    cfg = collect_config(env.settings, db.url, sources=sources, force=force, progress=not no_progress)
    ray_target.join(env.settings)
    if loop:
        collect_loop(cfg, max_sleep_s=env.settings.collect.loop_interval_s)
        return 0
    collect_once(cfg)
    if embed:
        embed_step(env, db.url, ray_target, progress=not no_progress)
    return 0
