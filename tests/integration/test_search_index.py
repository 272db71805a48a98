"""Index shards and the keyword index on a local Ray, fed by the real embedding job: durability across a
kill during ingest (snapshot + catch-up), deletes and upserts visible to the next search."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
from sqlalchemy import text

from actors.filters import SearchFilter
from actors.index_actor import IndexActorConfig, get_or_create_index_actor
from actors.index_stats import ShardStats
from actors.keyword_actor import KeywordActorConfig, get_or_create_keyword_actor
from actors.vector_search import IndexConfig, SearchHits, merge_hits
from jobs.embed.pipeline import EmbedJobConfig, run_embed
from jobs.ingest.loader import ingest_file
from storage.database import make_session_factory, session_scope
from storage.documents import DocumentRecord, DocumentRepository
from storage.vector_source import ManifestVectorSource, shard_of
from tests.integration.helpers import sample_subset
from tests.integration.test_embed_and_index import wait_for_new_incarnation

pytestmark = pytest.mark.usefixtures("ray_session")

SHARDS = 2


def embed(database_url: str, storage: Path) -> None:
    run_embed(
        EmbedJobConfig(
            database_url=database_url,
            storage_uri=str(storage),
            model_name="default",
            max_actors=1,
            progress=False,
        )
    )


def shard_configs(database_url: str, storage: Path, model_id: int) -> list[IndexActorConfig]:
    return [
        IndexActorConfig(
            database_url=database_url,
            storage_uri=str(storage),
            model_id=model_id,
            dimension=384,
            namespace=ray.get_runtime_context().namespace,
            shard=shard,
            shards=SHARDS,
            num_cpus=0.1,
            poll_interval_s=0.5,
            snapshot_interval_s=0.5,
            index=IndexConfig(kind="flat"),
        )
        for shard in range(SHARDS)
    ]


def stored_vectors(database_url: str, storage: Path, model_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Every current document vector in storage, read straight from the vector files."""
    source = ManifestVectorSource(database_url=database_url, storage_uri=str(storage), model_id=model_id)
    ids, vectors = [], []
    latest: dict[int, np.ndarray] = {}
    for update in source.updates_after(0):
        for doc, vec in zip(update.document_ids.tolist(), update.vectors, strict=True):
            latest[doc] = vec
    source.close()
    for doc, vec in sorted(latest.items()):
        ids.append(doc)
        vectors.append(vec)
    return np.asarray(ids), np.asarray(vectors, dtype=np.float32)


def search_all(actors: list[Any], queries: np.ndarray, k: int, flt: SearchFilter | None = None) -> SearchHits:
    return merge_hits(ray.get([a.search.remote(queries, k, flt) for a in actors]), k)


def wait_caught_up(actors: list[Any], watermark: int, timeout_s: float = 90) -> list[ShardStats]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            stats = ray.get([a.stats.remote() for a in actors], timeout=10)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            stats = []
        if stats and all(s.ready and s.index.watermark >= watermark for s in stats):
            return list(stats)
        time.sleep(0.2)
    raise AssertionError("index shards did not catch up")


def model_state(engine: Any) -> tuple[int, int]:
    with engine.connect() as conn:
        model_id = conn.execute(text("SELECT id FROM embedding_models WHERE status = 'active'")).scalar_one()
        watermark = conn.execute(
            text("SELECT coalesce(max(id), 0) FROM vector_files WHERE model_id = :m"), {"m": model_id}
        ).scalar_one()
    return int(model_id), int(watermark)


def test_a_shard_killed_during_ingest_recovers_every_document(
    clean_db: str,
    engine,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    lines = sample_subset(tmp_path / "subset.jsonl", n_other=240).read_text().splitlines()
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    second.write_text("\n".join(lines[len(lines) // 2 :]) + "\n")
    storage = tmp_path / "storage"
    ingest_file(first, database_url=clean_db, source_name="huffpost_2018")
    embed(clean_db, storage)
    model_id, watermark = model_state(engine)
    actors = [get_or_create_index_actor(c) for c in shard_configs(clean_db, storage, model_id)]
    try:
        wait_caught_up(actors, watermark)
        ray.get([a.snapshot.remote() for a in actors])  # a snapshot of the first half (if not yet written)
        first_stats = ray.get([a.stats.remote() for a in actors])
        assert all(s.snapshots_written >= 1 for s in first_stats)
        assert min(s.index.size for s in first_stats) > 0  # documents are spread over both shards

        # Ingest and embed the second half while shard 1 is killed midway; Ray restarts it.
        ingest_file(second, database_url=clean_db, source_name="huffpost_2018")
        job = threading.Thread(target=embed, args=(clean_db, storage))
        job.start()
        old_pid = ray.get(actors[1].stats.remote()).pid
        time.sleep(2)
        ray.kill(actors[1], no_restart=False)
        job.join()
        stats = wait_for_new_incarnation(actors[1], old_pid)
        assert stats.restored_from is not None  # it came back from its snapshot, then caught up
        _, watermark = model_state(engine)
        wait_caught_up(actors, watermark)

        ids, vectors = stored_vectors(clean_db, storage, model_id)
        with engine.connect() as conn:
            total = conn.execute(
                text("SELECT count(*) FROM documents WHERE text <> '' OR title <> ''")
            ).scalar_one()
        assert len(ids) == total
        hits = search_all(actors, vectors, 1)
        found = np.mean([row[0] == i for row, i in zip(hits.ids, ids.tolist(), strict=True)])
        assert found == 1.0  # exact search: every stored document is its own nearest neighbour
        per_shard = [s.index.size for s in ray.get([a.stats.remote() for a in actors])]
        assert sum(per_shard) == len(ids)
        assert per_shard == [int(np.sum(shard_of(ids, SHARDS) == s)) for s in range(SHARDS)]
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)


def test_deletes_and_upserts_are_visible_to_the_next_search(
    clean_db: str,
    engine,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    corpus = sample_subset(tmp_path / "subset.jsonl", n_other=80)
    storage = tmp_path / "storage"
    ingest_file(corpus, database_url=clean_db, source_name="huffpost_2018")
    embed(clean_db, storage)
    model_id, watermark = model_state(engine)
    actors = [get_or_create_index_actor(c) for c in shard_configs(clean_db, storage, model_id)]
    keyword = get_or_create_keyword_actor(
        KeywordActorConfig(
            database_url=clean_db,
            model_id=model_id,
            namespace=ray.get_runtime_context().namespace,
            num_cpus=0.1,
        )
    )
    sessions = make_session_factory(engine)
    try:
        wait_caught_up(actors, watermark)
        # The keyword actor loads its collection on a thread of its own: wait for it as for the shards.
        deadline = time.monotonic() + 90
        while not ray.get(keyword.stats.remote()).ready and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ray.get(keyword.stats.remote()).ready, ray.get(keyword.stats.remote())
        ray.get(keyword.catch_up.remote())
        ids, vectors = stored_vectors(clean_db, storage, model_id)
        with engine.connect() as conn:
            titles = dict(conn.execute(text("SELECT id, title FROM documents")).all())

        # Delete three documents: neither index returns them on the next search after the hint.
        gone = ids[:3].tolist()
        with session_scope(sessions) as session:
            assert DocumentRepository(session).delete(gone) == 3
        ray.get([a.catch_up.remote() for a in actors] + [keyword.catch_up.remote()])
        hits = search_all(actors, vectors[:3], 10)
        assert all(not set(row) & set(gone) for row in hits.ids)
        kw = ray.get(keyword.search.remote([titles[g] for g in gone], 10, None, (), False))
        assert all(not set(row) & set(gone) for row in kw.ids)
        assert all(row for row in kw.ids)  # other documents still match those words

        # Rewrite a document: once re-embedded, its new text finds it, in both indexes.
        target = int(ids[5])
        with engine.connect() as conn:
            url = conn.execute(
                text("SELECT canonical_url FROM documents WHERE id = :i"), {"i": target}
            ).scalar_one()
        new_title = "Lighthouse keepers of the Hebrides restore a Victorian foghorn"
        with session_scope(sessions) as session:
            DocumentRepository(session).upsert_documents(
                documents=[
                    DocumentRecord(canonical_url=url, title=new_title, text="The foghorn sounds again.")
                ],
                source_id=None,
            )
        embed(clean_db, storage)
        ray.get([a.catch_up.remote() for a in actors] + [keyword.catch_up.remote()])
        ids2, vectors2 = stored_vectors(clean_db, storage, model_id)
        new_vector = vectors2[list(ids2).index(target)]
        assert search_all(actors, new_vector[None, :], 1).ids[0] == [target]
        assert ray.get(keyword.search.remote(["victorian foghorn lighthouse"], 1, None, (), False)).ids[
            0
        ] == [target]
        assert sum(s.index.size for s in ray.get([a.stats.remote() for a in actors])) == len(ids) - 3
    finally:
        for actor in [*actors, keyword]:
            ray.kill(actor, no_restart=True)


def test_shards_and_the_keyword_index_run_only_on_nodes_their_label_selector_names(
    database_url: str, clean_db: str, tmp_path: Path
) -> None:
    """PULSE_INDEX__LABEL_SELECTOR: a selector the node matches places the actors; one no node matches
    leaves them pending (on a cluster: off the GPU nodes)."""
    namespace = ray.get_runtime_context().namespace
    node = ray.get_runtime_context().get_node_id()
    base = replace(shard_configs(database_url, tmp_path, model_id=990)[0], shards=1)
    here = {"ray.io/node-id": node}
    nowhere = {"pulse.io/pool": "cpu"}  # the session's node has no such label
    placed = [
        get_or_create_index_actor(replace(base, label_selector=here)),
        get_or_create_keyword_actor(
            KeywordActorConfig(
                database_url, model_id=990, namespace=namespace, num_cpus=0.05, label_selector=here
            )
        ),
    ]
    pending = [
        get_or_create_index_actor(replace(base, model_id=991, label_selector=nowhere)),
        get_or_create_keyword_actor(
            KeywordActorConfig(
                database_url, model_id=991, namespace=namespace, num_cpus=0.05, label_selector=nowhere
            )
        ),
    ]
    try:
        assert all(s is not None for s in ray.get([a.stats.remote() for a in placed], timeout=60))
        _, not_ready = ray.wait([a.stats.remote() for a in pending], num_returns=2, timeout=5)
        assert len(not_ready) == 2
    finally:
        for actor in placed + pending:
            ray.kill(actor)
