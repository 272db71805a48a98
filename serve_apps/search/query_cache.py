"""``QueryVectorCache``: the query vectors a search replica embedded lately, by query text and model.

Searches repeat: the same query from many users, a page 2 after a page 1, a client retrying. A repeated
query's vector is taken from here instead of a round trip to the query embedder (a batch wait, a Ray
call and an encode). Least recently used first out, ``PULSE_SERVE__QUERY_CACHE_SIZE`` entries per replica
(0: off); a vector depends only on the text and the model's recipe (``QueryModel``), so entries never go
stale, and a model switch simply asks with another key.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

import numpy as np


class QueryVectorCache:
    """An LRU of query vectors; ``hits`` and ``misses`` count lookups."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("the query cache size is 0 (off) or more")
        self.size = size
        self._vectors: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> np.ndarray | None:
        vector = self._vectors.get(key)
        if vector is None:
            self.misses += 1
            return None
        self._vectors.move_to_end(key)
        self.hits += 1
        return vector

    def put(self, key: Hashable, vector: np.ndarray) -> None:
        if self.size == 0:
            return
        vector = np.asarray(vector, dtype=np.float32)
        vector.setflags(write=False)  # shared by every search that hits it
        self._vectors[key] = vector
        self._vectors.move_to_end(key)
        while len(self._vectors) > self.size:
            self._vectors.popitem(last=False)

    def __len__(self) -> int:
        return len(self._vectors)
