"""The embedding job on a local Ray and the index actor built from what it stored."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
from sqlalchemy import text

from actors.index_actor import IndexActorConfig, get_or_create_index_actor
from actors.index_stats import ShardStats
from cluster.ground.constants import index_actor_name
from jobs.embed.encode import describe_model, encode, load_model
from jobs.embed.pipeline import EmbedJobConfig, run_embed
from jobs.ingest.loader import ingest_file
from storage.vector_files import VectorFileStore
from tests.integration.helpers import sample_subset

pytestmark = pytest.mark.usefixtures("ray_session")


def wait_for_new_incarnation(actor: Any, old_pid: int, timeout_s: float = 90) -> ShardStats:
    """Stats of the restarted actor once it is ready (calls may still reach the dying one at first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            stats = ray.get(actor.stats.remote(), timeout=10)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            stats = None
        if stats and stats.pid != old_pid and stats.ready:
            return stats
        time.sleep(0.2)
    raise AssertionError(f"the index actor did not come back ready within {timeout_s} s")


def config(database_url: str, storage: Path, **kw: object) -> EmbedJobConfig:
    values: dict[str, object] = {
        "database_url": database_url,
        "storage_uri": str(storage),
        "model_name": "default",
        "max_actors": 2,
        "progress": False,
    }
    values.update(kw)
    return EmbedJobConfig(**values)  # type: ignore[arg-type]


def test_embed_is_incremental_and_index_serves_and_survives_a_kill(
    clean_db: str,
    engine,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    corpus = sample_subset(tmp_path / "subset.jsonl", n_other=120)
    ingest_file(corpus, database_url=clean_db, source_name="huffpost_2018")
    with engine.begin() as conn:
        total = conn.execute(text("SELECT count(*) FROM documents")).scalar_one()
        # A document with nothing to embed is skipped and counted, never sent to the model.
        conn.execute(
            text(
                "INSERT INTO documents (canonical_url, title, text, content_hash) "
                "VALUES ('urn:x:empty', '', '', 'e')"
            )
        )
    storage = tmp_path / "storage"

    first = run_embed(config(clean_db, storage))
    assert first.embedded == total
    assert first.skipped_empty == 1
    assert first.files >= 2

    again = run_embed(config(clean_db, storage))
    assert again.embedded == 0  # nothing embedded twice

    with engine.begin() as conn:
        changed_id = conn.execute(text("SELECT min(id) FROM documents WHERE title <> ''")).scalar_one()
        conn.execute(
            text(
                "UPDATE documents SET text = 'Rewritten lead about a royal wedding', "
                "content_hash = 'changed' "
                "WHERE id = :id"
            ),
            {"id": changed_id},
        )
    third = run_embed(config(clean_db, storage))
    assert third.embedded == 1

    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT count(*), count(DISTINCT document_id) FROM document_embeddings")
        ).one()
        files = conn.execute(text("SELECT path, row_count FROM vector_files")).all()
    assert rows == (total, total)
    store = VectorFileStore(str(storage))
    assert sum(len(store.read(f.path).document_ids) for f in files) == sum(f.row_count for f in files)

    # The index actor loads every current vector, finds documents by their own text, and comes back
    # from a kill with the same content (rebuilt from storage).
    info = describe_model("default")
    model = load_model(info, threads=1)
    with engine.connect() as conn:
        model_id = conn.execute(text("SELECT id FROM embedding_models WHERE status = 'active'")).scalar_one()
        probe = conn.execute(
            text("SELECT id, title, text FROM documents WHERE id <> :id AND title <> '' ORDER BY id LIMIT 5"),
            {"id": changed_id},
        ).all()
    actor_cfg = IndexActorConfig(
        database_url=clean_db,
        storage_uri=str(storage),
        model_id=model_id,
        dimension=info.dimension,
        namespace=ray.get_runtime_context().namespace,
        poll_interval_s=0.5,
    )
    actor = get_or_create_index_actor(actor_cfg)
    try:
        assert ray.get(actor.wait_ready.remote(60))
        assert ray.get(actor.stats.remote()).index.size == total
        from jobs.embed.text import embedding_text

        queries = encode(
            model, [embedding_text(p.title, p.text) for p in probe], batch_size=8, normalize=True
        )
        hits = ray.get(actor.search.remote(queries, 3, None))
        assert [row[0] for row in hits.ids] == [p.id for p in probe]
        assert all(row[0] > 0.99 for row in hits.scores)
        rewritten = encode(
            model, ["Title. Rewritten lead about a royal wedding"], batch_size=1, normalize=True
        )
        assert changed_id in ray.get(actor.search.remote(rewritten, 3, None)).ids[0]

        same = get_or_create_index_actor(actor_cfg)  # get-or-create: the same named actor
        assert same._actor_id == actor._actor_id

        old_pid = ray.get(actor.stats.remote()).pid
        ray.kill(actor, no_restart=False)
        restarted = ray.get_actor(index_actor_name(model_id), namespace=actor_cfg.namespace)
        stats = wait_for_new_incarnation(restarted, old_pid)
        assert stats.index.size == total
        again_hits = ray.get(restarted.search.remote(queries, 1, None))
        assert [row[0] for row in again_hits.ids] == [p.id for p in probe]
    finally:
        ray.kill(actor, no_restart=True)


def test_unknown_model_fails_before_any_work(clean_db: str, tmp_path: Path) -> None:
    from jobs.errors import ModelNotFound

    with pytest.raises(ModelNotFound):
        run_embed(config(clean_db, tmp_path, model_name="acme/missing-model"))
    assert not any(tmp_path.iterdir())


def test_vectors_match_plain_encode(clean_db: str, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    corpus = sample_subset(tmp_path / "tiny.jsonl", n_other=10, must_contain=("royal wedding",))
    ingest_file(corpus, database_url=clean_db)
    run_embed(config(clean_db, tmp_path / "s", max_actors=1))
    with engine.connect() as conn:
        path = conn.execute(text("SELECT path FROM vector_files LIMIT 1")).scalar_one()
    batch = VectorFileStore(str(tmp_path / "s")).read(path)
    model = load_model(describe_model("default"), threads=1)
    from jobs.embed.text import embedding_text

    with engine.connect() as conn:
        rows = {
            r.id: embedding_text(r.title, r.text)
            for r in conn.execute(text("SELECT id, title, text FROM documents"))
        }
    assert set(batch.document_ids.tolist()) <= set(rows)
    expected = encode(model, [rows[int(i)] for i in batch.document_ids], batch_size=16, normalize=True)
    np.testing.assert_allclose(batch.vectors, expected, atol=1e-4)


def test_index_skips_superseded_files_and_recovers_from_lost_storage_by_full_reembed(
    clean_db: str,
    engine,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    corpus = sample_subset(tmp_path / "small.jsonl", n_other=40, must_contain=("royal wedding",))
    ingest_file(corpus, database_url=clean_db)
    storage = tmp_path / "storage"
    first = run_embed(config(clean_db, storage, max_actors=1))
    with engine.connect() as conn:
        model_id = conn.execute(text("SELECT id FROM embedding_models WHERE status = 'active'")).scalar_one()
    actor_cfg = IndexActorConfig(
        database_url=clean_db,
        storage_uri=str(storage),
        model_id=model_id,
        dimension=384,
        namespace=ray.get_runtime_context().namespace,
        poll_interval_s=0.5,
    )
    # Storage lost: the index reports why it cannot load and what to do.
    for parquet in storage.rglob("*.parquet"):
        parquet.unlink()
    actor = get_or_create_index_actor(actor_cfg)
    try:
        assert not ray.get(actor.wait_ready.remote(5))
        assert "pulse embed --full" in (ray.get(actor.stats.remote()).last_error or "")
        # A full re-embed supersedes every lost file; those are never read again.
        full = run_embed(config(clean_db, storage, max_actors=1, full=True))
        assert full.embedded == first.embedded
        assert ray.get(actor.wait_ready.remote(60))
        assert ray.get(actor.stats.remote()).index.size == first.embedded
    finally:
        ray.kill(actor, no_restart=True)
