"""``VectorIndex``: an exact inner-product FAISS index over stored vectors, with document ids kept.

Plain Python (no Ray): it takes its vector source as an argument, so it is tested without a cluster.
Upserts replace a document's previous vectors; a ``watermark`` records the last manifest file applied,
so ``catch_up()`` after a restart or a notification reads only what is new. An index of chunks keys each
vector by ``document * CHUNK_SLOTS + chunk`` and replaces all of a document's chunks at once (a document
re-embedded with fewer chunks leaves none of its old ones behind).
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
    @property
    def keys(self) -> np.ndarray | None: ...


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
        self._keys_of: dict[int, np.ndarray] = {}  # document -> its keys, in an index of chunks
        self._watermark = 0
        self._lock = threading.Lock()  # FAISS forbids concurrent add and search on one index
        self._catch_up_lock = threading.Lock()

    @property
    def watermark(self) -> int:
        return self._watermark

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    def upsert(self, document_ids: np.ndarray, vectors: np.ndarray, keys: np.ndarray | None = None) -> None:
        """Add vectors, replacing every vector the same documents already had.

        Without ``keys`` a vector's key is its document id (one vector per document); with ``keys``
        (an index of chunks) each vector has its own key and ``document_ids`` groups them.
        """
        if len(document_ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise DimensionMismatch(self.dimension, int(vectors.shape[-1]))
        docs = np.ascontiguousarray(document_ids, dtype=np.int64)
        ids = docs if keys is None else np.ascontiguousarray(keys, dtype=np.int64)
        # Within one batch the last vector of a repeated key wins.
        _, last = np.unique(ids[::-1], return_index=True)
        keep = np.sort(len(ids) - 1 - last)
        ids, docs, vectors = ids[keep], docs[keep], vectors[keep]
        if keys is None:
            old = ids
        else:
            olds = [self._keys_of.pop(int(d)) for d in np.unique(docs) if int(d) in self._keys_of]
            old = np.concatenate(olds) if olds else np.empty(0, dtype=np.int64)
            order = np.argsort(docs, kind="stable")
            bounds = np.flatnonzero(np.diff(docs[order])) + 1
            for group in np.split(order, bounds):
                self._keys_of[int(docs[group[0]])] = ids[group]
        with self._lock:
            if len(old):
                self._index.remove_ids(faiss.IDSelectorBatch(old))
            self._index.add_with_ids(vectors, ids)

    def catch_up(self) -> int:
        """Apply every stored update newer than the watermark; return how many vectors were applied."""
        applied = 0
        with self._catch_up_lock:
            for update in self._source.updates_after(self._watermark):
                self.upsert(update.document_ids, update.vectors, update.keys)
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
