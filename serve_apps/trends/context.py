"""What every trends route needs, built once per replica: the arguments, the database sessions, page sizes
and cursors. ``TrendsContext`` is made by the deployment's constructor (``serve_apps.trends.app``) and
hung on its FastAPI app as ``app.state.trends``; routes receive it through the ``Trends`` dependency.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from serve_apps.cursors import fingerprint
from serve_apps.trends.args import MAX_PAGE_SIZE, TrendsArgs
from serve_apps.trends.params import decode_after, encode_after
from storage.database import make_async_engine
from storage.trend_queries import After, Page

T = TypeVar("T")
#: Reads one page of a listing: ``read(session, after, limit)``.
PageReader = Callable[[AsyncSession, After | None, int], Awaitable[Page[T]]]

#: Rows per page a request asks for (the application's ``page_size`` when absent).
Limit = Annotated[int | None, Query(ge=1, le=MAX_PAGE_SIZE, description=f"Rows per page (1-{MAX_PAGE_SIZE})")]


class Listing:
    """One listing request: its page size, its fingerprint (what the cursor is bound to) and position."""

    def __init__(self, limit: int, sort: str, digest: str, after: After | None) -> None:
        self.limit, self.sort, self.digest, self.after = limit, sort, digest, after

    def next_cursor(self, page: Page[Any]) -> str | None:
        """The cursor of the page after ``page``, or ``None`` on the last."""
        return encode_after(page.next_after, self.digest) if page.next_after is not None else None


class TrendsContext:
    """One replica's trends API: its arguments and database sessions."""

    def __init__(self, args: TrendsArgs) -> None:
        self.args = args
        self.engine = make_async_engine(args.database_url, pool_size=args.pool_size)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    def listing(self, kind: str, query: object, sort: str, limit: int | None, cursor: str | None) -> Listing:
        """The listing of ``kind`` (stories, topics, documents of a story) that ``query`` (its filters)
        asks, sorted by ``sort``: ``limit`` or the default page size, and the position ``cursor`` holds
        (422 when the cursor is malformed or belongs to another listing)."""
        size = limit or self.args.page_size
        digest = fingerprint(kind, query, sort, size)
        after = decode_after(cursor, digest, sort) if cursor is not None else None
        return Listing(size, sort, digest, after)


async def get_trends(request: Request) -> TrendsContext:
    """The replica's context, hung on its app by ``serve_apps.trends.app.build_api``."""
    trends: TrendsContext = request.app.state.trends
    return trends


Trends = Annotated[TrendsContext, Depends(get_trends)]


async def read_page(
    trends: TrendsContext,
    kind: str,
    query: object,
    sort: str,
    limit: int | None,
    cursor: str | None,
    read: PageReader[T],
) -> tuple[Page[T], str | None]:
    """One page of the listing ``trends.listing`` describes, read by ``read``, and the next page's cursor."""
    listing = trends.listing(kind, query, sort, limit, cursor)
    async with trends.sessions() as session:
        page = await read(session, listing.after, listing.limit)
    return page, listing.next_cursor(page)
