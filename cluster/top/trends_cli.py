"""`pulse trends`: the stories the trend clusterers found, as a table (or JSON), read from PostgreSQL through
the same queries as ``GET /v1/trends`` (``storage.trend_queries``), not over HTTP."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, get_args

import click
from rich.table import Table
from rich.text import Text
from sqlalchemy.ext.asyncio import AsyncSession

from cluster.top.commands.env import CommandEnv, pass_env
from storage.database import make_async_engine
from storage.trend_queries import STATES, Page, StoryFilter, StoryRow, StorySort, list_stories

#: Keywords shown after a story's label.
SHOWN_KEYWORDS = 5
#: Most stories one command lists.
MAX_LIMIT = 1000


class IsoTime(click.ParamType[datetime]):
    """An ISO date or date-time (UTC when it names no offset)."""

    name = "date"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO date or date-time (2026-05-01, 2026-05-01T12:00+02:00)")
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


async def _stories(database_url: str, flt: StoryFilter, sort: StorySort, limit: int) -> Page[StoryRow]:
    engine = make_async_engine(database_url, pool_size=1)
    try:
        async with AsyncSession(engine) as session:
            return await list_stories(session, filters=flt, sort=sort, after=None, limit=limit)
    finally:
        await engine.dispose()


def _time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value is not None else ""


def _label(story: StoryRow) -> Text:
    """The label and first keywords, as plain text (a label may hold brackets rich would read as markup)."""
    keywords = ", ".join(story.keywords[:SHOWN_KEYWORDS])
    return Text(f"{story.label} ({keywords})" if keywords else story.label)


def _json(story: StoryRow) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(story).items()}


@click.command("trends", short_help="the stories the trend clusterers found, trendiest first")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(STATES),
    help="only stories in this lifecycle state (repeat for several)",
)
@click.option("--since", type=IsoTime(), help="only stories last seen at or after this date (ISO, UTC)")
@click.option("--until", type=IsoTime(), help="only stories first seen at or before this date (ISO, UTC)")
@click.option("--language", help="only stories in this language (en, ar...)")
@click.option(
    "--sort",
    type=click.Choice(get_args(StorySort)),
    default="score",
    show_default=True,
    help="order, descending (recency: last seen)",
)
@click.option(
    "--limit", type=click.IntRange(1, MAX_LIMIT), help="stories shown (default PULSE_TRENDS__PAGE_SIZE)"
)
@click.option("--json", "as_json", is_flag=True, help="print JSON lines, one story each, instead of a table")
@pass_env
def trends(
    env: CommandEnv,
    *,
    states: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    language: str | None,
    sort: StorySort,
    limit: int | None,
    as_json: bool,
) -> int:
    """List the active stories the trend clusterers found, trendiest first (by --sort), with their state,
    score, volume, size, first and last document time, and label (keywords)."""
    if since is not None and until is not None and since > until:
        raise click.BadParameter("--since must not be later than --until", param_hint="--since")
    flt = StoryFilter(states=states, language=language, since=since, until=until)
    count = limit or env.settings.trends.page_size
    page = asyncio.run(_stories(env.database().url, flt, sort, count))
    if as_json:
        for story in page.items:
            env.console.print(json.dumps(_json(story), ensure_ascii=False), markup=False, highlight=False)
        return 0
    table = Table("id", "state", "score", "volume", "size", "first seen", "last seen", "label (keywords)")
    for story in page.items:
        table.add_row(
            str(story.id),
            story.state,
            f"{story.score:.3f}",
            str(story.volume),
            str(story.size),
            _time(story.first_seen),
            _time(story.last_seen),
            _label(story),
        )
    env.console.print(table)
    more = " (more: raise --limit)" if page.next_after is not None else ""
    env.console.print(f"{len(page.items)} stories by {sort}{more}", markup=False)
    return 0
