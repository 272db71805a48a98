"""`pulse ingest` (and ``python -m jobs.ingest``): load a JSONL or CSV file of documents."""

from __future__ import annotations

from pathlib import Path

import click

from cluster.top.commands.embed import embed_step
from cluster.top.commands.env import CommandEnv, pass_env
from jobs.ingest.loader import ingest_file


@click.command("ingest", short_help="load a JSONL or CSV file of documents")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--source", help="source name of the documents (default: the file name without extension, lower-cased)"
)
@click.option(
    "--batch-size", type=int, default=1000, show_default=True, help="records per upsert transaction"
)
@click.option("--embed", is_flag=True, help="embed the new documents right after")
@click.option("--no-progress", is_flag=True, help="no progress display (of --embed)")
@pass_env
def ingest(
    env: CommandEnv, *, path: Path, source: str | None, batch_size: int, embed: bool, no_progress: bool
) -> int:
    """Load PATH, a JSONL or CSV file of documents (id, title, text, url, published_at, metadata).

    Records that cannot be read are quarantined; then `pulse embed`, or --embed, embeds the new documents.
    """
    db, ray_target = env.database_and_ray() if embed else (env.database(), None)
    summary = ingest_file(path, database_url=db.url, source_name=source, batch_size=batch_size)
    env.console.print(summary.line(), markup=False)
    if ray_target is not None:
        embed_step(env, db.url, ray_target, progress=not no_progress)
    return 0
