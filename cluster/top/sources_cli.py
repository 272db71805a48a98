"""`pulse sources add|list|remove|show`: managing the sources the collect job reads."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table

from jobs.collect.sources import SOURCE_KINDS, make_source_spec
from storage.database import make_engine, make_session_factory, session_scope
from storage.frontier import RunRepository
from storage.sources import SourceRepository, SourceRow


def add_parser(sub: Any) -> None:
    p = sub.add_parser("sources", help="manage sources: feeds, sitemaps, pages, sites, local files")
    ssub = p.add_subparsers(dest="sources_command", required=True, metavar="ACTION")
    add = ssub.add_parser("add", help="register a source")
    add.add_argument("name", help="unique name, e.g. bbc-world")
    add.add_argument("kind", choices=SOURCE_KINDS, help="what the URI points at")
    add.add_argument("uri", help="http(s) URL, or a local file or folder for kind 'files'")
    add.add_argument("--language", help="language tag of its documents (skips detection), e.g. ar")
    add.add_argument("--category", help="category stored with its documents")
    add.add_argument("--interval", type=int, default=3600, help="seconds between collections (default 3600)")
    add.add_argument("--max-items", type=int, help="pages taken from each listing at most")
    add.add_argument(
        "--pattern",
        action="append",
        default=[],
        help="regular expression a page URL must match (repeatable; any one suffices)",
    )
    ssub.add_parser("list", help="list sources")
    show = ssub.add_parser("show", help="one source with its frontier and recent runs")
    show.add_argument("name")
    remove = ssub.add_parser("remove", help="delete a source and its frontier (its documents stay)")
    remove.add_argument("name")


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


def run(args: argparse.Namespace, database_url: str, console: Console) -> int:
    engine = make_engine(database_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            repo = SourceRepository(session)
            if args.sources_command == "add":
                spec = make_source_spec(
                    name=args.name,
                    kind=args.kind,
                    uri=args.uri,
                    language=args.language,
                    category=args.category,
                    interval_s=args.interval,
                    max_items=args.max_items,
                    url_patterns=args.pattern,
                )
                row = repo.add(**asdict(spec))
                console.print(
                    f"added source {row.name} (id {row.id}, {row.kind} {row.uri}); `pulse collect` fetches it"
                )
            elif args.sources_command == "list":
                table = Table("id", "name", "kind", "uri", "every", "last collected")
                for row in repo.all():
                    table.add_row(
                        str(row.id),
                        row.name,
                        row.kind,
                        row.uri or "",
                        f"{row.interval_s} s",
                        row.last_collected_at.isoformat(timespec="seconds")
                        if row.last_collected_at
                        else "never",
                    )
                console.print(table)
            elif args.sources_command == "show":
                row = repo.get(args.name)
                info = _row_dict(row) | repo.stats(row.id)
                info["recent_runs"] = [
                    {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
                    for r in RunRepository(session).last(3)
                ]
                console.print_json(json.dumps(info, default=str))
            elif args.sources_command == "remove":
                repo.remove(args.name)
                console.print(f"removed source {args.name}; its documents are kept")
    finally:
        engine.dispose()
    return 0
