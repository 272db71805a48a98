"""`pulse sources add|list|remove|show`: managing the sources the collect job reads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import click
from rich.table import Table
from sqlalchemy.orm import Session

from cluster.top.commands.env import CommandEnv, pass_env
from cluster.top.entry import InOrderGroup
from jobs.collect.sources import SOURCE_KINDS, make_source_spec
from storage.database import make_engine, make_session_factory, session_scope
from storage.frontier import RunRepository
from storage.sources import SourceRepository, SourceRow


def _row_dict(row: SourceRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "kind": row.kind,
        "uri": row.uri,
        "enabled": row.enabled,
        "language": row.language,
        "category": row.category,
        "interval_s": row.interval_s,
        "max_items": row.max_items,
        "url_patterns": list(row.url_patterns),
        "last_collected_at": row.last_collected_at.isoformat() if row.last_collected_at else None,
    }


@contextmanager
def _sources(env: CommandEnv) -> Iterator[tuple[SourceRepository, Session]]:
    """The source repository (and its session, committed at the end) on the command's database."""
    database_url = env.database().url
    engine = make_engine(database_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            yield SourceRepository(session), session
    finally:
        engine.dispose()


@click.group(
    "sources", cls=InOrderGroup, short_help="manage sources: feeds, sitemaps, pages, sites, local files"
)
def sources() -> None:
    """Manage the sources the collector reads (`pulse collect`): feeds, sitemaps, pages, sites, local
    files."""


@sources.command(
    "add",
    short_help="register a source",
    help=f"""Register a source. NAME is unique (e.g. bbc-world); KIND says what URI points at, one of
    {", ".join(SOURCE_KINDS)}; URI is an http(s) URL, or a local file or folder for kind 'files'.""",
)
@click.argument("name")
@click.argument("kind", type=click.Choice(SOURCE_KINDS), metavar="KIND")
@click.argument("uri")
@click.option("--language", help="language tag of its documents (skips detection), e.g. ar")
@click.option("--category", help="category stored with its documents")
@click.option("--interval", type=int, default=3600, help="seconds between collections (default 3600)")
@click.option("--max-items", type=int, help="pages taken from each listing at most")
@click.option(
    "--pattern",
    "patterns",
    multiple=True,
    help="regular expression a page URL must match (repeatable; any one suffices)",
)
@pass_env
def add(
    env: CommandEnv,
    *,
    name: str,
    kind: str,
    uri: str,
    language: str | None,
    category: str | None,
    interval: int,
    max_items: int | None,
    patterns: tuple[str, ...],
) -> int:
    with _sources(env) as (repo, _):
        spec = make_source_spec(
            name=name,
            kind=kind,
            uri=uri,
            language=language,
            category=category,
            interval_s=interval,
            max_items=max_items,
            url_patterns=list(patterns),
        )
        row = repo.add(**asdict(spec))
        env.console.print(
            f"added source {row.name} (id {row.id}, {row.kind} {row.uri}); `pulse collect` fetches it"
        )
    return 0


@sources.command("list", short_help="list sources")
@pass_env
def list_sources(env: CommandEnv) -> int:
    """List the sources with their interval and last collection."""
    with _sources(env) as (repo, _):
        table = Table("id", "name", "kind", "uri", "every", "last collected")
        for row in repo.all():
            table.add_row(
                str(row.id),
                row.name,
                row.kind,
                row.uri or "",
                f"{row.interval_s} s",
                row.last_collected_at.isoformat(timespec="seconds") if row.last_collected_at else "never",
            )
        env.console.print(table)
    return 0


@sources.command("show", short_help="one source with its frontier and recent runs")
@click.argument("name")
@pass_env
def show(env: CommandEnv, *, name: str) -> int:
    """One source with its frontier and recent runs, as JSON."""
    with _sources(env) as (repo, session):
        row = repo.get(name)
        info = _row_dict(row) | repo.stats(row.id)
        info["recent_runs"] = [
            {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
            for r in RunRepository(session).last(3)
        ]
        env.console.print_json(json.dumps(info, default=str))
    return 0


@sources.command("remove", short_help="delete a source and its frontier (its documents stay)")
@click.argument("name")
@pass_env
def remove(env: CommandEnv, *, name: str) -> int:
    """Delete a source and its frontier; its documents stay."""
    with _sources(env) as (repo, _):
        repo.remove(name)
        env.console.print(f"removed source {name}; its documents are kept")
    return 0
