"""Huge pages for FAISS indexes: the arrays found are the index's own memory, moving them changes no
result, and the shard reports how much moved (no Ray, no database)."""

from __future__ import annotations

import sys

import faiss
import numpy as np
import pytest

from actors.huge_pages import HUGE_PAGE, collapse, collapse_index, index_arrays
from actors.vector_index import VectorIndex
from actors.vector_search import IndexConfig

D = 128
N = 20_000  # 10 MB of vectors: several whole huge pages


def vectors(n: int = N, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(30, D))
    v = (centres[rng.integers(0, 30, n)] + 0.3 * rng.normal(size=(n, D))).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_the_arrays_are_views_of_the_index_memory() -> None:
    x = vectors()
    flat = faiss.IndexFlatIP(D)
    flat.add(x)
    (codes,) = index_arrays(flat)
    assert np.array_equal(codes.view(np.float32).reshape(-1, D), x)  # the vectors, not a copy of them
    hnsw = faiss.index_factory(D, "HNSW16,Flat", faiss.METRIC_INNER_PRODUCT)
    hnsw.add(x)
    neighbors, storage = index_arrays(hnsw)
    assert neighbors.dtype == np.int32 and neighbors.max() < N and neighbors.size >= N * 32
    assert np.array_equal(storage.view(np.float32).reshape(-1, D), x)
    ivf = faiss.index_factory(D, "IVF16,Flat", faiss.METRIC_INNER_PRODUCT)
    ivf.train(x)
    ivf.add(x)
    assert index_arrays(ivf) == []  # many small lists: nothing worth moving


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="transparent huge pages are Linux only")
def test_collapsing_changes_no_result() -> None:
    x = vectors()
    index = faiss.index_factory(D, "HNSW16,Flat", faiss.METRIC_INNER_PRODUCT)
    index.add(x)
    before = index.search(x[:200], 10)
    whole = sum(
        (a.ctypes.data + a.nbytes) // HUGE_PAGE * HUGE_PAGE - -(-a.ctypes.data // HUGE_PAGE) * HUGE_PAGE
        for a in index_arrays(index)
    )
    result = collapse_index(index)
    assert result.bytes + result.failed_bytes == whole > 0  # every whole huge page was tried
    after = index.search(x[:200], 10)
    assert np.array_equal(before[1], after[1]) and np.array_equal(before[0], after[0])


def test_the_shard_reports_huge_pages_only_when_configured() -> None:
    x = vectors()
    ids = np.arange(1, N + 1, dtype=np.int64)
    stats = {}
    for huge in (True, False):
        index = VectorIndex(dimension=D, config=IndexConfig(kind="hnsw", hnsw_m=16, huge_pages=huge))
        index.upsert(ids, x)
        assert index.rebuild()
        copy = VectorIndex(dimension=D, config=IndexConfig(kind="hnsw", hnsw_m=16, huge_pages=huge))
        copy.restore(index.snapshot(shard=0))
        assert copy.search(x[:50], 5) == index.search(x[:50], 5)
        stats[huge] = (index.stats().huge_page_bytes, copy.stats().huge_page_bytes)
    assert stats[False] == (0, 0)
    probe = np.ones(3 * HUGE_PAGE, dtype=np.uint8)
    if collapse([probe]).error is None:  # where this kernel can move memory into huge pages at all
        assert all(b > 0 for b in stats[True])
