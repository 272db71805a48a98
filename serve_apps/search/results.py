"""Search results from ranked ids: each document's title, URL, dates, language, source and category, and
the story the trend clusterer put it in, read from PostgreSQL in one session (one query for the documents,
one for their stories, whatever the page size)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from sqlalchemy.ext.asyncio import AsyncSession

from serve_apps.search.schemas import SearchResult, StoryRef
from storage.documents import fetch_summaries
from storage.trend_queries import stories_of_documents


async def search_results(
    session: AsyncSession, ids: Sequence[int], scores: Sequence[float]
) -> list[SearchResult]:
    """The results of ``ids`` ranked with ``scores``, in order; deleted documents are left out."""
    docs = await fetch_summaries(session, ids)
    stories = await stories_of_documents(session, list(docs))
    return [
        SearchResult(
            **asdict(docs[i]),
            score=score,
            story=StoryRef(id=stories[i].id, label=stories[i].label) if i in stories else None,
        )
        for i, score in zip(ids, scores, strict=True)
        if i in docs
    ]
