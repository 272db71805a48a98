"""The trend clusterer actor on a local Ray, fed by the real embedding job over real headlines: stories,
lineage, lifecycle, keywords and summaries land in PostgreSQL; ids survive an actor restart (snapshot +
catch-up) and a full re-cluster by the job; an LLM summary comes through the openai client from a local
OpenAI-compatible server."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import pytest
import ray
from sqlalchemy import text

from actors.trend_actor import TrendActorConfig, TrendStats, get_or_create_trend_actor
from actors.trend_clusterer import ClustererParams
from actors.trend_summaries import SummaryConfig
from cluster.top.recluster_job import ReclusterConfig, run_recluster
from jobs.ingest.loader import ingest_file
from jobs.recluster.communities import CommunityParams, window_communities
from tests.integration.helpers import sample_subset
from tests.integration.test_search_index import embed, model_state
from tests.openai_fake import FakeOpenAI, fake_openai  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("ray_session")


def config(database_url: str, storage: Path, model_id: int, base_url: str) -> TrendActorConfig:
    return TrendActorConfig(
        database_url=database_url,
        storage_uri=str(storage),
        model_id=model_id,
        namespace=ray.get_runtime_context().namespace,
        language="en",
        params=ClustererParams(recluster_every=100),
        communities=functools.partial(window_communities, params=CommunityParams()),
        summary=SummaryConfig(
            base_url=base_url,
            api_key="test",
            model="fake-model",
            max_input_tokens=1_000,
            max_output_tokens=60,
            daily_cost_cap_usd=1.0,
            input_price_per_mtok=0.15,
            output_price_per_mtok=0.6,
            timeout_s=10.0,
            material_change=0.25,
        ),
        num_cpus=0.05,
        poll_interval_s=0.5,
        snapshot_interval_s=0.5,
    )


def wait_stats(
    actor: Any, watermark: int, *, old_pid: int | None = None, timeout_s: float = 120
) -> TrendStats:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            stats: TrendStats = ray.get(actor.stats.remote(), timeout=10)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            stats = None  # type: ignore[assignment]
        if stats and stats.ready and stats.watermark >= watermark and stats.pid != old_pid:
            return stats
        time.sleep(0.3)
    raise AssertionError("the trend clusterer did not catch up")


def assignments(engine: Any) -> dict[int, int]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT document_id, story_id FROM story_documents")).all())


def test_stories_persist_across_a_restart_and_a_recluster(
    clean_db: str,
    engine: Any,
    tmp_path: Path,
    fake_openai: FakeOpenAI,  # noqa: F811
) -> None:
    subset = sample_subset(tmp_path / "subset.jsonl", n_other=120)
    storage = tmp_path / "storage"
    ingest_file(subset, database_url=clean_db, source_name="huffpost_2018")
    embed(clean_db, storage)
    model_id, watermark = model_state(engine)
    actor = get_or_create_trend_actor(config(clean_db, storage, model_id, fake_openai.base_url))
    try:
        stats = wait_stats(actor, watermark)
        before = assignments(engine)
        assert stats.stories >= 2 and len(before) >= 20
        with engine.connect() as conn:
            labelled = conn.execute(
                text("SELECT count(*) FROM stories WHERE label <> '' AND jsonb_array_length(keywords) > 0")
            ).scalar_one()
            births = conn.execute(
                text("SELECT count(*) FROM story_lineage WHERE kind = 'birth'")
            ).scalar_one()
            buckets = conn.execute(
                text("SELECT count(*) FROM story_buckets WHERE granularity = 'day'")
            ).scalar_one()
            summaries = conn.execute(
                text("SELECT count(*) FROM story_summaries WHERE method = 'llm' AND model = 'fake-model'")
            ).scalar_one()
        assert labelled >= 2 and births >= 2 and buckets >= 2
        assert summaries >= 1 and fake_openai.completions  # the real client spoke to the local server
        protest = [
            sid
            for (sid,) in engine.connect().execute(
                text("SELECT id FROM stories WHERE label ~* '(gun|march|student|parkland|walkout)'")
            )
        ]
        assert protest, "the student protests against gun violence form a story"

        # Killed and restarted by Ray: snapshot + catch-up, nothing renumbered or duplicated.
        ray.get(actor.snapshot.remote())
        old_pid = stats.pid
        ray.kill(actor, no_restart=False)
        wait_stats(actor, watermark, old_pid=old_pid)
        ray.get(actor.catch_up.remote())
        assert assignments(engine) == before

        # A full re-cluster by the job keeps the ids: almost every document keeps its story.
        results = run_recluster(
            ReclusterConfig(model_id=model_id, namespace=ray.get_runtime_context().namespace, num_cpus=0.5)
        )
        assert len(results) == 1 and results[0].documents >= len(before)
        after = assignments(engine)
        kept = sum(after.get(doc) == story for doc, story in before.items())
        assert kept >= 0.9 * len(before)
    finally:
        ray.kill(actor, no_restart=True)
