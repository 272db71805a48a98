"""Long documents in chunks, a crash midway, Parquet input, and the model registry with its switch."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from sqlalchemy import text

from actors.index_actor import IndexActorConfig, get_or_create_index_actor
from cluster.ground.settings import get_settings
from jobs.embed.encode import describe_model, encode, load_model
from jobs.embed.inline import loaded_model_id
from jobs.embed.pipeline import run_embed
from jobs.embed.recipe import TextRecipe
from jobs.ingest.loader import ingest_file
from storage.vector_files import VectorFileStore
from tests.conftest import SHARED_DATA
from tests.integration.helpers import cli_runner, sample_subset
from tests.integration.test_embed_and_index import config

pytestmark = pytest.mark.usefixtures("ray_session")

SMALL_CHUNKS = {"chunk_tokens": 64, "overlap": 16, "max_chunks": 16}


def ingest_bbc(tmp_path: Path, database_url: str, n: int) -> Path:
    """``n`` full BBC articles (several hundred words each) in the ingest format."""
    lines = []
    with (SHARED_DATA / "bbc_news" / "bbc_news.jsonl").open(encoding="utf-8") as fh:
        for line, _ in zip(fh, range(n), strict=False):
            r = json.loads(line)
            lines.append(
                json.dumps(
                    {
                        "id": f"bbc-{r['id']}",
                        "title": r["title"],
                        "text": r["text"],
                        "url": f"https://www.bbc.co.uk/news/{r['id'].replace('/', '-')}",
                    }
                )
            )
    path = tmp_path / "bbc.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ingest_file(path, database_url=database_url, source_name="bbc_news")
    return path


def live_rows(engine, storage: Path, model_id: int | None = None) -> dict[tuple[int, int], int]:  # type: ignore[no-untyped-def]
    """How many live vectors each ``(document, chunk)`` of a model has (chunk -1: the document vector)."""
    store = VectorFileStore(str(storage))
    with engine.connect() as conn:
        current = conn.execute(
            text(
                "SELECT e.document_id, e.chunk_count, f.path FROM document_embeddings e "
                "JOIN vector_files f ON f.id = e.file_id WHERE e.model_id = coalesce(:m, e.model_id)"
            ),
            {"m": model_id},
        ).all()
    by_path: dict[str, dict[int, int]] = {}
    for doc, count, path in current:
        by_path.setdefault(path, {})[doc] = count
    seen: dict[tuple[int, int], int] = {}
    for path, docs in by_path.items():
        batch = store.read(path)
        for doc, chunk, chunks in zip(
            batch.document_ids, batch.column("chunk"), batch.column("chunks"), strict=True
        ):
            if int(doc) in docs:
                assert int(chunks) == docs[int(doc)], "file and manifest disagree on the chunk count"
                key = (int(doc), int(chunk))
                seen[key] = seen.get(key, 0) + 1
    return seen


def wait_until_active(engine, entry_id: int, timeout_s: float = 300) -> dict[int, str]:  # type: ignore[no-untyped-def]
    """Every entry's status once ``entry_id`` is active (AssertionError after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            statuses: dict[int, str] = dict(
                conn.execute(text("SELECT id, status FROM embedding_models")).all()
            )
        if statuses[entry_id] == "active":
            return statuses
        time.sleep(0.5)
    raise AssertionError(f"entry {entry_id} did not become active within {timeout_s} s")


def test_long_documents_are_chunked_with_overlap_and_pooled(clean_db: str, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ingest_bbc(tmp_path, clean_db, 6)
    storage = tmp_path / "storage"
    summary = run_embed(config(clean_db, storage, recipe=SMALL_CHUNKS))
    assert summary.embedded == 6 and summary.chunks > 6 * 3
    with engine.connect() as conn:
        docs = {r.id: (r.title, r.text) for r in conn.execute(text("SELECT id, title, text FROM documents"))}
        path = conn.execute(text("SELECT path FROM vector_files ORDER BY id LIMIT 1")).scalar_one()
    batch = VectorFileStore(str(storage)).read(path)
    recipe = TextRecipe.from_json(SMALL_CHUNKS)
    model = load_model(describe_model("default"), threads=1)
    doc = int(batch.document_ids[0])
    rows = np.flatnonzero(batch.document_ids == doc)
    chunk_rows = [i for i in rows if batch.column("chunk")[i] >= 0]
    doc_row = [i for i in rows if batch.column("chunk")[i] == -1]
    assert len(doc_row) == 1 and len(chunk_rows) == int(batch.column("chunks")[doc_row[0]]) > 1
    embedded_text = recipe.text_of(*docs[doc])
    spans = [(int(batch.column("char_start")[i]), int(batch.column("char_end")[i])) for i in chunk_rows]
    assert spans[0][0] == 0 and spans[-1][1] == len(embedded_text)
    assert all(b[0] < a[1] for a, b in pairwise(spans)), "consecutive chunks overlap"
    # A chunk vector is the model's vector of that passage; the document vector their normalised mean.
    passages = [embedded_text[s:e] for s, e in spans]
    expected = encode(model, passages, batch_size=8, normalize=True)
    cosines = np.sum(expected * batch.vectors[chunk_rows], axis=1)
    # A window may start inside a word ("##ing"), which re-tokenizing the passage cannot reproduce.
    assert np.median(cosines) > 0.999 and cosines.min() > 0.85
    mean = batch.vectors[chunk_rows].mean(axis=0)
    np.testing.assert_allclose(batch.vectors[doc_row[0]], mean / np.linalg.norm(mean), atol=1e-5)
    # The chunk index finds the document by a passage from its end; each document comes back once.
    with engine.connect() as conn:
        model_id = conn.execute(text("SELECT id FROM embedding_models WHERE status = 'active'")).scalar_one()
    actor = get_or_create_index_actor(
        IndexActorConfig(
            database_url=clean_db,
            storage_uri=str(storage),
            model_id=model_id,
            dimension=384,
            namespace=ray.get_runtime_context().namespace,
            level="chunk",
        )
    )
    try:
        assert ray.get(actor.wait_ready.remote(60))
        assert ray.get(actor.stats.remote()).index.size == summary.chunks
        hits = ray.get(actor.search.remote(expected[-1:], 6, None))
        assert hits.ids[0][0] == doc and len(set(hits.ids[0])) == len(hits.ids[0])
    finally:
        ray.kill(actor, no_restart=True)


def test_a_small_delta_is_embedded_inline_like_the_pipeline_and_keeps_its_model(  # type: ignore[no-untyped-def]
    clean_db: str, engine, tmp_path: Path
) -> None:
    """``inline_max`` (the CMS scheduler's edits): the same vectors and manifest as the Ray Data pipeline,
    written in this process, and the second run reuses the model the first one loaded."""
    ingest_bbc(tmp_path, clean_db, 4)
    storage = tmp_path / "storage"
    first = run_embed(config(clean_db, storage, recipe=SMALL_CHUNKS, inline_max=8))
    assert (first.embedded, first.files, first.actors) == (4, 1, 1)
    assert first.actor_load_s > 0 and loaded_model_id() == first.model_id
    inline = live_rows(engine, storage)
    with engine.connect() as conn:
        inline_path = conn.execute(text("SELECT path FROM vector_files")).scalar_one()
    # More than inline_max pending: the pipeline. Re-embedding everything (full) never goes inline.
    piped = run_embed(config(clean_db, storage, recipe=SMALL_CHUNKS, inline_max=8, full=True))
    assert piped.embedded == 4 and piped.placement["encode"] and "local" not in piped.placement["encode"]
    assert live_rows(engine, storage) == inline  # one live vector per (document, chunk), as before
    with engine.connect() as conn:
        piped_path = conn.execute(
            text("SELECT path FROM vector_files WHERE path <> :p"), {"p": inline_path}
        ).scalar_one()
    store = VectorFileStore(str(storage))
    a, b = store.read(inline_path), store.read(piped_path)
    order_a = np.lexsort((a.column("chunk"), a.document_ids))
    order_b = np.lexsort((b.column("chunk"), b.document_ids))
    np.testing.assert_array_equal(a.document_ids[order_a], b.document_ids[order_b])
    cosines = np.sum(a.vectors[order_a] * b.vectors[order_b], axis=1)
    assert cosines.min() > 0.9999, "inline and pipeline vectors differ"
    # A new document: the next inline run reuses the loaded model (no load time).
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO documents (canonical_url, title, text, content_hash) "
                "VALUES ('urn:x:new', 'A new item', 'Published a moment ago by an editor.', 'n1')"
            )
        )
    again = run_embed(config(clean_db, storage, recipe=SMALL_CHUNKS, inline_max=8))
    assert (again.embedded, again.files, again.actor_load_s) == (1, 1, 0.0)


def test_crash_of_an_encoder_midway_then_rerun_leaves_one_vector_per_chunk(
    clean_db: str,
    engine,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    ingest_bbc(tmp_path, clean_db, 40)
    ingest_file(sample_subset(tmp_path / "s.jsonl", n_other=200), database_url=clean_db)
    with engine.begin() as conn:
        total = conn.execute(text("SELECT count(*) FROM documents")).scalar_one()
        # Blank documents are skipped and counted, never sent to the model.
        conn.execute(
            text(
                "INSERT INTO documents (canonical_url, title, text, content_hash) "
                "VALUES ('urn:x:blank', '  ', E'\\n\\t ', 'b')"
            )
        )
    storage = tmp_path / "storage"
    cfg = config(clean_db, storage, recipe=SMALL_CHUNKS, rows_per_file=32)
    outcome: dict[str, object] = {}

    def job() -> None:
        try:
            outcome["summary"] = run_embed(cfg)
        except Exception as exc:  # the crash may fail the run; the rerun must repair everything
            outcome["error"] = exc

    thread = threading.Thread(target=job)
    thread.start()
    import psutil

    killed = None
    deadline = time.monotonic() + 180
    while killed is None and time.monotonic() < deadline and thread.is_alive():
        with engine.connect() as conn:
            committed = conn.execute(text("SELECT count(*) FROM vector_files")).scalar_one()
        if committed >= 1:
            # Ray titles an actor's worker process ray::MapWorker(MapBatches(EncodeBatch)).
            encoders = [
                p.pid
                for p in psutil.process_iter(["cmdline"])
                if "EncodeBatch" in " ".join(p.info["cmdline"] or [])
            ]
            if encoders:
                os.kill(encoders[0], signal.SIGKILL)
                killed = encoders[0]
        time.sleep(0.2)
    thread.join(timeout=600)
    assert killed is not None, "the job finished before an encoder could be killed"

    again = run_embed(cfg)
    with engine.connect() as conn:
        pending = conn.execute(
            text(
                "SELECT count(*) FROM documents d LEFT JOIN document_embeddings e ON e.document_id = d.id "
                "WHERE e.document_id IS NULL AND d.canonical_url <> 'urn:x:blank'"
            )
        ).scalar_one()
        expected_chunks = conn.execute(
            text(
                "SELECT sum(CASE WHEN chunk_count > 1 THEN chunk_count + 1 ELSE 1 END) "
                "FROM document_embeddings"
            )
        ).scalar_one()
    assert pending == 0
    assert again.skipped_empty == 1
    seen = live_rows(engine, storage)
    assert set(seen.values()) == {1}, "a (document, chunk) has more than one live vector"
    assert len({doc for doc, _ in seen}) == total
    assert len(seen) == expected_chunks
    assert run_embed(cfg).embedded == 0  # nothing left to do


def test_parquet_input_embeds_only_pending_known_documents(clean_db: str, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ingest_file(sample_subset(tmp_path / "s.jsonl", n_other=60), database_url=clean_db)
    storage = tmp_path / "storage"
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, content_hash, title, text FROM documents ORDER BY id")).all()
    first = run_embed(config(clean_db, storage, max_actors=1))
    with engine.begin() as conn:  # one document changes after the export: its old text is not embedded
        conn.execute(text("UPDATE documents SET content_hash = 'new' WHERE id = :id"), {"id": rows[0].id})
        conn.execute(text("DELETE FROM document_embeddings WHERE document_id = :id"), {"id": rows[1].id})
    table = pa.table(
        {
            "id": [r.id for r in rows] + [10**9],  # an id PostgreSQL does not know is ignored
            "content_hash": [r.content_hash for r in rows] + ["x"],
            "title": [r.title for r in rows] + ["ghost"],
            "text": [r.text for r in rows] + ["ghost"],
        }
    )
    pq.write_table(table, tmp_path / "docs.parquet")
    summary = run_embed(config(clean_db, storage, max_actors=1, input_path=str(tmp_path / "docs.parquet")))
    assert first.embedded == len(rows)
    assert summary.embedded == 1  # rows[1] only: rows[0] changed since the export
    from storage.errors import DocumentFileError

    pq.write_table(pa.table({"id": [1], "body": ["x"]}), tmp_path / "bad.parquet")
    for bad in (tmp_path / "bad.parquet", tmp_path / "missing"):
        with pytest.raises(DocumentFileError):
            run_embed(config(clean_db, storage, input_path=str(bad)))


def write_projected_model(path: Path, dimension: int) -> Path:
    """A real, different model: MiniLM with a fixed random projection to ``dimension`` dims."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    base = load_model(describe_model("default"), device="cpu", threads=1)
    torch.manual_seed(7)
    dense = Dense(
        in_features=384, out_features=dimension, bias=False, activation_function=torch.nn.Identity()
    )
    model = SentenceTransformer(modules=[base[0], base[1], dense, Normalize()], device="cpu")
    model.save(str(path))
    return path


@pytest.fixture
def pulse(clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PULSE_DATABASE__URL", clean_db)
    monkeypatch.setenv("PULSE_STORAGE__URI", str(tmp_path / "storage"))
    monkeypatch.setenv("PULSE_RAY__NAMESPACE", ray.get_runtime_context().namespace)
    monkeypatch.setenv("PULSE_EMBED__MAX_ACTORS", "2")
    get_settings.cache_clear()
    yield cli_runner(capsys)
    get_settings.cache_clear()


def test_models_cli_errors_come_before_any_work(pulse, tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    code, _, err = pulse("models", "add", "acme/no-such-model")
    assert (
        code == 2
        and err.startswith("error: embedding model 'acme/no-such-model' not found")
        and err.count("\n") == 1
    )
    (tmp_path / "empty").mkdir()
    code, _, err = pulse("models", "add", str(tmp_path / "empty"))
    assert code == 2 and "not a model folder" in err
    code, _, err = pulse("models", "add", "default", "--overlap", "80", "--chunk-tokens", "64")
    assert code == 2 and "overlap (80) must be smaller than chunk_tokens (64)" in err
    code, _, err = pulse("models", "add", "default", "--chunk-tokens", "4000")
    assert code == 2 and "lower --chunk-tokens" in err
    code, _, err = pulse("models", "activate", "1", "--overlap", "8")
    assert code == 2 and "already has its recipe" in err
    code, _, err = pulse("embed", "--model", "acme/no-such-model")
    assert code == 2 and "not found" in err
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM embedding_models")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM embed_runs")).scalar_one() == 0
    assert not (tmp_path / "storage").exists()


def test_activating_a_model_of_another_dimension_builds_beside_and_switches(  # type: ignore[no-untyped-def]
    pulse, clean_db: str, engine, tmp_path: Path
) -> None:
    ingest_file(sample_subset(tmp_path / "s.jsonl", n_other=80), database_url=clean_db)
    code, out, _ = pulse("embed")
    assert code == 0, out
    storage = tmp_path / "storage"
    old_files = {p: p.read_bytes() for p in storage.rglob("*.parquet")}
    with engine.connect() as conn:
        old_id, total = conn.execute(
            text("SELECT id, (SELECT count(*) FROM documents) FROM embedding_models WHERE status = 'active'")
        ).one()
    namespace = ray.get_runtime_context().namespace
    old_index = get_or_create_index_actor(
        IndexActorConfig(
            database_url=clean_db,
            storage_uri=str(storage),
            model_id=old_id,
            dimension=384,
            namespace=namespace,
        )
    )
    assert ray.get(old_index.wait_ready.remote(60))
    folder = write_projected_model(tmp_path / "minilm-128", 128)
    code, out, _ = pulse("models", "add", str(folder))
    assert code == 0 and "status building" in out
    code, out, _ = pulse("models", "list")
    assert "building" in out and "active" in out and "128" in out
    with engine.connect() as conn:
        new_id = conn.execute(text("SELECT id FROM embedding_models WHERE status = 'building'")).scalar_one()
    code, out, _ = pulse("models", "activate", str(new_id), "--wait")
    assert code == 0 and f"entry {new_id} is active" in out and f"replaced entry {old_id}" in out
    with engine.connect() as conn:
        statuses = dict(conn.execute(text("SELECT id, status FROM embedding_models")).all())
        dims = dict(conn.execute(text("SELECT id, dimension FROM embedding_models")).all())
        counts = dict(
            conn.execute(text("SELECT model_id, count(*) FROM document_embeddings GROUP BY model_id")).all()
        )
    assert statuses == {old_id: "retired", new_id: "active"} and dims == {old_id: 384, new_id: 128}
    assert counts == {old_id: total, new_id: total}
    # The old files are untouched and its index still answers in 384 dimensions.
    assert all(p.read_bytes() == data for p, data in old_files.items())
    assert ray.get(old_index.stats.remote()).index.size == total
    probe = np.random.default_rng(0).normal(size=(1, 384)).astype(np.float32)
    assert len(ray.get(old_index.search.remote(probe, 3, None)).ids[0]) == 3
    new_index = get_or_create_index_actor(
        IndexActorConfig(
            database_url=clean_db,
            storage_uri=str(storage),
            model_id=new_id,
            dimension=128,
            namespace=namespace,
        )
    )
    try:
        assert ray.get(new_index.wait_ready.remote(60))
        stats = ray.get(new_index.stats.remote())
        assert stats.index.size == total and stats.index.dimension == 128
        # `pulse embed` now serves the active (new) entry: nothing left to do for it.
        code, out, _ = pulse("embed")
        assert code == 0 and "0 embedded (" in out and f"(id {new_id})" in out
    finally:
        ray.kill(new_index, no_restart=True)
        ray.kill(old_index, no_restart=True)


def test_background_activation_survives_a_crash_of_its_actor(clean_db: str, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from cluster.ground.constants import activation_actor_name
    from cluster.top.activation import launch_activation
    from jobs.embed.registry import entry_spec
    from storage.database import make_session_factory, session_scope
    from storage.model_registry import ModelRegistry

    ingest_file(sample_subset(tmp_path / "s.jsonl", n_other=150), database_url=clean_db)
    storage = tmp_path / "storage"
    first = run_embed(config(clean_db, storage, max_actors=1))
    _, spec = entry_spec("default", recipe={"fields": ["title"]})
    with session_scope(make_session_factory(engine)) as session:
        entry = ModelRegistry(session).register(spec)
    namespace = ray.get_runtime_context().namespace
    cfg = replace(config(clean_db, storage, max_actors=1, rows_per_file=32), model_id=entry.id)
    actor = launch_activation(cfg, namespace)
    assert ray.get(actor.status.remote())["status"] == "running"
    # Crash it once some files are committed: Ray restarts it and it carries on from there.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(
                text("SELECT count(*) FROM vector_files WHERE model_id = :m"), {"m": entry.id}
            ).scalar_one():
                break
        time.sleep(0.2)
    ray.kill(actor, no_restart=False)
    wait_until_active(engine, entry.id)
    with engine.connect() as conn:
        embedded = conn.execute(
            text("SELECT count(*) FROM document_embeddings WHERE model_id = :m"), {"m": entry.id}
        ).scalar_one()
        statuses = dict(conn.execute(text("SELECT id, status FROM embedding_models")).all())
    assert embedded == first.embedded and statuses[first.model_id] == "retired"
    assert set(live_rows(engine, storage, entry.id).values()) == {1}
    # Its work done, the actor leaves and frees its name for a later activation.
    while time.monotonic() < deadline:
        try:
            ray.get_actor(activation_actor_name(entry.id), namespace=namespace)
        except ValueError:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the activation actor did not exit after the switch")


def test_an_activation_cut_off_by_a_restart_is_resumed(clean_db: str, engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from cluster.top.activation import resume_activations
    from jobs.embed.registry import entry_spec
    from storage.database import make_session_factory, session_scope
    from storage.model_registry import ModelRegistry

    ingest_file(sample_subset(tmp_path / "s.jsonl", n_other=40), database_url=clean_db)
    storage = tmp_path / "storage"
    cfg = config(clean_db, storage, max_actors=1)
    first = run_embed(cfg)
    _, spec = entry_spec("default", recipe={"fields": ["title"]})
    with session_scope(make_session_factory(engine)) as session:
        registry = ModelRegistry(session)
        entry = registry.register(spec)
        idle = registry.register(entry_spec("default", recipe={"overlap": 8})[1])  # added, never activated
        registry.request_activation(entry.id)  # asked for; then the cluster went down before it ran
    namespace = ray.get_runtime_context().namespace
    assert resume_activations(replace(cfg, model_id=None), namespace) == [entry.id]
    statuses = wait_until_active(engine, entry.id)
    assert statuses == {first.model_id: "retired", entry.id: "active", idle.id: "building"}
    assert resume_activations(cfg, namespace) == []  # nothing left to resume
