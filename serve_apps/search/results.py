"""Search results from ranked ids: each document's title, URL, dates, language, source and category, the
story the trend clusterer put it in and a snippet of its text, read from PostgreSQL in one session (two
queries whatever the page size: the documents with their texts' beginnings, and their stories)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from sqlalchemy.ext.asyncio import AsyncSession

from serve_apps.search.schemas import SearchResult, StoryRef
from serve_apps.search.snippets import LEAD_CHARS, snippet
from storage.documents import fetch_summaries, fetch_summaries_and_leads
from storage.trend_queries import stories_of_documents


async def search_results(
    session: AsyncSession, ids: Sequence[int], scores: Sequence[float], query: str | None = None
) -> list[SearchResult]:
    """The results of ``ids`` ranked with ``scores``, in order; deleted documents are left out. With a
    ``query``, each result has a snippet of its text around the query's words."""
    leads: dict[int, str] = {}
    if query is None:
        docs = await fetch_summaries(session, ids)
    else:
        docs, leads = await fetch_summaries_and_leads(session, ids, chars=LEAD_CHARS)
    stories = await stories_of_documents(session, list(docs))
    return [
        SearchResult(
            **asdict(docs[i]),
            score=score,
            story=StoryRef(id=stories[i].id, label=stories[i].label) if i in stories else None,
            snippet=snippet(leads.get(i, ""), query) if query is not None else None,
        )
        for i, score in zip(ids, scores, strict=True)
        if i in docs
    ]
