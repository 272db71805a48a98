"""Routes of the topics application (``/v1/topics``): a page of topics, one topic whole, its documents.

The list route's path is ``""`` (the application is mounted at ``/v1/topics``), and ``"/"`` too, outside
the OpenAPI document.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import Depends, FastAPI, Query

from serve_apps.errors import NotFound, error_responses
from serve_apps.inputs import Id
from serve_apps.trends.context import Limit, Trends, read_page
from serve_apps.trends.params import Cursor, GranularityParam, topic_filter
from serve_apps.trends.schemas import (
    TopicDetailOut,
    TopicDocumentOut,
    TopicDocumentPageOut,
    TopicOut,
    TopicPageOut,
)
from serve_apps.trends.series import marked_series
from storage.trend_queries import (
    TopicFilter,
    TopicSort,
    get_topic,
    list_topics,
    topic_documents,
    topic_exists,
)


def _missing(topic_id: int) -> NotFound:
    return NotFound(f"no topic {topic_id}; GET /v1/topics lists the topics", code="topic_not_found")


def add_routes(api: FastAPI) -> None:
    """The topics routes, on ``api``."""

    @api.get(
        "", response_model=TopicPageOut, summary="Topics, largest or latest first, with filters and pages"
    )
    async def topics(
        trends: Trends,
        flt: Annotated[TopicFilter, Depends(topic_filter)],
        sort: Annotated[
            TopicSort, Query(description="size (default: documents) or recency (last seen); descending")
        ] = "size",
        limit: Limit = None,
        cursor: Cursor = None,
    ) -> TopicPageOut:
        page, next_cursor = await read_page(
            trends,
            "topics",
            flt,
            sort,
            limit,
            cursor,
            lambda session, after, size: list_topics(
                session, filters=flt, sort=sort, after=after, limit=size
            ),
        )
        return TopicPageOut(items=[TopicOut.model_validate(t) for t in page.items], next_cursor=next_cursor)

    # With a trailing slash too (clients that join the prefix and "/", OpenAPI tools reading the path "").
    api.get("/", response_model=TopicPageOut, include_in_schema=False)(topics)

    @api.get(
        "/{topic_id}",
        response_model=TopicDetailOut,
        summary="One topic: keywords, its best stories, its time series (its stories' counts summed)",
        responses=error_responses(404),
    )
    async def topic(
        trends: Trends,
        topic_id: Id,
        granularity: GranularityParam = "day",
    ) -> TopicDetailOut:
        async with trends.sessions() as session:
            detail = await get_topic(
                session, topic_id, stories=trends.args.topic_stories, granularity=granularity
            )
        if detail is None:
            raise _missing(topic_id)
        return TopicDetailOut.model_validate(
            {
                **asdict(detail),
                **asdict(detail.topic),
                "granularity": granularity,
                "series": marked_series(detail.series, granularity),
            },
            from_attributes=True,
        )

    @api.get(
        "/{topic_id}/documents",
        response_model=TopicDocumentPageOut,
        summary="A topic's documents (in its stories or in none), newest first, with the story of each",
        responses=error_responses(404),
    )
    async def documents(
        trends: Trends, topic_id: Id, limit: Limit = None, cursor: Cursor = None
    ) -> TopicDocumentPageOut:
        listing = trends.listing("topic-documents", topic_id, "time", limit, cursor)
        async with trends.sessions() as session:
            if not await topic_exists(session, topic_id):
                raise _missing(topic_id)
            page = await topic_documents(session, topic_id, after=listing.after, limit=listing.limit)
        items = [TopicDocumentOut.model_validate({**asdict(d.document), **asdict(d)}) for d in page.items]
        return TopicDocumentPageOut(topic_id=topic_id, items=items, next_cursor=listing.next_cursor(page))
