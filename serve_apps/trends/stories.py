"""Routes of the stories application (``/v1/trends``): a page of stories, one story whole, its documents.

The list route's path is ``""`` (the application is mounted at ``/v1/trends``, so ``GET /v1/trends``
reaches it without a redirect), and ``"/"`` too, outside the OpenAPI document.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import Depends, FastAPI, Query

from serve_apps.errors import NotFound, error_responses
from serve_apps.inputs import Id
from serve_apps.trends.context import Limit, Trends, read_page
from serve_apps.trends.params import Cursor, GranularityParam, story_filter
from serve_apps.trends.schemas import (
    StoryDetailOut,
    StoryDocumentOut,
    StoryDocumentPageOut,
    StoryListedOut,
    StoryPageOut,
)
from serve_apps.trends.series import marked_series
from storage.trend_queries import (
    StoryFilter,
    StorySort,
    get_story,
    list_stories,
    story_documents,
    story_exists,
)


def _missing(story_id: int) -> NotFound:
    return NotFound(f"no story {story_id}; GET /v1/trends lists the stories", code="story_not_found")


def add_routes(api: FastAPI) -> None:
    """The stories routes, on ``api``."""

    @api.get("", response_model=StoryPageOut, summary="Stories, trendiest first, with filters and pages")
    async def stories(
        trends: Trends,
        flt: Annotated[StoryFilter, Depends(story_filter)],
        sort: Annotated[
            StorySort,
            Query(description="score (default), volume, velocity or recency (last seen); all descending"),
        ] = "score",
        limit: Limit = None,
        cursor: Cursor = None,
    ) -> StoryPageOut:
        page, next_cursor = await read_page(
            trends,
            "stories",
            flt,
            sort,
            limit,
            cursor,
            lambda session, after, size: list_stories(
                session, filters=flt, sort=sort, after=after, limit=size
            ),
        )
        return StoryPageOut(
            items=[StoryListedOut.model_validate(s) for s in page.items], next_cursor=next_cursor
        )

    # With a trailing slash too (clients that join the prefix and "/", OpenAPI tools reading the path "").
    api.get("/", response_model=StoryPageOut, include_in_schema=False)(stories)

    @api.get(
        "/{story_id}",
        response_model=StoryDetailOut,
        summary="One story: keywords, summary, representative documents, time series, lineage, topic",
        responses=error_responses(404),
    )
    async def story(trends: Trends, story_id: Id, granularity: GranularityParam = "day") -> StoryDetailOut:
        async with trends.sessions() as session:
            detail = await get_story(session, story_id, granularity=granularity)
        if detail is None:
            raise _missing(story_id)
        return StoryDetailOut.model_validate(
            {
                **asdict(detail),
                **asdict(detail.story),
                "granularity": granularity,
                "series": marked_series(detail.series, granularity),
            },
            from_attributes=True,
        )

    @api.get(
        "/{story_id}/documents",
        response_model=StoryDocumentPageOut,
        summary="A story's documents, newest first, with how each was assigned",
        responses=error_responses(404),
    )
    async def documents(
        trends: Trends, story_id: Id, limit: Limit = None, cursor: Cursor = None
    ) -> StoryDocumentPageOut:
        listing = trends.listing("documents", story_id, "time", limit, cursor)
        async with trends.sessions() as session:
            if not await story_exists(session, story_id):
                raise _missing(story_id)
            page = await story_documents(session, story_id, after=listing.after, limit=listing.limit)
        items = [StoryDocumentOut.model_validate({**asdict(d.document), **asdict(d)}) for d in page.items]
        return StoryDocumentPageOut(story_id=story_id, items=items, next_cursor=listing.next_cursor(page))
