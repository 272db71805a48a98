"""Benchmark: search quality of Pulse's keyword, vector and hybrid search on SciFact (train split).

Corpus ``../shared/data/scifact``: 5,183 abstracts, 809 train claims with relevance judgments. Metrics
(``retrieval_metrics.py``, trec_eval definitions): nDCG@10 and Recall@100, over all queries and over two
fixed halves (queries sorted by numeric id: even positions = "tune", odd = "held_out"). Prints one JSON
object; progress goes to stderr.

    python bench/search_quality.py                 # about 2 minutes once the vectors are cached
    python bench/search_quality.py --queries 200 --no-tune
    python bench/search_quality.py --no-cache --out var/search_quality.json

Systems, all in the same run:

- ``keyword``: ``actors.keyword_index.KeywordIndex`` with its defaults (BM25 lucene, k1 1.2, b 0.75,
  English stemmer and stopwords) over ``title\ntext`` (as the index feed gives it).
- ``vector_document`` / ``vector_chunk``: all-MiniLM-L6-v2 vectors made by the embed job's own code
  (``TextRecipe`` default: title + text in 254-token windows overlapping 32, document vector = normalised
  mean of its windows; ``encode_tokens``), queries encoded as the search app does (``encode``), searched
  exactly through ``actors.vector_index.VectorIndex`` (kind "flat"); at chunk level a document ranks by
  its best window. Vectors are cached in ``var/bench-cache/`` keyed by model revision, recipe and data
  (``--no-cache`` encodes again: about 10 minutes on 2 CPU cores).
- ``hybrid_rrf_*``: RRF k=60 of keyword and vector (top 100 each).
- ``hybrid_default_*``: ``serve_apps.search.fusion.DEFAULT_PARAMS`` (keyword scores normalised by the
  query's upper bound when the method is "convex", as Pulse serves it).
- baselines a user could assemble: ``baseline_bm25s`` (bm25s defaults, k1 1.5, English stopwords and
  stemmer via ``bm25s.tokenize``), ``baseline_minilm`` (``SentenceTransformer.encode`` truncation at 256
  tokens: the first window of each document, so no second encoding), ``baseline_rrf`` (RRF k=60) and
  ``baseline_minmax`` (min-max, 0.5/0.5), both over those two top-100 lists.

``tuning`` (skip with ``--no-tune``) runs the fusion grid of ``tuning_grid()`` on the tune half only,
ranks it by mean nDCG@10 over document and chunk level, and reports the best with their held-out
scores: that is how ``DEFAULT_PARAMS`` was chosen; ``default_is_best`` says whether it still is.
``target_met``: the default hybrid reaches nDCG@10 0.73 and the best single system + 0.04 (all queries).

The front door (``front_door`` in the JSON), in the same run: a fresh database and a private platform
(``bench/front_door.py``: `pulse up --no-sample` on free ports with its own Ray node), the corpus written as
a user writes it for `pulse ingest` (id, title, text: no language, no URL), `pulse ingest FILE --source
scifact`, `pulse embed`, /readyz until the index and the keyword index hold every document, then every
query over HTTP (``GET /v1/search?q=...&k=100&mode=keyword|vector|hybrid``, level document, ``--clients``
at a time), each result mapped back to its SciFact id by its URL (``urn:pulse:scifact:<id>``), scored by
the same code on the same halves. ``difference``: front door minus the core system of the same run
(keyword -> ``keyword``, vector -> ``vector_document``, hybrid -> ``hybrid_default_document``);
``target``: keyword and hybrid nDCG@10 within 0.01 of the core, hybrid >= 0.74. Then `pulse down` (only
the node it started) and the database is dropped (``--keep`` keeps it).

    python bench/search_quality.py --core-only            # the figures above only
    python bench/search_quality.py --front-door-only      # the `pulse` + HTTP path only (no comparison)
    python bench/search_quality.py --limit-docs 500 --limit-queries 50 --no-tune   # a quick subset
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from common import ROOT, SHARED, emit

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = SHARED / "scifact"
CACHE = ROOT / "var" / "bench-cache"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class SciFact:
    doc_ids: list[int]
    titles: list[str]
    texts: list[str]
    query_ids: list[str]
    queries: list[str]
    qrels: dict[str, dict[int, int]]


def load_scifact() -> SciFact:
    doc_ids, titles, texts = [], [], []
    with (DATA / "corpus.jsonl").open(encoding="utf-8") as fh:
        for row in map(json.loads, fh):
            doc_ids.append(int(row["_id"]))
            titles.append(row.get("title") or "")
            texts.append(row.get("text") or "")
    qrels: dict[str, dict[int, int]] = {}
    with (DATA / "qrels" / "train.tsv").open(encoding="utf-8") as fh:
        next(fh)  # header
        for line in fh:
            qid, did, score = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, {})[int(did)] = int(score)
    query_ids, queries = [], []
    with (DATA / "queries_train.jsonl").open(encoding="utf-8") as fh:
        for row in map(json.loads, fh):
            if row["_id"] in qrels:
                query_ids.append(row["_id"])
                queries.append(row["text"])
    return SciFact(doc_ids, titles, texts, query_ids, queries, qrels)


@dataclass(frozen=True)
class DenseVectors:
    """Pulse's vectors of the corpus: per chunk, per document (mean of chunks), and of the queries."""

    chunk_doc: np.ndarray  # int64 row -> document id, one row per chunk
    chunk_vectors: np.ndarray
    doc_vectors: np.ndarray  # one per document, in corpus order
    query_vectors: np.ndarray  # one per query, in query order
    encode_s: float
    model: str
    recipe: dict[str, Any]


def dense_vectors(data: SciFact, *, use_cache: bool) -> DenseVectors:
    """Encode with the embed job's own chunking and encoding (``TokenizeBatch`` / ``EncodeBatch``), and
    queries as the search app does (``encode`` of ``query_prefix + query``); cached by model + recipe."""
    from jobs.embed.encode import describe_model
    from jobs.embed.recipe import TextRecipe

    info = describe_model("default")
    recipe = TextRecipe()  # the job's default recipe
    digest = hashlib.sha256()
    for path in (DATA / "corpus.jsonl", DATA / "queries_train.jsonl"):
        digest.update(path.read_bytes())
    digest.update(json.dumps([data.doc_ids, data.query_ids]).encode())  # a subset has its own vectors
    key = hashlib.sha256(f"{info.revision}|{recipe.key}|{digest.hexdigest()}".encode()).hexdigest()[:16]
    cache = CACHE / f"scifact-{key}.npz"
    if use_cache and cache.is_file():
        log(f"dense vectors from {cache}")
        with np.load(cache) as z:
            return DenseVectors(
                z["chunk_doc"],
                z["chunk_vectors"],
                z["doc_vectors"],
                z["query_vectors"],
                float(z["encode_s"]),
                info.name,
                recipe.to_json(),
            )
    vectors = _encode(data, info, recipe)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        chunk_doc=vectors.chunk_doc,
        chunk_vectors=vectors.chunk_vectors,
        doc_vectors=vectors.doc_vectors,
        query_vectors=vectors.query_vectors,
        encode_s=vectors.encode_s,
    )
    tmp.replace(cache)
    return vectors


def _encode(data: SciFact, info: Any, recipe: Any) -> DenseVectors:
    import torch

    from jobs.embed.chunking import chunk_document, pool_documents, token_template
    from jobs.embed.encode import encode, encode_tokens, load_model, load_tokenizer, model_token_limit

    started = time.perf_counter()
    tokenizer = load_tokenizer(info)
    template = token_template(tokenizer, recipe.document_prefix)
    size = recipe.content_tokens(
        max_seq_length=model_token_limit(info, tokenizer),
        special_tokens=len(template.tail),
        prefix_tokens=len(template.head),
    )
    tokenizer.model_max_length = 1 << 30  # whole documents, then windows (as TokenizeBatch does)
    texts = [recipe.text_of(t, x) for t, x in zip(data.titles, data.texts, strict=True)]
    flat: list[list[int]] = []
    counts: list[int] = []
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    for ids, offsets in zip(encoded["input_ids"], encoded["offset_mapping"], strict=True):
        chunks = chunk_document(
            ids, offsets, template=template, size=size, overlap=recipe.overlap, max_chunks=recipe.max_chunks
        )
        flat.extend(c.input_ids for c in chunks)
        counts.append(len(chunks))
    if min(counts) == 0:
        raise SystemExit("a SciFact document has no text: the benchmark expects every one to have some")
    model = load_model(info, device="cpu", threads=torch.get_num_threads())
    log(f"encoding {len(flat)} chunks of {len(texts)} documents ({size} tokens per window)")
    chunk_vectors = encode_tokens(model, flat, batch_size=64, normalize=info.normalize)
    doc_vectors = pool_documents(chunk_vectors, counts)
    query_vectors = encode(
        model, [recipe.query_prefix + q for q in data.queries], batch_size=64, normalize=info.normalize
    )
    chunk_doc = np.repeat(np.asarray(data.doc_ids, dtype=np.int64), counts)
    seconds = time.perf_counter() - started
    log(f"encoded in {seconds:.1f} s")
    return DenseVectors(
        chunk_doc, chunk_vectors, doc_vectors, query_vectors, seconds, info.name, recipe.to_json()
    )


Run = tuple[list[int], list[float]]
Runs = dict[str, Run]  # query id -> one ranked run


def halves(query_ids: list[str]) -> tuple[list[str], list[str]]:
    """(tune, held-out): the queries at even / odd positions once sorted by numeric id."""
    ordered = sorted(query_ids, key=int)
    return ordered[0::2], ordered[1::2]


def scores_of(runs: Runs, data: SciFact, tune: list[str], held_out: list[str]) -> dict[str, Any]:
    from retrieval_metrics import evaluate

    ranked = {q: ids for q, (ids, _) in runs.items()}
    out = {}
    for name, queries in (("all", data.query_ids), ("tune", tune), ("held_out", held_out)):
        m = evaluate(ranked, data.qrels, queries)
        out[name] = {"ndcg@10": round(m["ndcg@10"], 4), "recall@100": round(m["recall@100"], 4)}
    return out


def keyword_runs(data: SciFact, texts: list[str], depth: int, **search: Any) -> tuple[Runs, dict[str, float]]:
    """Pulse's ``KeywordIndex`` with its defaults, every document in English."""
    from actors.keyword_index import KeywordIndex

    index = KeywordIndex()
    t0 = time.perf_counter()
    index.upsert(data.doc_ids, texts, ["en"] * len(texts))
    t1 = time.perf_counter()
    index.refresh()
    t2 = time.perf_counter()
    runs: Runs = {}
    for qid, query in zip(data.query_ids, data.queries, strict=True):
        hits = index.search(query, depth, **search)
        runs[qid] = (hits.ids[0], hits.scores[0])
    t3 = time.perf_counter()
    timing = {
        "analyse_s": round(t1 - t0, 3),
        "build_s": round(t2 - t1, 3),
        "ms_per_query": round((t3 - t2) / max(1, len(data.queries)) * 1000, 3),
    }
    return runs, timing


def plain_bm25s_runs(data: SciFact, texts: list[str], depth: int) -> Runs:
    """What a user assembles from bm25s' README: defaults (lucene, k1 1.5, b 0.75), English stopwords
    and the Snowball English stemmer through ``bm25s.tokenize``."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False
    )
    tokens = bm25s.tokenize(data.queries, stopwords="en", stemmer=stemmer, show_progress=False)
    rows, scores = retriever.retrieve(tokens, k=depth, show_progress=False, n_threads=1)
    doc_ids = np.asarray(data.doc_ids)
    runs: Runs = {}
    for qid, row, row_scores in zip(data.query_ids, rows, scores, strict=True):
        keep = row_scores > 0
        runs[qid] = ([int(i) for i in doc_ids[row[keep]]], [float(x) for x in row_scores[keep]])
    return runs


def vector_runs(
    data: SciFact,
    keys: np.ndarray,
    groups: np.ndarray | None,
    vectors: np.ndarray,
    queries: np.ndarray,
    depth: int,
) -> tuple[Runs, str]:
    """Exact inner-product search through Pulse's ``VectorIndex``; with ``groups`` (the document of each
    key) an index of chunks, each document ranked by its best chunk (as the index actor collapses)."""
    from storage.vector_files import CHUNK_SLOTS

    if groups is not None:
        starts = np.r_[0, np.flatnonzero(np.diff(groups)) + 1]
        chunk_no = np.arange(len(groups)) - np.repeat(starts, np.diff(np.r_[starts, len(groups)]))
        keys = groups * CHUNK_SLOTS + chunk_no
    k = len(keys) if groups is not None else depth  # every chunk: a complete ranking of documents
    try:
        from actors.vector_index import VectorIndex
        from actors.vector_search import IndexConfig

        index = VectorIndex(dimension=vectors.shape[1], config=IndexConfig(kind="flat"))
        if groups is None:
            index.upsert(keys, vectors)
        else:
            index.upsert(groups, vectors, keys=keys)
        backend = "actors.vector_index.VectorIndex (exact, kind=flat)"
        hits_ids: list[list[int]] = []
        hits_scores: list[list[float]] = []
        for start in range(0, len(queries), 256):
            hits = index.search(queries[start : start + 256], k)
            hits_ids.extend(hits.ids)
            hits_scores.extend(hits.scores)
    except TypeError as exc:  # VectorIndex's signature is changing; measure the same exact search
        import faiss

        log(f"VectorIndex did not accept the benchmark's call ({exc}); using faiss.IndexFlatIP")
        backend = f"faiss.IndexFlatIP (VectorIndex refused: {exc})"
        flat = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
        flat.add_with_ids(np.ascontiguousarray(vectors), np.ascontiguousarray(keys, dtype=np.int64))
        scores, found = flat.search(np.ascontiguousarray(queries), min(k, len(keys)))
        hits_ids = [[int(i) for i in row if i >= 0] for row in found]
        hits_scores = [
            [float(s) for s, i in zip(srow, row, strict=True) if i >= 0]
            for srow, row in zip(scores, found, strict=True)
        ]
    runs: Runs = {}
    for qid, ids, scores in zip(data.query_ids, hits_ids, hits_scores, strict=True):
        if groups is None:
            runs[qid] = (ids[:depth], scores[:depth])
            continue
        best: dict[int, float] = {}
        for key, score in zip(ids, scores, strict=True):
            best.setdefault(key // CHUNK_SLOTS, score)
            if len(best) == depth:
                break
        runs[qid] = (list(best), list(best.values()))
    return runs, backend


def fused(params: Any, *runs: Runs, queries: list[str] | None = None) -> Runs:
    from serve_apps.search.fusion import fuse

    chosen = queries if queries is not None else list(runs[0])
    return {q: fuse([r[q] for r in runs], k=100, params=params) for q in chosen}


def tuning_grid() -> list[Any]:
    """Every fusion the tuning compares: method x missing-document value x depth x keyword weight."""
    from serve_apps.search.fusion import FusionParams

    weights = [round(0.3 + 0.05 * i, 2) for i in range(9)]  # keyword weight 0.30 ... 0.70
    grid = []
    for depth in (100, 200, 1000):
        for w in weights:
            grid.append(FusionParams(method="rrf", weights=(w, round(1 - w, 2)), rrf_k=60, depth=depth))
            for method in ("convex", "minmax", "zscore"):
                for missing in ("zero", "min"):
                    if method == "minmax" and missing == "min":
                        continue  # the same as "zero" for min-max
                    grid.append(
                        FusionParams(
                            method=method, weights=(w, round(1 - w, 2)), missing=missing, depth=depth
                        )  # type: ignore[arg-type]
                    )
    return grid


def tune(
    data: SciFact,
    keyword: Runs,
    keyword_normalised: Runs,
    vectors: dict[str, Runs],
    tune_queries: list[str],
    held_out: list[str],
) -> dict[str, Any]:
    """Each grid point on the tune half at both vector levels; the best by their mean, checked on the
    held-out half. ``convex`` fuses the keyword scores normalised by the query's upper bound."""
    from retrieval_metrics import evaluate

    from serve_apps.search.fusion import DEFAULT_PARAMS

    def ndcg(params: Any, level: str, queries: list[str]) -> float:
        kw = keyword_normalised if params.method == "convex" else keyword
        ranked = {q: ids for q, (ids, _) in fused(params, kw, vectors[level], queries=queries).items()}
        return evaluate(ranked, data.qrels, queries)["ndcg@10"]

    t0 = time.perf_counter()
    rows = []
    for params in tuning_grid():
        per_level = {level: ndcg(params, level, tune_queries) for level in vectors}
        rows.append((sum(per_level.values()) / len(per_level), per_level, params))
    rows.sort(key=lambda r: -r[0])
    log(f"tuned {len(rows)} fusions on {len(tune_queries)} queries in {time.perf_counter() - t0:.0f} s")

    def describe(row: tuple[float, dict[str, float], Any]) -> dict[str, Any]:
        mean, per_level, p = row
        return {
            "method": p.method,
            "weights": list(p.weights),
            "missing": p.missing,
            "depth": p.depth,
            "rrf_k": p.rrf_k,
            "tune_ndcg@10_mean": round(mean, 4),
            "tune_ndcg@10": {k: round(v, 4) for k, v in per_level.items()},
            "held_out_ndcg@10": {level: round(ndcg(p, level, held_out), 4) for level in vectors},
        }

    best_by_method = {}
    for row in rows:
        best_by_method.setdefault(row[2].method, row)
    default_rank = next((i for i, r in enumerate(rows) if r[2] == DEFAULT_PARAMS), None)
    return {
        "tuned_on": "tune half: queries at even positions once sorted by numeric id",
        "criterion": "mean nDCG@10 of the document-level and chunk-level hybrids on the tune half",
        "grid_size": len(rows),
        "best": [describe(r) for r in rows[:5]],
        "best_per_method": {m: describe(r) for m, r in best_by_method.items()},
        "default_rank_on_tune": None if default_rank is None else default_rank + 1,
        "default_is_best": default_rank == 0,
    }


def core(data: SciFact, *, scifact: SciFact, use_cache: bool, no_tune: bool) -> dict[str, Any]:
    """Pulse's cores and the plain baselines in this process: the figures of the module docstring. Every
    query of ``scifact`` is encoded (and cached) with the corpus, so that fewer queries
    (``--limit-queries``) reuse the cache."""
    from serve_apps.search.fusion import DEFAULT_PARAMS, MINMAX, RRF

    encoded = SciFact(
        data.doc_ids, data.titles, data.texts, scifact.query_ids, scifact.queries, scifact.qrels
    )
    dense = dense_vectors(encoded, use_cache=use_cache)
    row = {q: i for i, q in enumerate(scifact.query_ids)}
    query_vectors = dense.query_vectors[[row[q] for q in data.query_ids]]
    tune_queries, held_out = halves(data.query_ids)
    depth = 1000

    log("keyword: Pulse's KeywordIndex, and plain bm25s")
    keyword_texts = [f"{t}\n{x}" for t, x in zip(data.titles, data.texts, strict=True)]  # as the index feed
    keyword, keyword_timing = keyword_runs(data, keyword_texts, depth)
    keyword_normalised, _ = keyword_runs(data, keyword_texts, depth, normalize=True)
    plain_bm25 = plain_bm25s_runs(
        data, [f"{t} {x}" for t, x in zip(data.titles, data.texts, strict=True)], 100
    )

    log("vector: document and chunk level through VectorIndex, plain MiniLM (first window)")
    doc_keys = np.asarray(data.doc_ids, dtype=np.int64)
    vector_doc, backend = vector_runs(data, doc_keys, None, dense.doc_vectors, query_vectors, depth)
    vector_chunk, _ = vector_runs(data, doc_keys, dense.chunk_doc, dense.chunk_vectors, query_vectors, depth)
    first = np.r_[0, np.flatnonzero(np.diff(dense.chunk_doc)) + 1]
    plain_minilm, _ = vector_runs(
        data, dense.chunk_doc[first], None, dense.chunk_vectors[first], query_vectors, 100
    )
    vectors = {"document": vector_doc, "chunk": vector_chunk}

    def hybrid(params: Any, vector: Runs) -> Runs:
        kw = keyword_normalised if params.method == "convex" else keyword
        return fused(params, kw, vector)

    systems: dict[str, Runs] = {
        "keyword": keyword,
        "vector_document": vector_doc,
        "vector_chunk": vector_chunk,
        "hybrid_rrf_document": hybrid(RRF, vector_doc),
        "hybrid_rrf_chunk": hybrid(RRF, vector_chunk),
        "hybrid_default_document": hybrid(DEFAULT_PARAMS, vector_doc),
        "hybrid_default_chunk": hybrid(DEFAULT_PARAMS, vector_chunk),
        "baseline_bm25s": plain_bm25,
        "baseline_minilm": plain_minilm,
        "baseline_rrf": fused(RRF, plain_bm25, plain_minilm),
        "baseline_minmax": fused(MINMAX, plain_bm25, plain_minilm),
    }
    metrics = {name: scores_of(runs, data, tune_queries, held_out) for name, runs in systems.items()}

    def ndcg(name: str, part: str = "all") -> float:
        return float(metrics[name][part]["ndcg@10"])

    comparisons: dict[str, Any] = {}
    for part in ("all", "tune", "held_out"):
        best_single = max(ndcg("keyword", part), ndcg("vector_document", part), ndcg("vector_chunk", part))
        doc, chunk = ndcg("hybrid_default_document", part), ndcg("hybrid_default_chunk", part)
        comparisons[part] = {
            "best_single": best_single,
            "default_document_minus_best_single": round(doc - best_single, 4),
            "default_chunk_minus_best_single": round(chunk - best_single, 4),
            "default_document_minus_hybrid_rrf": round(doc - ndcg("hybrid_rrf_document", part), 4),
            "default_document_minus_baseline_minmax": round(doc - ndcg("baseline_minmax", part), 4),
            "default_document_minus_baseline_rrf": round(doc - ndcg("baseline_rrf", part), 4),
            "keyword_minus_baseline_bm25s": round(ndcg("keyword", part) - ndcg("baseline_bm25s", part), 4),
        }
    best_all = comparisons["all"]["best_single"]
    target = {
        "rule": "hybrid default nDCG@10 >= 0.73 and >= best of keyword and vector + 0.04 (all queries)",
        "document": ndcg("hybrid_default_document") >= 0.73
        and ndcg("hybrid_default_document") >= best_all + 0.04,
        "chunk": ndcg("hybrid_default_chunk") >= 0.73 and ndcg("hybrid_default_chunk") >= best_all + 0.04,
    }

    result: dict[str, Any] = {
        "model": dense.model,
        "recipe": dense.recipe,
        "chunks": len(dense.chunk_doc),
        "encode_s": round(dense.encode_s, 1),
        "vector_backend": backend,
        "keyword_timing": keyword_timing,
        "default_fusion": {
            "method": DEFAULT_PARAMS.method,
            "weights": list(DEFAULT_PARAMS.weights or ()),
            "missing": DEFAULT_PARAMS.missing,
            "depth": DEFAULT_PARAMS.depth,
            "keyword_scores": "normalised by the query's upper bound"
            if DEFAULT_PARAMS.method == "convex"
            else "BM25",
        },
        "metrics": metrics,
        "comparisons": comparisons,
        "target_met": target,
    }
    if not no_tune:
        result["tuning"] = tune(data, keyword, keyword_normalised, vectors, tune_queries, held_out)
    return result


def subset(data: SciFact, *, queries: int | None, docs: int | None) -> SciFact:
    """The first ``queries`` queries (file order) and, with ``docs``, a corpus of every document they
    judge plus the first others in corpus order up to ``docs`` documents in all (for quick runs)."""
    n = len(data.query_ids) if queries is None else max(1, queries)
    query_ids, texts = data.query_ids[:n], data.queries[:n]
    qrels = {q: data.qrels[q] for q in query_ids}
    if docs is None:
        return SciFact(data.doc_ids, data.titles, data.texts, query_ids, texts, qrels)
    judged = {d for q in query_ids for d in qrels[q]}
    room = max(0, docs - len(judged))
    keep: list[int] = []
    for i, doc_id in enumerate(data.doc_ids):
        if doc_id in judged:
            keep.append(i)
        elif room > 0:
            keep.append(i)
            room -= 1
    return SciFact(
        [data.doc_ids[i] for i in keep],
        [data.titles[i] for i in keep],
        [data.texts[i] for i in keep],
        query_ids,
        texts,
        qrels,
    )


# ------------------------------------------------------------------------------------------ front door
#: What the front door measures (``/v1/search`` at its default level, document) and the core system of
#: the same run each mode is compared with.
FRONT_DOOR = {"keyword": "keyword", "vector": "vector_document", "hybrid": "hybrid_default_document"}
#: Source name given to `pulse ingest`; a document without a URL gets ``urn:pulse:<source>:<id>``.
SOURCE = "scifact"
URN_PREFIX = f"urn:pulse:{SOURCE}:"


def write_ingest_file(data: SciFact, path: Path) -> None:
    """The corpus as a user writes it for `pulse ingest`: id, title, text (no language, no URL)."""
    with path.open("w", encoding="utf-8") as fh:
        for doc_id, title, text in zip(data.doc_ids, data.titles, data.texts, strict=True):
            fh.write(json.dumps({"id": str(doc_id), "title": title, "text": text}) + "\n")


async def http_runs(
    api_url: str, data: SciFact, mode: str, *, clients: int, k: int = 100
) -> tuple[Runs, dict[str, Any]]:
    """Every query through ``GET /v1/search?k=<k>&mode=<mode>`` with ``clients`` concurrent clients; the
    runs keyed by query id (SciFact ids read back from each result's URL) and what the requests cost."""
    import httpx

    runs: Runs = {}
    latencies: list[float] = []
    counts = {"partial": 0, "retried_503": 0, "foreign_results": 0}
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for item in zip(data.query_ids, data.queries, strict=True):
        queue.put_nowait(item)

    async def search(client: httpx.AsyncClient, qid: str, query: str) -> None:
        for _ in range(30):
            t0 = time.perf_counter()
            resp = await client.get("/v1/search", params={"q": query, "k": k, "mode": mode})
            if resp.status_code == 503:  # an index part is (re)loading: the API says when to retry
                counts["retried_503"] += 1
                await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                continue
            resp.raise_for_status()
            latencies.append(time.perf_counter() - t0)
            body = resp.json()
            counts["partial"] += bool(body.get("partial"))
            ids: list[int] = []
            scores: list[float] = []
            for hit in body["results"]:
                if not hit["url"].startswith(URN_PREFIX):
                    counts["foreign_results"] += 1
                    continue
                ids.append(int(hit["url"][len(URN_PREFIX) :]))
                scores.append(float(hit["score"]))
            runs[qid] = (ids, scores)
            return
        raise RuntimeError(f"query {qid}: /v1/search answered 503 thirty times")

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            qid, query = queue.get_nowait()
            await search(client, qid, query)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=api_url, timeout=120, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        seconds = time.perf_counter() - t0
    ms = np.asarray(latencies) * 1000
    return runs, {
        "requests": len(latencies),
        "clients": clients,
        "seconds": round(seconds, 1),
        "req_per_s": round(len(latencies) / seconds, 1) if seconds else None,
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p95_ms": round(float(np.percentile(ms, 95)), 1) if len(ms) else None,
        **counts,
    }


def front_door(
    data: SciFact,
    *,
    tune_queries: list[str],
    held_out: list[str],
    clients: int,
    num_cpus: int | None,
    keep: bool,
    modes: list[str],
) -> dict[str, Any]:
    """A fresh database and a private platform (`pulse up --no-sample`), the corpus through `pulse ingest`
    and `pulse embed`, every query over HTTP; `pulse down` and the database dropped afterwards."""
    from front_door import Platform

    out: dict[str, Any] = {
        "path": (
            "pulse up --no-sample (fresh database, own Ray node); pulse ingest <corpus: id, title, text> "
            f"--source {SOURCE}; pulse embed; GET /v1/search?q=...&k=100&mode=<mode> (level document)"
        )
    }
    with Platform(keep=keep, num_cpus=num_cpus) as platform:
        out["database"] = platform.name
        corpus = platform.folder / f"{SOURCE}.jsonl"
        write_ingest_file(data, corpus)
        platform.up("--no-sample")
        out["ingest"] = platform.pulse("ingest", str(corpus), "--source", SOURCE).strip().splitlines()[-1:]
        out["embed"] = platform.pulse("embed").strip().splitlines()[-1:]
        t0 = time.perf_counter()
        ready = platform.wait_ready(documents=len(data.doc_ids))
        out["index_wait_s"] = round(time.perf_counter() - t0, 1)
        out["readyz"] = {k: ready.get(k) for k in ("model", "vectors", "keyword_documents")}
        runs: dict[str, Runs] = {}
        out["http"] = {}
        for mode in modes:
            log(f"front door: {len(data.query_ids)} queries, mode={mode}, {clients} clients")
            runs[mode], out["http"][mode] = asyncio.run(
                http_runs(platform.api_url, data, mode, clients=clients)
            )
        out["commands_s"] = dict(platform.timings)
    out["metrics"] = {mode: scores_of(runs[mode], data, tune_queries, held_out) for mode in modes}
    return out


def compare(core_metrics: dict[str, Any], door: dict[str, Any]) -> dict[str, Any]:
    """Front door minus core, per mode and query half, and the issue's target."""
    difference: dict[str, Any] = {}
    for mode, scores in door["metrics"].items():
        base = core_metrics[FRONT_DOOR[mode]]
        difference[mode] = {
            part: {
                metric: round(scores[part][metric] - base[part][metric], 4)
                for metric in ("ndcg@10", "recall@100")
            }
            for part in scores
        }

    def ndcg_gap(mode: str) -> float | None:
        return float(difference[mode]["all"]["ndcg@10"]) if mode in difference else None

    keyword_gap, hybrid_gap = ndcg_gap("keyword"), ndcg_gap("hybrid")
    hybrid = door["metrics"].get("hybrid", {}).get("all", {}).get("ndcg@10")
    checks = {
        "keyword_within_0.01": keyword_gap is not None and abs(keyword_gap) <= 0.01,
        "hybrid_within_0.01": hybrid_gap is not None and abs(hybrid_gap) <= 0.01,
        "hybrid_at_least_0.74": hybrid is not None and hybrid >= 0.74,
    }
    return {
        "core_system": {mode: FRONT_DOOR[mode] for mode in door["metrics"]},
        "difference": difference,
        "target": {
            "rule": (
                "front-door keyword and hybrid nDCG@10 (all queries) within 0.01 of the core figures of the "
                "same run, and front-door hybrid >= 0.74"
            ),
            **checks,
            "met": all(checks.values()),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--limit-queries",
        "--queries",
        dest="queries",
        type=int,
        default=None,
        help="first N queries only (default: all)",
    )
    parser.add_argument(
        "--limit-docs",
        type=int,
        default=None,
        help="corpus of the chosen queries' judged documents plus others, N in all (default: all 5,183)",
    )
    parser.add_argument("--no-cache", action="store_true", help="encode again, ignoring var/bench-cache")
    parser.add_argument("--no-tune", action="store_true", help="skip the fusion grid (about a minute)")
    part = parser.add_mutually_exclusive_group()
    part.add_argument("--core-only", action="store_true", help="only Pulse's cores in this process")
    part.add_argument("--front-door-only", action="store_true", help="only the `pulse` + HTTP path")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients (front door)")
    parser.add_argument("--modes", default="keyword,vector,hybrid", help="front-door modes, comma-separated")
    parser.add_argument(
        "--num-cpus",
        type=int,
        default=None,
        help="CPUs the front door's Ray node declares (PULSE_RAY__NUM_CPUS; default: the machine's)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the front door's database and folders")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON result to this file")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := set(modes) - set(FRONT_DOOR):
        parser.error(f"--modes: unknown {sorted(unknown)}; choose from {sorted(FRONT_DOOR)}")

    started = time.perf_counter()
    scifact = load_scifact()
    data = subset(scifact, queries=args.queries, docs=args.limit_docs)
    tune_queries, held_out = halves(data.query_ids)
    result: dict[str, Any] = {
        "benchmark": "search_quality",
        "dataset": {
            "name": "SciFact (BEIR layout), train split",
            "documents": len(data.doc_ids),
            "queries": len(data.query_ids),
            "tune_queries": len(tune_queries),
            "held_out_queries": len(held_out),
            "halves": "tune = even positions, held_out = odd positions, queries sorted by numeric id",
            "subset": None
            if args.queries is None and args.limit_docs is None
            else {"queries": args.queries, "docs": args.limit_docs},
        },
    }
    status = 0
    if not args.front_door_only:
        result.update(core(data, scifact=scifact, use_cache=not args.no_cache, no_tune=args.no_tune))
    if not args.core_only:
        try:
            door = front_door(
                data,
                tune_queries=tune_queries,
                held_out=held_out,
                clients=args.clients,
                num_cpus=args.num_cpus,
                keep=args.keep,
                modes=modes,
            )
        except Exception as exc:  # the core figures are still worth printing
            log(f"front door failed: {exc}")
            result["front_door"] = {"error": f"{type(exc).__name__}: {exc}"}
            status = 1
        else:
            if "metrics" in result:
                door.update(compare(result["metrics"], door))
            result["front_door"] = door
    result["seconds"] = round(time.perf_counter() - started, 1)
    emit(result)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
