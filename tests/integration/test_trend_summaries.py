"""Story summaries against real PostgreSQL and a local OpenAI-compatible server (tests/openai_fake.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

from actors.prompts import PromptTemplate
from actors.trend_summaries import (
    KEYLESS,
    PROMPT_FILE,
    BriefDoc,
    StoryBrief,
    StorySummarizer,
    SummaryConfig,
    render_prompt,
)
from cluster.ground.settings import SummarySettings
from storage.database import make_async_engine, make_session_factory, session_scope
from storage.models import EmbeddingModel, Story, StorySummary, TrendPartition
from storage.trend_summaries import latest_summaries, latest_summary, read_latest_summaries, spent_since
from tests import openai_fake
from tests.openai_fake import FakeOpenAI

fake_openai = openai_fake.fake_openai  # the fixture

STORY, OTHER, QUIET = 1_000_000_001, 1_000_000_002, 1_000_000_003
START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
MODEL = "fake-summary-1"


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def add_stories(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as session:
        model = EmbeddingModel(name="all-MiniLM-L6-v2", revision="r1", dimension=384)
        session.add(model)
        session.flush()
        partition = TrendPartition(key="en/default", language="en", model_id=model.id)
        session.add(partition)
        session.flush()
        session.add_all(Story(id=i, partition_id=partition.id, language="en") for i in (STORY, OTHER, QUIET))


@pytest.fixture
def sessions(engine: Engine, clean_db: str) -> Iterator[sessionmaker[Session]]:
    """A session factory whose commits stay inside one transaction, rolled back after the test; the
    stories the summaries belong to (foreign keys) exist."""
    connection = engine.connect()
    outer = connection.begin()
    factory = sessionmaker(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    add_stories(factory)
    try:
        yield factory
    finally:
        outer.rollback()
        connection.close()


def config(base_url: str | None, **overrides: object) -> SummaryConfig:
    values = {**SummarySettings().model_dump(), "base_url": base_url, "api_key": None, "model": MODEL}
    values.update(overrides)
    return SummaryConfig(**values)


def brief(story_id: int = STORY, *, size: int = 12, keywords=None, docs=None) -> StoryBrief:
    docs = docs or [
        BriefDoc(
            "River Severn bursts its banks",
            "The river Severn burst its banks on Monday after three days of rain. Hundreds of homes "
            "were evacuated.",
            "en",
            START,
        ),
        BriefDoc(
            "Rescue teams reach valley",
            "Rescue teams reached the cut-off villages by boat on Tuesday morning. Power is still out.",
            "en",
            START,
        ),
        BriefDoc(
            "More rain forecast", "Forecasters expect another 40 mm of rain by Thursday night.", "en", None
        ),
    ]
    keywords = keywords or [("severn", 0.9), ("flood", 0.8), ("rescue", 0.7), ("rain", 0.6), ("valley", 0.5)]
    return StoryBrief(story_id=story_id, size=size, keywords=keywords, documents=docs, language="en")


def rows(sessions: sessionmaker[Session], story_id: int) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).where(StorySummary.story_id == story_id)) or 0


def test_llm_summary_is_cached_and_regenerated_only_after_a_material_change(
    sessions: sessionmaker[Session], fake_openai: FakeOpenAI
) -> None:
    summarizer = StorySummarizer(config(fake_openai.base_url), sessions=sessions, clock=Clock())
    first = summarizer.summarize(brief())
    assert first.method == "llm" and first.model == MODEL
    assert first.prompt_version == "story_summary.v1" == summarizer.prompt_version
    assert (
        first.summary
        == "Summary of A story of 12 documents. Top keywords: severn, flood, rescue, rain, valley."
    )
    assert first.keywords[:3] == ("severn", "flood", "rescue") and first.story_size == 12
    (request,) = fake_openai.completions
    assert request["model"] == MODEL and request["temperature"] == 0.2
    assert request["max_tokens"] == SummarySettings().max_output_tokens
    assert [m["role"] for m in request["messages"]] == ["system", "user"]
    assert "[1] River Severn bursts its banks (2026-12-07)" in request["messages"][1]["content"]
    assert fake_openai.request_headers[0]["authorization"] == f"Bearer {KEYLESS}"  # keyless local server

    # Nothing changed: the cached row, no request.
    assert summarizer.summarize(brief()) == first
    # Grew by less than 25% with the same top-5 keywords (reordered) and new representatives: still cached.
    reordered = [("flood", 0.95), ("severn", 0.9), ("rain", 0.7), ("rescue", 0.6), ("valley", 0.5)]
    grown = brief(size=14, keywords=reordered, docs=list(reversed(brief().documents)))
    assert summarizer.summarize(grown) == first
    assert len(fake_openai.completions) == 1 and rows(sessions, STORY) == 1

    # Grew by half: regenerated (a second request, a second row, now the latest).
    second = summarizer.summarize(brief(size=18))
    assert second.id != first.id and second.method == "llm" and second.story_size == 18
    assert len(fake_openai.completions) == 2 and rows(sessions, STORY) == 2
    with sessions() as session:
        assert latest_summary(session, story_id=STORY) == second
    # A fresh summarizer (a restarted actor) finds it in PostgreSQL.
    again = StorySummarizer(config(fake_openai.base_url), sessions=sessions, clock=Clock())
    assert again.summarize(brief(size=18)) == second and len(fake_openai.completions) == 2


def test_cost_is_priced_by_usage_and_the_daily_cap_falls_back_to_extractive(
    sessions: sessionmaker[Session], fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    # The server reports as many prompt tokens as estimated and a short answer: a call costs less than its
    # worst case (the estimate plus max_output_tokens), and the cap is one worst case: the first call
    # passes, the second would pass the cap.
    cfg = config(fake_openai.base_url, input_price_per_mtok=1000.0, output_price_per_mtok=2000.0)
    template = PromptTemplate.load(PROMPT_FILE)
    estimate = render_prompt(template, brief(), max_tokens=cfg.max_input_tokens).tokens
    worst = cfg.cost(estimate, cfg.max_output_tokens)
    cfg = dataclasses.replace(cfg, daily_cost_cap_usd=worst)
    fake_openai.answer_with(
        lambda body: "The Severn flooded; villages were evacuated.", prompt_tokens=estimate
    )
    clock = Clock()
    summarizer = StorySummarizer(cfg, sessions=sessions, clock=clock)

    first = summarizer.summarize(brief(STORY))
    assert first.method == "llm" and (first.input_tokens, first.output_tokens) == (estimate, 6)
    assert first.cost_usd == pytest.approx(estimate * 1000 / 1e6 + 6 * 2000 / 1e6)
    with sessions() as session:
        assert spent_since(session, since=START.replace(hour=0)) == pytest.approx(first.cost_usd)

    with caplog.at_level(logging.WARNING, logger="actors.trend_summaries"):
        capped = summarizer.summarize(brief(OTHER))
    assert (
        capped.method == "extractive" and capped.cost_usd == 0 and capped.model == capped.prompt_version == ""
    )
    assert capped.summary.startswith("The river Severn burst its banks on Monday")
    assert len(fake_openai.completions) == 1
    assert any(str(OTHER) in r.getMessage() and "cost cap" in r.getMessage() for r in caplog.records)
    # Still capped the same day: the extractive summary is reused, nothing is asked or stored.
    clock.now = START + timedelta(hours=10)
    assert summarizer.summarize(brief(OTHER)) == capped and rows(sessions, OTHER) == 1
    # The next UTC day the story gets its LLM summary.
    clock.now = START + timedelta(days=1)
    fresh = summarizer.summarize(brief(OTHER))
    assert fresh.method == "llm" and len(fake_openai.completions) == 2


@pytest.mark.parametrize("status", [500, 429])
def test_api_errors_fall_back_to_extractive_and_are_not_cached(
    sessions: sessionmaker[Session],
    fake_openai: FakeOpenAI,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    summarizer = StorySummarizer(config(fake_openai.base_url), sessions=sessions, clock=Clock())
    fake_openai.fail_next(3, status=status)  # the first try and the client's two retries
    with caplog.at_level(logging.WARNING, logger="actors.trend_summaries"):
        fallback = summarizer.summarize(brief())
    assert fallback.method == "extractive"
    assert len(fake_openai.completions) == 3
    assert any(f"story {STORY}:" in r.getMessage() and str(status) in r.getMessage() for r in caplog.records)
    # The server is back: the story now gets its LLM summary (the failure was not stored as one).
    healed = summarizer.summarize(brief())
    assert healed.method == "llm" and len(fake_openai.completions) == 4
    with sessions() as session:
        methods = session.scalars(select(StorySummary.method).order_by(StorySummary.id)).all()
    assert methods == ["extractive", "llm"]


def test_without_a_server_or_key_summaries_are_extractive(
    sessions: sessionmaker[Session], fake_openai: FakeOpenAI
) -> None:
    summarizer = StorySummarizer(config(None), sessions=sessions, clock=Clock())
    first = summarizer.summarize_many([brief(STORY), brief(OTHER, size=3)])
    assert [r.method for r in first] == ["extractive", "extractive"]
    assert first[0].summary == (
        "The river Severn burst its banks on Monday after three days of rain. "
        "Rescue teams reached the cut-off villages by boat on Tuesday morning. "
        "Forecasters expect another 40 mm of rain by Thursday night."
    )
    assert summarizer.summarize(brief(STORY)) == first[0]  # cached too
    assert fake_openai.completions == []
    with sessions() as session:
        latest = latest_summaries(session, story_ids=[STORY, OTHER, QUIET])
    assert latest == {STORY: first[0], OTHER: first[1]}  # QUIET has none


def test_latest_summaries_reads_the_newest_row_of_each_story(
    sessions: sessionmaker[Session], fake_openai: FakeOpenAI
) -> None:
    summarizer = StorySummarizer(config(fake_openai.base_url), sessions=sessions, clock=Clock())
    old = summarizer.summarize(brief(STORY, size=4))
    new = summarizer.summarize(brief(STORY, size=40, keywords=[("dam", 1.0), ("severn", 0.9)]))
    other = summarizer.summarize(brief(OTHER))
    assert old.id < new.id
    with sessions() as session:
        assert latest_summaries(session, story_ids=[OTHER, STORY, STORY]) == {STORY: new, OTHER: other}
        assert latest_summaries(session, story_ids=[]) == {}


def test_serve_replicas_read_the_latest_summaries_through_asyncio(engine: Engine, clean_db: str) -> None:
    factory = make_session_factory(engine)  # committed: another connection reads them
    add_stories(factory)
    try:
        summarizer = StorySummarizer(config(None), sessions=factory, clock=Clock())
        written = summarizer.summarize_many([brief(STORY), brief(OTHER, size=3)])

        async def read() -> dict[int, object]:
            async_engine = make_async_engine(clean_db, pool_size=1)
            try:
                async with async_sessionmaker(async_engine)() as session:
                    return dict(await read_latest_summaries(session, story_ids=[STORY, OTHER, QUIET]))
            finally:
                await async_engine.dispose()

        assert asyncio.run(read()) == {STORY: written[0], OTHER: written[1]}
    finally:
        with session_scope(factory) as session:  # stories and summaries go with their partition
            session.execute(delete(TrendPartition))
