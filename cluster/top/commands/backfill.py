"""`pulse backfill` (and ``python -m jobs.backfill``): load a historical dump, then embed it.

The dump is what `pulse ingest` reads (JSONL or CSV of documents), from a local path or a pyarrow
filesystem URI (``s3://bucket/dumps/2019.jsonl``, ``gs://...``, ``file:///...``), copied first to a local
temporary file of the same name. Loading is the ingest's (``jobs.ingest.loader.ingest_file``: upserts by
the documents' natural keys) and embedding is `pulse embed`'s step (only documents lacking a current
vector), so rerunning a backfill, or running it again after it was stopped, only does what is left.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path, PurePosixPath

import click
import pyarrow.fs as pafs

from cluster.top.commands.embed import embed_step, no_progress_option
from cluster.top.commands.env import CommandEnv, pass_env
from cluster.top.job_configs import embed_target
from jobs.ingest.loader import ingest_file

#: Bytes per read when copying a dump from a filesystem URI.
COPY_CHUNK = 8 * 1024 * 1024


def is_uri(location: str) -> bool:
    """Whether ``location`` is a filesystem URI (``scheme://...``) rather than a local path."""
    scheme, sep, _ = location.partition("://")
    return bool(sep) and scheme.isalnum() and len(scheme) > 1


def fetch_dump(uri: str, folder: Path) -> Path:
    """Copy the file at a pyarrow filesystem URI into ``folder``, under its own name; the local path."""
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        info = fs.get_file_info(path)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot open {uri}: {exc}") from exc
    if info.type != pafs.FileType.File:
        raise click.ClickException(f"{uri} is not a file (a JSONL or CSV dump): check the URI")
    local = folder / PurePosixPath(path).name
    with fs.open_input_stream(path) as source, local.open("wb") as sink:
        shutil.copyfileobj(source, sink, COPY_CHUNK)
    return local


@click.command("backfill", short_help="load a historical dump (JSONL/CSV, path or URI), embed it")
@click.option(
    "--file",
    "location",
    required=True,
    metavar="PATH_OR_URI",
    help="the dump: a local JSONL or CSV file, or a URI such as s3://bucket/dumps/2019.jsonl",
)
@click.option("--source", help="source name of the documents (default: the file name without extension)")
@click.option(
    "--batch-size", type=int, default=1000, show_default=True, help="records per upsert transaction"
)
@click.option("--embed/--no-embed", default=True, show_default=True, help="embed the documents after loading")
@no_progress_option
@pass_env
def backfill(
    env: CommandEnv,
    *,
    location: str,
    source: str | None,
    batch_size: int,
    embed: bool,
    no_progress: bool,
) -> int:
    """Load a historical dump of documents (as `pulse ingest` reads them) from a path or a storage URI,
    then embed what lacks a vector. Idempotent: documents are upserted by their natural keys and only
    documents without a current vector are embedded."""
    db, ray_target = env.database_and_ray() if embed else (env.database(), None)
    with tempfile.TemporaryDirectory(prefix="pulse-backfill-") as scratch:
        if is_uri(location):
            env.notices.print(f"backfill: copying {location}...", markup=False)
            path = fetch_dump(location, Path(scratch))
        else:
            path = Path(location)
            if not path.is_file():
                raise click.ClickException(f"{location} is not a file: give a JSONL or CSV dump, or a URI")
        loaded = ingest_file(path, database_url=db.url, source_name=source, batch_size=batch_size)
    env.console.print(loaded.line(), markup=False)
    embedded = 0
    if ray_target is not None:
        summary = embed_step(
            env, db.url, ray_target, progress=not no_progress, **embed_target(None, db.url, env.settings)
        )
        embedded = summary.embedded
    c = loaded.counts
    env.console.print(
        f"backfill {location}: {c.inserted} new, {c.updated} updated, {c.unchanged} unchanged, "
        f"{loaded.rejected} rejected; "
        + (f"{embedded} embedded" if ray_target is not None else "not embedded (--no-embed)"),
        markup=False,
    )
    return 0
