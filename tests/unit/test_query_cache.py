"""The search replicas' cache of query vectors (serve_apps/search/query_cache.py)."""

from __future__ import annotations

import numpy as np
import pytest

from serve_apps.search.query_cache import QueryVectorCache
from serve_apps.search.query_embedder import QueryModel

MINI = QueryModel(entry_id=1, ref="minilm", normalize=True)
OTHER = QueryModel(entry_id=2, ref="e5", normalize=True, query_prefix="query: ")


def test_a_repeated_query_of_one_model_hits_and_another_model_misses() -> None:
    cache = QueryVectorCache(2)
    cache.put(("gun control", MINI), np.ones(3))
    assert np.array_equal(cache.get(("gun control", MINI)), np.ones(3, np.float32))
    assert cache.get(("gun control", OTHER)) is None and cache.get(("Gun control", MINI)) is None
    assert (cache.hits, cache.misses) == (1, 2)


def test_least_recently_used_goes_first_and_vectors_are_read_only() -> None:
    cache = QueryVectorCache(2)
    for q in ("a", "b"):
        cache.put((q, MINI), np.full(2, ord(q)))
    cache.get(("a", MINI))
    cache.put(("c", MINI), np.zeros(2))
    assert cache.get(("b", MINI)) is None and len(cache) == 2
    vector = cache.get(("a", MINI))
    assert vector is not None
    with pytest.raises(ValueError):
        vector[0] = 1.0


def test_size_zero_keeps_nothing_and_a_negative_size_is_refused() -> None:
    off = QueryVectorCache(0)
    off.put(("a", MINI), np.ones(2))
    assert off.get(("a", MINI)) is None and len(off) == 0
    with pytest.raises(ValueError):
        QueryVectorCache(-1)
