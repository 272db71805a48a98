"""``VectorIndex``: an exact inner-product FAISS index over stored vectors, with document ids kept.

Plain Python (no Ray): it takes its vector source as an argument, so it is tested without a cluster.
Upserts replace a document's previous vector; a ``watermark`` records the last manifest file applied,
so ``catch_up()`` after a restart or a notification reads only what is new.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import faiss
import numpy as np

from actors.errors import DimensionMismatch

logger = logging.getLogger(__name__)


class VectorUpdateLike(Protocol):
    @property
    def watermark(self) -> int: ...
    @property
    def document_ids(self) -> np.ndarray: ...
    @property
    def vectors(self) -> np.ndarray: ...


class VectorSource(Protocol):
    def updates_after(self, watermark: int) -> Iterable[VectorUpdateLike]: ...


@dataclass(frozen=True)
class SearchHits:
    """Best-first ids and scores per query; rows shorter than ``k`` when the index holds fewer."""

    ids: list[list[int]]
    scores: list[list[float]]


@dataclass(frozen=True)
class IndexStats:
    dimension: int
    size: int
    watermark: int


class VectorIndex:
    def __init__(self, *, dimension: int, source: VectorSource) -> None:
        self.dimension = dimension
        self._source = source
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
        self._watermark = 0
        self._lock = threading.Lock()  # FAISS forbids concurrent add and search on one index
        self._catch_up_lock = threading.Lock()

    @property
    def watermark(self) -> int:
        return self._watermark

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    def upsert(self, document_ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors, replacing any vector the same documents already had."""
        if len(document_ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise DimensionMismatch(self.dimension, int(vectors.shape[-1]))
        ids = np.ascontiguousarray(document_ids, dtype=np.int64)
        # Within one batch the last vector of a repeated id wins.
        _, last = np.unique(ids[::-1], return_index=True)
        keep = np.sort(len(ids) - 1 - last)
        ids, vectors = ids[keep], vectors[keep]
        with self._lock:
            self._index.remove_ids(faiss.IDSelectorBatch(ids))
            self._index.add_with_ids(vectors, ids)

    def catch_up(self) -> int:
        """Apply every stored update newer than the watermark; return how many vectors were applied."""
        applied = 0
        with self._catch_up_lock:
            for update in self._source.updates_after(self._watermark):
                self.upsert(update.document_ids, update.vectors)
                self._watermark = max(self._watermark, int(update.watermark))
                applied += len(update.document_ids)
        if applied:
            logger.info(
                "index caught up: %d vectors applied, size=%d, watermark=%d",
                applied,
                self.size,
                self._watermark,
            )
        return applied

    def search(self, queries: np.ndarray, k: int) -> SearchHits:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dimension:
            raise DimensionMismatch(self.dimension, int(queries.shape[1]))
        with self._lock:
            k_eff = min(k, int(self._index.ntotal))
            if k_eff == 0:
                return SearchHits(ids=[[] for _ in queries], scores=[[] for _ in queries])
            scores, ids = self._index.search(queries, k_eff)
        out_ids: list[list[int]] = []
        out_scores: list[list[float]] = []
        for row_ids, row_scores in zip(ids, scores, strict=True):
            valid = row_ids >= 0
            out_ids.append([int(i) for i in row_ids[valid]])
            out_scores.append([float(s) for s in row_scores[valid]])
        return SearchHits(ids=out_ids, scores=out_scores)

    def stats(self) -> IndexStats:
        return IndexStats(dimension=self.dimension, size=self.size, watermark=self._watermark)
