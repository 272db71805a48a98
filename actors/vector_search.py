"""FAISS, as ``VectorIndex`` uses it: which index type a size gets, building it, searching it with a filter
(search parameters raised by the filter's selectivity, the exact path when few rows pass), exact top-k over
chosen rows, and the top-k of several shards' hits.

Plain Python (no Ray). Everything here works on plain arrays of rows; the rows themselves (keys, live
flags, metadata), writes and watermarks are ``actors.vector_index``'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np


@dataclass(frozen=True)
class SearchHits:
    """Best-first ids and scores per query; rows shorter than ``k`` when fewer match."""

    ids: list[list[int]]
    scores: list[list[float]]


@dataclass(frozen=True)
class IndexConfig:
    """How the index is built and searched. ``kind``: auto | flat | hnsw | ivf | a FAISS factory string."""

    kind: str = "auto"
    exact_max: int = 50_000  # auto: exact search below this many vectors
    hnsw_max: int = 5_000_000  # auto: HNSW up to this many, IVF-PQ beyond
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 256
    nprobe: int = 32
    exact_filter_max: int = 20_000  # a filter passing at most this many rows is answered exactly
    max_oversample: int = 16  # cap of efSearch/nprobe growth for filtered ANN searches
    rebuild_min_rows: int = 10_000  # rebuild once the delta or the tombstones exceed this...
    rebuild_fraction: float = 0.1  # ...and this share of the main index
    train_max: int = 200_000  # vectors sampled to train IVF
    huge_pages: bool = True  # move the main index's vectors and graph into huge pages (actors.huge_pages)


def ivf_lists(n: int) -> int:
    """IVF list count for ``n`` vectors: about 4 sqrt(n), a power of two, with >= 39 vectors a list."""
    target = max(16, min(65_536, 4 * math.isqrt(max(n, 1))))
    lists = 1 << round(math.log2(target))
    return max(1, min(lists, n // 39))


def factory_for(n: int, dimension: int, config: IndexConfig) -> str:
    """The FAISS factory string of an index holding ``n`` vectors."""
    kind = config.kind
    if kind == "auto":
        kind = "flat" if n < config.exact_max else "hnsw" if n < config.hnsw_max else "ivfpq"
    if kind == "flat" or n < 2_000:  # too few vectors to train or to need a graph
        return "Flat"
    if kind == "hnsw":
        return f"HNSW{config.hnsw_m},Flat"
    if kind == "ivf":
        return f"IVF{ivf_lists(n)},Flat"
    if kind == "ivfpq":
        sub = next(m for m in (64, 48, 32, 24, 16, 8, 4, 2, 1) if dimension % m == 0)
        return f"IVF{ivf_lists(n)},PQ{sub}x8"
    return kind  # a factory string given in the settings


def build_index(factory: str, vectors: np.ndarray, config: IndexConfig, *, seed: int = 0) -> Any:
    """A FAISS inner-product index over ``vectors`` (ids = row positions), trained when it needs it."""
    dimension = vectors.shape[1]
    index = faiss.index_factory(dimension, factory, faiss.METRIC_INNER_PRODUCT)
    hnsw = hnsw_of(index)
    if hnsw is not None:
        hnsw.hnsw.efConstruction = config.ef_construction
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        n_train = min(len(vectors), config.train_max)
        sample = (
            vectors if n_train == len(vectors) else vectors[np.sort(rng.choice(len(vectors), n_train, False))]
        )
        index.train(np.ascontiguousarray(sample))
    step = 100_000
    for start in range(0, len(vectors), step):
        index.add(np.ascontiguousarray(vectors[start : start + step]))
    return index


def hnsw_of(index: Any) -> Any:
    down = faiss.downcast_index(index)
    return down if isinstance(down, faiss.IndexHNSW) else None


@dataclass(frozen=True)
class MainIndex:
    """A built FAISS index over store rows ``[0, rows)``; never written after it is built."""

    index: Any
    rows: int
    factory: str
    huge_page_bytes: int = 0


def search_params(index: Any, selector: Any, boost: int, config: IndexConfig) -> Any:
    """FAISS search parameters: the row selector, and efSearch / nprobe raised ``boost`` times."""
    api: Any = faiss  # the bundled stubs lack the search-parameter classes
    if hnsw_of(index) is not None:
        return api.SearchParametersHNSW(sel=selector, efSearch=config.ef_search * boost)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        return api.SearchParametersIVF(sel=selector, nprobe=min(ivf.nlist, config.nprobe * boost))
    return api.SearchParameters(sel=selector) if selector is not None else None


def search_main(
    main: MainIndex,
    vectors: np.ndarray,
    allowed: np.ndarray | None,
    queries: np.ndarray,
    k: int,
    config: IndexConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Search the main index over its ``allowed`` rows (``None``: all of them); ``vectors`` are the rows'."""
    count = main.rows if allowed is None else int(np.count_nonzero(allowed))
    if count == 0:
        return exact_search(vectors, np.empty(0, dtype=np.int64), queries, k)
    exact = main.factory == "Flat"

    def passing() -> np.ndarray:
        return np.arange(main.rows) if allowed is None else np.flatnonzero(allowed)

    if not exact and count <= config.exact_filter_max:
        return exact_search(vectors, passing(), queries, k)
    bitmap = None if allowed is None or count == main.rows else np.packbits(allowed, bitorder="little")
    selector = None if bitmap is None else faiss.IDSelectorBitmap(main.rows, faiss.swig_ptr(bitmap))
    boost = min(config.max_oversample, max(1, math.ceil(main.rows / count)))
    params = search_params(main.index, selector, boost, config)
    k_eff = min(k, count)
    scores, rows = main.index.search(queries, k_eff, params=params)
    del bitmap  # kept alive until the search returned: the selector points into it
    if not exact and (rows[:, -1] < 0).any():
        # The graph or the probed lists ran out of passing rows: answer exactly over them.
        return exact_search(vectors, passing(), queries, k)
    return scores, rows


def exact_search(
    vectors: np.ndarray, rows: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-``k`` over the given rows: (scores, rows), padded with -inf / -1."""
    nq = len(queries)
    k_eff = min(k, len(rows))
    if k_eff == 0:
        return np.full((nq, 1), -np.inf, dtype=np.float32), np.full((nq, 1), -1, dtype=np.int64)
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        candidates = vectors[rows[0] : rows[-1] + 1]  # a contiguous range: no copy
    else:
        candidates = vectors[rows]
    scores, local = faiss.knn(
        queries, np.ascontiguousarray(candidates), k_eff, metric=faiss.METRIC_INNER_PRODUCT
    )
    return scores, np.where(local >= 0, rows[np.maximum(local, 0)], -1)


def top_hits(keys: np.ndarray, scores: np.ndarray, rows: np.ndarray, k: int) -> SearchHits:
    """The ``k`` best ``(key, score)`` per query of a ``(queries, candidates)`` result (row -1: none), best
    first, ties in candidate order. Vectorised: a Python loop per query cost about 50 us each in the shard
    (12 ms of a batch of 256 at 1M vectors)."""
    if scores.size == 0:
        return SearchHits(ids=[[] for _ in range(len(scores))], scores=[[] for _ in range(len(scores))])
    valid = rows >= 0
    masked = np.where(valid, scores, -np.inf)
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(masked, order, axis=1)
    best_rows = np.take_along_axis(rows, order, axis=1)
    ids = keys[np.maximum(best_rows, 0)].tolist()
    values = best.astype(float).tolist()
    counts = np.count_nonzero(np.take_along_axis(valid, order, axis=1), axis=1)
    if (counts == order.shape[1]).all():
        return SearchHits(ids=ids, scores=values)
    return SearchHits(
        ids=[row[:c] for row, c in zip(ids, counts.tolist(), strict=True)],
        scores=[row[:c] for row, c in zip(values, counts.tolist(), strict=True)],
    )


def merge_hits(parts: Sequence[SearchHits], k: int) -> SearchHits:
    """Top-``k`` of several shards' hits per query (shards hold disjoint documents)."""
    if not parts:
        return SearchHits(ids=[], scores=[])
    out_ids: list[list[int]] = []
    out_scores: list[list[float]] = []
    for q in range(len(parts[0].ids)):
        pairs = [(s, i) for p in parts for i, s in zip(p.ids[q], p.scores[q], strict=True)]
        pairs.sort(key=lambda pair: (-pair[0], pair[1]))
        out_ids.append([i for _, i in pairs[:k]])
        out_scores.append([s for s, _ in pairs[:k]])
    return SearchHits(ids=out_ids, scores=out_scores)
