"""`pulse reindex` (and ``python -m jobs.reindex``): rebuild a model entry's index shards and snapshots from
the stored vector files (cluster.top.reindex_job)."""

from __future__ import annotations

from dataclasses import replace

import click

from cluster.top.commands.env import CommandEnv, pass_env
from cluster.top.reindex_job import run_reindex, snapshot_levels
from cluster.top.serve_config import search_app_args
from serve_apps.search.args import SearchArgs
from storage.database import make_engine, make_session_factory, session_scope
from storage.model_registry import ModelRegistry, ModelRow
from storage.vector_source import LEVELS


def _entry(database_url: str, model_id: int | None, index_name: str) -> ModelRow:
    engine = make_engine(database_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            registry = ModelRegistry(session)
            entry = registry.get(model_id) if model_id is not None else registry.active(index_name)
    finally:
        engine.dispose()
    if entry is None:
        raise click.ClickException(
            f"index {index_name!r} has no active model: run `pulse embed` first, or give --model ID"
        )
    return entry


@click.command("reindex", short_help="rebuild the index shards and their snapshots (a Ray job)")
@click.option("--model", "model_id", type=int, help="model entry id (default: the index's active entry)")
@click.option(
    "--level",
    "levels",
    type=click.Choice(LEVELS),
    multiple=True,
    help="index level to rebuild (repeatable; default: document, and chunk when it has snapshots)",
)
@click.option("--shards", type=int, help="shard count (default: PULSE_INDEX__SHARDS)")
@click.option("--force", is_flag=True, help="rebuild shards whose snapshot is already up to date too")
@click.option(
    "--restart", is_flag=True, help="restart the running shard actors rebuilt, so they load the new snapshots"
)
@click.option("--num-cpus", type=float, default=1.0, show_default=True, help="CPUs each shard task reserves")
@pass_env
def reindex(
    env: CommandEnv,
    *,
    model_id: int | None,
    levels: tuple[str, ...],
    shards: int | None,
    force: bool,
    restart: bool,
    num_cpus: float,
) -> int:
    """Rebuild each index shard of a model entry from the committed vector files and write its snapshot,
    one Ray task per shard. Shards already up to date are skipped, so a rerun is harmless and a killed run
    resumes."""
    if shards is not None and shards < 1:
        raise click.BadParameter("must be 1 or more", param_hint="--shards")
    db, ray_target = env.database_and_ray()
    entry = _entry(db.url, model_id, env.settings.embed.index_name)
    args = SearchArgs(**search_app_args(env.settings, db.url))
    count = shards or env.settings.index.shards
    chosen = list(levels) or snapshot_levels(args.storage_uri, entry.id)
    configs = [
        replace(args.shard_config(entry, level), shard=shard, shards=count)
        for level in chosen
        for shard in range(count)
    ]
    env.notices.print(
        f"reindex: model {entry.id} ({entry.name}), {', '.join(chosen)} level(s), {count} shard(s) each",
        markup=False,
    )
    ray_target.join(env.settings)
    summary = run_reindex(
        configs,
        force=force,
        restart=restart,
        num_cpus=num_cpus,
        placement_timeout_s=env.settings.ray.placement_timeout_s,
    )
    for result in summary.shards:
        env.console.print(result.line(), markup=False)
    env.console.print(summary.line(), markup=False)
    return 0
