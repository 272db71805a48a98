"""What a clusterer does after writing its changes: each touched story's lifecycle, keywords, label,
representatives and summary, and each touched topic's keywords, read from and written to PostgreSQL
(``storage.trends``) with the pure cores (``trend_lifecycle``, ``trend_keywords``,
``trend_representatives``, ``trend_summaries``). No Ray here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from actors.trend_keywords import KeywordDoc, label, story_keywords
from actors.trend_lifecycle import LifecycleParams, lifecycle_of_many
from actors.trend_representatives import representatives
from actors.trend_summaries import BriefDoc, StoryBrief, StorySummarizer
from storage.database import session_scope
from storage.trend_derived import (
    StoryAnalytics,
    StoryText,
    TopicText,
    member_texts,
    stories_active_since,
    story_series,
    topic_member_texts,
    update_analytics,
    update_story_text,
    update_topic_text,
)

logger = logging.getLogger(__name__)

#: Documents per story read for keywords (the most recent).
TEXTS_PER_STORY = 60
#: A topic's keywords are read from its newest this many documents.
TOPIC_MEMBERS = 300
#: Days before the clock within which a story's lifecycle is recomputed even without new documents.
LIFECYCLE_HORIZON_DAYS = 14
#: Most LLM summaries asked per refresh (largest changed stories first; extractive ones are not
#: limited); the rest wait until their story changes again.
LLM_SUMMARIES_PER_REFRESH = 20


class StoryRefresher:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        partition_id: int,
        summarizer: StorySummarizer | None,
        lifecycle_params: LifecycleParams | None = None,
    ) -> None:
        self._sessions = sessions
        self._partition_id = partition_id
        self._summarizer = summarizer
        self._lifecycle = lifecycle_params or LifecycleParams()

    def refresh(
        self,
        *,
        touched: Iterable[int],
        topics: Iterable[int],
        clock: datetime,
        window: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> None:
        """``window``: (document ids, vectors, story ids) of the clusterer, for representatives."""
        touched = sorted(set(touched))
        with session_scope(self._sessions) as session:
            since = clock - timedelta(days=LIFECYCLE_HORIZON_DAYS)
            recent = stories_active_since(session, partition_id=self._partition_id, since=since)
            live = sorted(set(recent) | set(touched))
            series = story_series(session, story_ids=live, granularity="day")
            states = lifecycle_of_many(series, now=clock, params=self._lifecycle)
            update_analytics(session, [StoryAnalytics(id=sid, **asdict(lc)) for sid, lc in states.items()])
            # Keywords and representatives of the stories with documents in the window (one that just
            # left it, e.g. at its death, keeps what it had).
            reps = self._representatives(touched, window)
            texts = member_texts(session, story_ids=sorted(reps), per_story=TEXTS_PER_STORY)
        docs = {
            sid: [KeywordDoc(f"{t.title}. {t.text[:300]}", t.language) for t in rows]
            for sid, rows in texts.items()
            if rows
        }
        keywords = story_keywords(docs) if docs else {}
        with session_scope(self._sessions) as session:
            update_story_text(
                session,
                [
                    StoryText(id=sid, label=label(kw), keywords=kw, representative_ids=reps.get(sid, []))
                    for sid, kw in keywords.items()
                ],
            )
            topic_docs: dict[int, list[KeywordDoc]] = {}
            newest = topic_member_texts(session, topic_ids=sorted(set(topics)), per_topic=TOPIC_MEMBERS)
            for tid, rows in newest.items():
                topic_docs[tid] = [KeywordDoc(f"{t.title}. {t.text[:300]}", t.language) for t in rows]
            topic_keywords = story_keywords({t: d for t, d in topic_docs.items() if d})
            update_topic_text(
                session, [TopicText(id=t, label=label(kw), keywords=kw) for t, kw in topic_keywords.items()]
            )
        if self._summarizer is not None:
            self._summaries(sorted(reps), keywords, texts, reps)

    @staticmethod
    def _representatives(
        stories: list[int], window: tuple[np.ndarray, np.ndarray, np.ndarray]
    ) -> dict[int, list[int]]:
        ids, vectors, labels = window
        out: dict[int, list[int]] = {}
        wanted = np.isin(labels, stories)
        if not wanted.any():
            return out
        order = np.argsort(labels[wanted], kind="stable")
        rows = np.flatnonzero(wanted)[order]
        bounds = np.flatnonzero(np.diff(labels[rows])) + 1
        for group in np.split(rows, bounds):
            sid = int(labels[group[0]])
            out[sid] = representatives(vectors[group], ids[group].tolist(), k=5)
        return out

    def _summaries(
        self,
        touched: list[int],
        keywords: dict[int, list[tuple[str, float]]],
        texts: dict[int, list],  # type: ignore[type-arg]
        reps: dict[int, list[int]],
    ) -> None:
        assert self._summarizer is not None
        ranked = sorted((sid for sid in touched if texts.get(sid)), key=lambda s: -len(texts[s]))
        briefs = []
        if self._summarizer.config.uses_llm:
            ranked = ranked[:LLM_SUMMARIES_PER_REFRESH]
        for sid in ranked:
            rows = texts[sid]
            rank = {doc: i for i, doc in enumerate(reps.get(sid, []))}
            ordered = sorted(rows, key=lambda t: rank.get(t.document_id, len(rank)))
            languages = [t.language for t in rows if t.language]
            briefs.append(
                StoryBrief(
                    story_id=sid,
                    size=len(rows),
                    keywords=keywords.get(sid, []),
                    documents=[BriefDoc(t.title, t.text, t.language, t.document_time) for t in ordered[:8]],
                    language=max(set(languages), key=languages.count) if languages else None,
                )
            )
        try:
            self._summarizer.summarize_many(briefs)
        except Exception:  # summaries must never stop clustering; the next refresh retries
            logger.exception("story summaries failed for partition %d", self._partition_id)


def utc(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)
