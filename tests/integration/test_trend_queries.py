"""The trends read side on real PostgreSQL: story and topic listings (filters, sorts, keyset pages), one
story or topic whole, a story's documents, and the story each search result names. Rows are constructed
with the ORM models (the clusterer's writer is tested on its own)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from cluster.ground.constants import TREND_ID_BLOCK
from serve_apps.search.results import search_results
from storage.database import make_async_engine
from storage.models import (
    Document,
    DocumentTopic,
    EmbeddingModel,
    Source,
    Story,
    StoryBucket,
    StoryDocument,
    StoryLineage,
    StorySummary,
    Topic,
    TrendPartition,
)
from storage.trend_queries import (
    StoryFilter,
    TopicFilter,
    get_story,
    get_topic,
    list_stories,
    list_topics,
    stories_of_documents,
    story_documents,
    topic_documents,
)
from tests.conftest import TABLES, truncate

T = TypeVar("T")
#: The trend tables, children first.
TREND_TABLES = (
    "story_summaries",
    "story_buckets",
    "story_lineage",
    "story_documents",
    "document_topics",
    "stories",
    "topics",
    "trend_partitions",
)
T0 = datetime(2026, 5, 1, tzinfo=UTC)
#: Lifecycle state of each English story, in creation order.
EN_STATES = (
    "emerging",
    "growing",
    "peaking",
    "fading",
    "dormant",
    "growing",
    "growing",
    "emerging",
    "peaking",
)


@dataclass(frozen=True)
class Seeded:
    """The constructed rows' ids: English stories (active, in creation order), the merged and dead ones,
    the Arabic story, the topics and the documents of each story."""

    en: list[int]
    merged: int
    dead: int
    ar: int
    topic_en: int
    topic_ar: int
    documents: dict[int, list[int]]  # story id -> its document ids, oldest first
    lone: int  # an English document in no story, in topic_en


def seed_trends(engine: Any) -> Seeded:
    """Empty the document and trend tables, then write a small trends world (committed)."""
    truncate(engine, (*TREND_TABLES, *TABLES))
    with Session(engine, expire_on_commit=False) as s, s.begin():
        wire = Source(name="wire", kind="feed", category="world")
        blog = Source(name="blog", kind="feed")
        model = EmbeddingModel(name="all-MiniLM-L6-v2", revision="r1", dimension=384)
        s.add(model)
        s.flush()
        en_part = TrendPartition(key="en", language="en", model_id=model.id)
        ar_part = TrendPartition(key="ar", language="ar", model_id=model.id)
        s.add_all([wire, blog, en_part, ar_part])
        s.flush()
        base_en, base_ar = en_part.id * TREND_ID_BLOCK, ar_part.id * TREND_ID_BLOCK
        topic_en = Topic(
            id=base_en + 900,
            partition_id=en_part.id,
            label="Elections",
            keywords=["vote", "poll"],
            size=30,
            story_count=9,
            first_seen=T0,
            last_seen=T0 + timedelta(days=9),
        )
        topic_ar = Topic(
            id=base_ar + 900,
            partition_id=ar_part.id,
            label="مطر",
            size=3,
            story_count=1,
            first_seen=T0 + timedelta(days=2),
            last_seen=T0 + timedelta(days=3),
        )
        dead_topic = Topic(id=base_en + 901, partition_id=en_part.id, status="dead", size=99, last_seen=T0)
        s.add_all([topic_en, topic_ar, dead_topic])
        s.flush()
        en: list[int] = []
        for n, state in enumerate(EN_STATES):
            story = Story(
                id=base_en + n + 1,
                partition_id=en_part.id,
                topic_id=topic_en.id,
                language="en",
                state=state,
                label=f"story {n}",
                keywords=[f"kw{n}", "vote"],
                # Scores tie in pairs (the id breaks ties); volume and velocity order differently.
                score=float(n // 2),
                volume=(n * 7) % 10,
                velocity=float((n * 5) % 9) / 2,
                size=3,
                first_seen=T0 + timedelta(days=n),
                last_seen=T0 + timedelta(days=n + 1),
            )
            s.add(story)
            en.append(story.id)
        merged = Story(
            id=base_en + 50,
            partition_id=en_part.id,
            topic_id=topic_en.id,
            language="en",
            status="merged",
            merged_into=en[0],
            score=100.0,
            first_seen=T0,
            last_seen=T0,
        )
        dead = Story(
            id=base_en + 51,
            partition_id=en_part.id,
            language="en",
            status="dead",
            state="dormant",
            score=99.0,
            first_seen=T0 - timedelta(days=30),
            last_seen=T0 - timedelta(days=29),
        )
        ar = Story(
            id=base_ar + 1,
            partition_id=ar_part.id,
            topic_id=topic_ar.id,
            language="ar",
            state="growing",
            label="مطر الصحراء",
            score=1.5,
            first_seen=T0 + timedelta(days=2),
            last_seen=T0 + timedelta(days=3),
        )
        s.add_all([merged, dead, ar])
        s.flush()
        documents: dict[int, list[int]] = {}
        # Each English story gets 3 documents (the first from the blog, in category sports), the Arabic one 2.
        for story_id, count in [*((i, 3) for i in en), (ar.id, 2)]:
            story_row = s.get(Story, story_id)
            assert story_row is not None and story_row.first_seen is not None
            for k in range(count):
                doc = Document(
                    canonical_url=f"https://example.com/{story_id}/{k}",
                    title=f"doc {k} of {story_id}",
                    text="text",
                    content_hash=f"{story_id}-{k}",
                    source_id=(blog if k == 0 else wire).id,
                    published_at=story_row.first_seen + timedelta(hours=k),
                    metadata_={"category": "sports"} if k == 0 else {},
                )
                s.add(doc)
                s.flush()
                documents.setdefault(story_id, []).append(doc.id)
                s.add(
                    StoryDocument(
                        document_id=doc.id,
                        story_id=story_id,
                        first_story_id=story_id,
                        partition_id=story_row.partition_id,
                        document_time=doc.published_at,
                        similarity=0.9 - k / 10,
                        method="assign",
                    )
                )
                if story_row.topic_id is not None:
                    s.add(
                        DocumentTopic(
                            document_id=doc.id,
                            topic_id=story_row.topic_id,
                            partition_id=story_row.partition_id,
                            document_time=doc.published_at,
                        )
                    )
            story_row.representative_ids = list(reversed(documents[story_id][:2]))
        lone = Document(
            canonical_url="https://example.com/lone",
            title="one of a kind",
            text="text",
            content_hash="lone",
            source_id=wire.id,
            published_at=T0 + timedelta(days=20),
        )
        s.add(lone)
        s.flush()
        s.add(
            DocumentTopic(
                document_id=lone.id,
                topic_id=topic_en.id,
                partition_id=en_part.id,
                document_time=T0 + timedelta(days=20),
            )
        )
        first = en[0]
        for granularity, buckets in (
            ("day", [(T0, 2), (T0 + timedelta(days=1), 1)]),
            ("hour", [(T0, 1), (T0 + timedelta(hours=1), 1), (T0 + timedelta(hours=2), 1)]),
        ):
            for bucket, count in buckets:
                s.add(StoryBucket(story_id=first, granularity=granularity, bucket=bucket, count=count))
        s.add(StoryBucket(story_id=en[1], granularity="day", bucket=T0 + timedelta(days=1), count=4))
        s.add_all(
            [
                StoryLineage(
                    partition_id=en_part.id, kind="birth", subject_id=first, documents=3, at=T0, event_key="b"
                ),
                StoryLineage(
                    partition_id=en_part.id,
                    kind="merge",
                    subject_id=first,
                    related_ids=[merged.id],
                    documents=2,
                    at=T0 + timedelta(days=1),
                    event_key="m",
                ),
                StoryLineage(
                    partition_id=en_part.id,
                    kind="split",
                    subject_id=en[2],
                    related_ids=[first, en[3]],
                    documents=1,
                    at=T0 + timedelta(days=2),
                    event_key="s",
                ),
                StoryLineage(
                    partition_id=en_part.id,
                    level="topic",
                    kind="birth",
                    subject_id=first,
                    at=T0,
                    event_key="t",
                ),
                StorySummary(story_id=first, fingerprint="a", method="extractive", summary="old summary"),
                StorySummary(
                    story_id=first, fingerprint="b", method="llm", model="gpt", summary="new summary"
                ),
            ]
        )
    return Seeded(en, merged.id, dead.id, ar.id, topic_en.id, topic_ar.id, documents, lone.id)


@pytest.fixture
def seeded(engine) -> Seeded:  # type: ignore[no-untyped-def]
    return seed_trends(engine)


def run(url: str, body: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """``body`` in one session on a fresh async engine."""

    async def main() -> T:
        engine = make_async_engine(url, pool_size=1)
        try:
            async with async_sessionmaker(engine, expire_on_commit=False)() as session:
                return await body(session)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def all_pages(url: str, flt: StoryFilter, sort: Any, limit: int) -> list[list[int]]:
    async def body(session: AsyncSession) -> list[list[int]]:
        pages, after = [], None
        while True:
            page = await list_stories(session, filters=flt, sort=sort, after=after, limit=limit)
            pages.append([s.id for s in page.items])
            if page.next_after is None:
                return pages
            after = page.next_after

    return run(url, body)


@pytest.mark.parametrize("sort", ["score", "volume", "velocity", "recency"])
def test_story_pages_follow_the_sort_without_repeats_or_gaps(
    seeded: Seeded, database_url: str, sort: str
) -> None:
    pages = all_pages(database_url, StoryFilter(), sort, limit=4)
    assert [len(p) for p in pages] == [4, 4, 3]
    ids = [i for p in pages for i in p]
    # Active and ended (dead) stories; the merged one scores highest but is not shown.
    assert sorted(ids) == sorted([*seeded.en, seeded.ar, seeded.dead])
    key = {
        "score": lambda s: s.score,
        "volume": lambda s: s.volume,
        "velocity": lambda s: s.velocity,
        "recency": lambda s: s.last_seen,
    }[sort]
    whole = run(
        database_url,
        lambda session: list_stories(session, filters=StoryFilter(), sort=sort, after=None, limit=50),  # type: ignore[arg-type]
    )
    expected = sorted(whole.items, key=lambda s: (key(s), s.id), reverse=True)
    assert ids == [s.id for s in expected] and whole.next_after is None


def test_story_filters(seeded: Seeded, database_url: str) -> None:
    def ids(flt: StoryFilter) -> set[int]:
        return {i for p in all_pages(database_url, flt, "score", limit=50) for i in p}

    en = seeded.en
    assert ids(StoryFilter(states=("growing",))) == {en[1], en[5], en[6], seeded.ar}
    assert ids(StoryFilter(states=("emerging", "peaking"))) == {en[0], en[2], en[7], en[8]}
    assert ids(StoryFilter(language="ar")) == {seeded.ar}
    assert ids(StoryFilter(topic_id=seeded.topic_ar)) == {seeded.ar}
    assert ids(StoryFilter(statuses=("merged", "dead"))) == {seeded.merged, seeded.dead}
    # last_seen >= since and first_seen <= until: English story n spans days n to n+1.
    assert ids(StoryFilter(language="en", since=T0 + timedelta(days=8))) == {en[7], en[8]}
    # an ended story of an earlier month is a story of that time too
    assert ids(StoryFilter(language="en", until=T0 + timedelta(days=1))) == {en[0], en[1], seeded.dead}
    window = StoryFilter(language="en", since=T0 + timedelta(days=3), until=T0 + timedelta(days=3))
    assert ids(window) == {en[2], en[3]}
    every = {*en, seeded.ar}
    assert ids(StoryFilter(source="blog")) == ids(StoryFilter(source="wire")) == every
    assert ids(StoryFilter(source="nowhere")) == set()
    # Category: the document's own (sports), else its source's (world); the Arabic story has both too.
    assert ids(StoryFilter(category="sports")) == ids(StoryFilter(category="world")) == every
    assert ids(StoryFilter(category="politics")) == set()


def test_source_and_category_filters_look_at_each_story_s_documents(
    seeded: Seeded, engine, database_url: str
) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:  # the first English story loses its blog (sports) document
        conn.execute(text("DELETE FROM documents WHERE id = :i"), {"i": seeded.documents[seeded.en[0]][0]})
    flt_ids = [i for p in all_pages(database_url, StoryFilter(source="blog"), "score", 50) for i in p]
    assert seeded.en[0] not in flt_ids and len(flt_ids) == len(seeded.en)
    sports = [i for p in all_pages(database_url, StoryFilter(category="sports"), "score", 50) for i in p]
    assert sorted(sports) == sorted(flt_ids)


def test_a_story_whole(seeded: Seeded, database_url: str) -> None:
    first = seeded.en[0]
    day = run(database_url, lambda s: get_story(s, first))
    hour = run(database_url, lambda s: get_story(s, first, granularity="hour"))
    assert day is not None and hour is not None
    assert day.story.keywords == ["kw0", "vote"] and day.story.label == "story 0"
    assert day.summary is not None and (day.summary.text, day.summary.method) == ("new summary", "llm")
    docs = seeded.documents[first]
    assert [d.id for d in day.representatives] == [docs[1], docs[0]]  # the stored order
    assert day.representatives[0].url == f"https://example.com/{first}/1"
    assert day.representatives[0].source == "wire" and day.representatives[1].category == "sports"
    assert [(b.bucket, b.count) for b in day.series] == [(T0, 2), (T0 + timedelta(days=1), 1)]
    assert [b.count for b in hour.series] == [1, 1, 1]
    # Its own birth and merge, and the split where it is one of the related stories; not the topic event.
    assert [(e.kind, e.subject_id) for e in day.lineage] == [
        ("birth", first),
        ("merge", first),
        ("split", seeded.en[2]),
    ]
    assert day.lineage[1].related_ids == [seeded.merged]
    assert day.topic is not None and (day.topic.id, day.topic.label) == (seeded.topic_en, "Elections")
    merged = run(database_url, lambda s: get_story(s, seeded.merged))
    assert merged is not None and merged.story.merged_into == first and merged.summary is None
    assert merged.representatives == [] and merged.series == []
    assert [e.kind for e in merged.lineage] == ["merge"]
    assert run(database_url, lambda s: get_story(s, 123456789)) is None


def test_a_story_s_documents_newest_first_in_pages(seeded: Seeded, database_url: str) -> None:
    story = seeded.en[4]

    async def body(session: AsyncSession) -> list[list[Any]]:
        first = await story_documents(session, story, after=None, limit=2)
        assert first.next_after is not None
        second = await story_documents(session, story, after=first.next_after, limit=2)
        assert second.next_after is None
        return [first.items, second.items]

    first, second = run(database_url, body)
    docs = seeded.documents[story]
    assert [d.document.id for d in [*first, *second]] == list(reversed(docs))
    newest = first[0]
    assert newest.method == "assign" and newest.similarity == pytest.approx(0.7)
    assert (
        newest.document_time == newest.document.published_at and newest.document.title == f"doc 2 of {story}"
    )


def test_topics_listing_and_one_topic_whole(seeded: Seeded, database_url: str) -> None:
    async def body(session: AsyncSession) -> list[Any]:
        by_size = await list_topics(session, filters=TopicFilter(), sort="size", after=None, limit=1)
        rest = await list_topics(
            session, filters=TopicFilter(), sort="size", after=by_size.next_after, limit=1
        )
        recent = await list_topics(session, filters=TopicFilter(), sort="recency", after=None, limit=5)
        arabic = await list_topics(
            session, filters=TopicFilter(language="ar"), sort="size", after=None, limit=5
        )
        late = TopicFilter(since=T0 + timedelta(days=5))
        since = await list_topics(session, filters=late, sort="size", after=None, limit=5)
        dead = await list_topics(
            session, filters=TopicFilter(statuses=("dead",)), sort="size", after=None, limit=5
        )
        return [by_size, rest, recent, arabic, since, dead]

    by_size, rest, recent, arabic, since, dead = run(database_url, body)
    assert [t.id for t in by_size.items] == [seeded.topic_en] and by_size.next_after is not None
    assert [t.id for t in rest.items] == [seeded.topic_ar] and rest.next_after is None
    assert [t.id for t in recent.items] == [seeded.topic_en, seeded.topic_ar]
    assert [t.id for t in arabic.items] == [seeded.topic_ar] and arabic.items[0].language == "ar"
    assert [t.id for t in since.items] == [seeded.topic_en]
    assert [t.status for t in dead.items] == ["dead"]
    topic = run(database_url, lambda s: get_topic(s, seeded.topic_en, stories=3))
    assert topic is not None and topic.topic.keywords == ["vote", "poll"] and topic.topic.language == "en"
    # The best 3 active stories by score (ties by id, highest first); the merged one is left out.
    en = seeded.en
    assert [s.id for s in topic.stories] == [en[8], en[7], en[6]]
    # The sum of its stories' day counts: story 0 (2, 1) and story 1 (4 on day 1).
    assert [(b.bucket, b.count) for b in topic.series] == [(T0, 2), (T0 + timedelta(days=1), 5)]
    assert run(database_url, lambda s: get_topic(s, 42, stories=3)) is None


def test_a_topics_documents_in_its_stories_or_in_none(seeded: Seeded, database_url: str) -> None:
    first = run(database_url, lambda s: topic_documents(s, seeded.topic_en, after=None, limit=2))
    assert [d.document.id for d in first.items] == [seeded.lone, seeded.documents[seeded.en[-1]][2]]
    assert [d.story_id for d in first.items] == [None, seeded.en[-1]] and first.next_after is not None
    rest = run(database_url, lambda s: topic_documents(s, seeded.topic_en, after=first.next_after, limit=100))
    everything = [d.document.id for d in [*first.items, *rest.items]]
    assert sorted(everything) == sorted(
        [seeded.lone, *(d for sid in seeded.en for d in seeded.documents[sid])]
    )
    assert rest.next_after is None
    arabic = run(database_url, lambda s: topic_documents(s, seeded.topic_ar, after=None, limit=10))
    assert [d.document.id for d in arabic.items] == seeded.documents[seeded.ar][::-1]


def test_each_search_result_names_its_story(seeded: Seeded, engine, database_url: str) -> None:  # type: ignore[no-untyped-def]
    first, ar = seeded.documents[seeded.en[0]][0], seeded.documents[seeded.ar][1]
    with Session(engine) as s, s.begin():
        loose = Document(
            canonical_url="https://example.com/loose", title="in no story", text="t", content_hash="x"
        )
        s.add(loose)
        s.flush()
        loose_id = loose.id
    refs = run(database_url, lambda s: stories_of_documents(s, [first, ar, loose_id, 987654]))
    assert {k: (v.id, v.label) for k, v in refs.items()} == {
        first: (seeded.en[0], "story 0"),
        ar: (seeded.ar, "مطر الصحراء"),
    }
    results = run(
        database_url, lambda s: search_results(s, [ar, 987654, loose_id, first], [0.9, 0.8, 0.7, 0.6])
    )
    assert [(r.id, r.score) for r in results] == [(ar, 0.9), (loose_id, 0.7), (first, 0.6)]
    body = [r.model_dump() for r in results]
    assert body[0]["story"] == {"id": seeded.ar, "label": "مطر الصحراء"}
    assert body[1]["story"] is None and body[2]["story"]["id"] == seeded.en[0]
    assert body[2]["source"] == "blog" and body[2]["category"] == "sports"


def test_pulse_trends_prints_the_listing(  # type: ignore[no-untyped-def]
    seeded: Seeded, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from cluster.ground.settings import get_settings
    from tests.integration.helpers import cli_runner

    monkeypatch.setenv("PULSE_DATABASE__URL", database_url)
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    pulse = cli_runner(capsys)
    try:
        code, out, err = pulse("trends", "--state", "peaking", "--state", "emerging", "--language", "en")
        assert code == 0, err
        rows = [line for line in out.splitlines() if "story " in line]
        # Best score first: story 8 (peaking, 4.0), 7 (emerging, 3.0), 2 (peaking), 0 (emerging).
        assert [line.split("│")[1].strip() for line in rows] == [str(seeded.en[i]) for i in (8, 7, 2, 0)]
        assert "story 8 (kw8, vote)" in rows[0] and "2026-05-09 00:00" in rows[0]
        assert out.strip().endswith("4 stories by score")
        code, out, err = pulse(
            "trends", "--json", "--sort", "recency", "--limit", "2", "--since", "2026-05-01"
        )
        assert code == 0, err
        lines = [json.loads(line) for line in out.splitlines()]
        assert [s["id"] for s in lines] == [seeded.en[8], seeded.en[7]] and lines[0]["keywords"] == [
            "kw8",
            "vote",
        ]
        for argv, says in ((("--state", "booming"), "booming"), (("--since", "tomorrow"), "not an ISO date")):
            with pytest.raises(SystemExit) as usage:  # click's usage error, as for every command
                pulse("trends", *argv)
            assert usage.value.code == 2 and says in capsys.readouterr().err
    finally:
        get_settings.cache_clear()
