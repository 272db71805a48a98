"""`pulse embed` (and ``python -m jobs.embed``): embed the documents lacking a current vector for an entry.

The embed step here is the one every command that embeds runs: `pulse embed`, `pulse ingest --embed` and
`pulse collect --embed`.
"""

from __future__ import annotations

import click

from cluster.top.commands.env import CommandEnv, pass_env
from cluster.top.job_configs import embed_config, embed_target
from cluster.top.targets import RayChoice
from jobs.embed.notify import notify_index
from jobs.embed.pipeline import EmbedSummary, run_embed

#: The ``--no-progress`` flag of the commands that run a job with a progress display.
no_progress_option = click.option("--no-progress", is_flag=True, help="no progress display")


def embed_step(
    env: CommandEnv, database_url: str, ray_target: RayChoice, **overrides: object
) -> EmbedSummary:
    """Embed what is pending: the job's configuration (``overrides`` that are not None win), join Ray, run,
    tell the serving index, print the summary line; the summary."""
    cfg = embed_config(env.settings, database_url, **overrides)
    ray_target.join(env.settings)
    summary = run_embed(cfg)
    notify_index(summary, env.settings.ray.namespace)
    env.console.print(summary.line(), markup=False)
    return summary


@click.command("embed", short_help="embed documents lacking a vector for the active model")
@click.option("--full", is_flag=True, help="re-embed every document, not only new or changed ones")
@click.option("--model", help="entry id, model name or local folder (default: the index's active entry)")
@click.option(
    "--input",
    "input_path",
    metavar="PATH",
    help="read documents (id, content_hash, title, text) from this Parquet file or folder instead",
)
@click.option("--max-actors", type=int, help="largest embedding actor pool (default: one per CPU)")
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=0.0,
    metavar="SECONDS",
    help="wait up to SECONDS for another embedding run of the model to finish (default 0: refuse at once)",
)
@no_progress_option
@pass_env
def embed(
    env: CommandEnv,
    *,
    full: bool,
    model: str | None,
    input_path: str | None,
    max_actors: int | None,
    wait_s: float,
    no_progress: bool,
) -> int:
    """Embed the documents that lack a current vector for the index's active entry (or --model)."""
    db, ray_target = env.database_and_ray()
    embed_step(
        env,
        db.url,
        ray_target,
        full=full,
        max_actors=max_actors,
        input_path=input_path,
        progress=not no_progress,
        lock_wait_s=wait_s,
        **embed_target(model, db.url, env.settings),
    )
    return 0
