"""A job that cannot be placed fails fast and says what it needs, what is free and what to change,
instead of waiting in PENDING_NODE_ASSIGNMENT without a word (the session's Ray declares 2 CPUs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from jobs.embed.pipeline import EmbedJobConfig, run_embed
from jobs.errors import PlacementError
from jobs.ingest.loader import ingest_file
from storage.database import make_engine, make_session_factory, session_scope
from storage.sources import SourceRepository
from tests.integration.helpers import sample_subset
from tests.integration.test_collect_job import config


@ray.remote(num_cpus=0)
class CpuHolder:
    """Holds a CPU reservation, as a long-lived service does, and nothing else."""

    def ready(self) -> bool:
        return True


@pytest.fixture
def busy_node(ray_session: None) -> Iterator[None]:
    """1.5 of the node's 2 CPUs reserved by a running actor."""
    holder = CpuHolder.options(num_cpus=1.5).remote()  # type: ignore[attr-defined]
    ray.get(holder.ready.remote())
    yield
    ray.kill(holder)


def add_page_source(database_url: str, url: str) -> None:
    engine = make_engine(database_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            SourceRepository(session).add(name="page", kind="page", uri=url)
    finally:
        engine.dispose()


def test_collect_asking_more_cpus_than_the_node_has_fails_at_once(
    clean_db: str, ray_session: None, tmp_path: Path
) -> None:
    add_page_source(clean_db, "http://127.0.0.1:9/never-fetched.html")
    with pytest.raises(PlacementError) as caught:
        run_collect_with(clean_db, tmp_path, extract_cpus=3.0, placement_timeout_s=60)
    message = str(caught.value)
    assert "the collect job cannot be placed" in message
    assert "extraction task of 3 CPU" in message
    assert "more than any node has" in message
    assert "of 2 CPUs free" in message
    assert "PULSE_COLLECT__EXTRACT_CPUS" in message and "PULSE_RAY__NUM_CPUS" in message
    # Refused before a run was recorded or anything fetched.
    from tests.integration.test_collect_job import query

    assert query(clean_db, "SELECT count(*) FROM collect_runs")[0][0] == 0


def test_collect_beside_a_service_holding_the_cpus_fails_after_the_placement_timeout(
    clean_db: str, busy_node: None, tmp_path: Path
) -> None:
    add_page_source(clean_db, "http://127.0.0.1:9/never-fetched.html")
    with pytest.raises(PlacementError) as caught:
        run_collect_with(clean_db, tmp_path, extract_cpus=1.0, placement_timeout_s=1)
    message = str(caught.value)
    assert "still not free after 1 s" in message
    assert "extraction task of 1 CPU" in message and "PULSE_COLLECT__EXTRACT_CPUS" in message


def test_embed_fails_fast_when_its_encoders_do_not_fit_beside_a_service(
    clean_db: str, busy_node: None, tmp_path: Path
) -> None:
    ingest_file(sample_subset(tmp_path / "subset.jsonl", n_other=5), database_url=clean_db)
    cfg = EmbedJobConfig(
        database_url=clean_db,
        storage_uri=str(tmp_path / "storage"),
        model_name="default",
        cpus_per_actor=1.0,
        placement_timeout_s=1,
        progress=False,
    )
    with pytest.raises(PlacementError) as caught:
        run_embed(cfg)
    message = str(caught.value)
    assert "the embed job" in message and "1 encoder actor of 1 CPU" in message
    assert "PULSE_EMBED__CPUS_PER_ACTOR" in message and "still not free" in message


def run_collect_with(database_url: str, tmp_path: Path, **overrides: object) -> None:
    from jobs.collect.pipeline import run_collect

    run_collect(config(database_url, tmp_path / "storage", **overrides))
