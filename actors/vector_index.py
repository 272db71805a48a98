"""``VectorIndex``: a FAISS index with document ids, upserts, deletes, filters and non-blocking rebuilds.

Plain Python (no Ray): it takes its vector source as an argument, so it is tested without a cluster. The FAISS
pieces it is built from (index type by size, building, filtered search, exact top-k, the merge of
shards' hits) are ``actors.vector_search``'s.

How it hides FAISS's sharp edges:

- **Rows, not FAISS ids.** Every vector ever added is a row of an append-only store (key, document,
  vector, live flag, metadata). The FAISS index ("main") is built over rows ``[0, main.rows)`` and is
  never modified after it is built, so searches run concurrently with writes without a lock.
- **Upsert and delete for every index type.** An upsert appends new rows and marks the key's old rows
  dead; a delete marks rows dead. Dead rows are tombstones, filtered inside the FAISS search through an
  ``IDSelectorBitmap`` (HNSW cannot delete).
- **Delta + background rebuild.** Rows appended after the main index was built (the "delta") are
  searched exactly. When the delta or the tombstones grow past a share of the index, ``rebuild()``
  builds a new main index from the live rows into a new object (training IVF when needed) while searches
  keep using the old one, then swaps both in one assignment.
- **Index type by size**, through the FAISS index factory: exact (``Flat``) for small collections,
  ``HNSW`` for large ones, ``IVF...,PQ`` beyond (or any factory string from the settings).
- **Filters inside the search** with oversampling: a permissive filter is a selector in the ANN search,
  with ``efSearch``/``nprobe`` raised by the inverse of its selectivity; a selective one (few rows pass)
  is answered exactly over just those rows; if the ANN search still returns fewer than ``k`` results,
  the exact path answers. So ``k`` results come back whenever ``k`` rows pass.

A ``watermark`` records the last manifest file applied and a ``deletion_watermark`` the last deletion
seen, so ``catch_up()`` after a restart or a notification reads only what is new. An index of chunks
keys each vector by ``document * CHUNK_SLOTS + chunk`` and replaces all of a document's chunks at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import faiss
import numpy as np

from actors.errors import DimensionMismatch
from actors.filters import MetaBatch, MetaColumns, SearchFilter, Vocabulary
from actors.huge_pages import collapse_index
from actors.vector_search import (
    IndexConfig,
    MainIndex,
    SearchHits,
    build_index,
    exact_search,
    factory_for,
    search_main,
    top_hits,
)

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
    @property
    def meta(self) -> MetaBatch | None: ...


class VectorSource(Protocol):
    def updates_after(self, watermark: int) -> Iterable[VectorUpdateLike]: ...

    def deletions_after(self, sequence: int) -> tuple[int, np.ndarray]:
        """(last deletion sequence, ids of documents deleted after ``sequence``)."""
        ...


@dataclass(frozen=True)
class IndexStats:
    dimension: int
    size: int  # live vectors
    watermark: int
    deletion_watermark: int
    factory: str  # FAISS factory string of the main index ("" before the first build)
    main_rows: int
    delta_rows: int
    dead_rows: int
    rebuilds: int
    huge_page_bytes: int  # of the main index's memory in transparent huge pages (actors.huge_pages)


@dataclass
class _Store:
    """Append-only rows. Rows below ``n`` are complete and never change except their live flag."""

    keys: np.ndarray
    docs: np.ndarray
    vectors: np.ndarray
    live: np.ndarray
    meta: MetaColumns
    n: int = 0
    dead: int = 0  # rows below n whose live flag is off (a search with none skips the live mask)

    @classmethod
    def empty(
        cls, dimension: int, capacity: int, vocabularies: dict[str, Vocabulary] | None = None
    ) -> _Store:
        return cls(
            keys=np.zeros(capacity, dtype=np.int64),
            docs=np.zeros(capacity, dtype=np.int64),
            vectors=np.zeros((capacity, dimension), dtype=np.float32),
            live=np.zeros(capacity, dtype=bool),
            meta=MetaColumns(capacity, vocabularies),
        )

    @property
    def capacity(self) -> int:
        return len(self.keys)

    def grown(self, capacity: int) -> _Store:
        out = _Store.empty(self.vectors.shape[1], capacity, self.meta.vocabularies)
        n = self.n
        out.keys[:n], out.docs[:n], out.vectors[:n], out.live[:n] = (
            self.keys[:n],
            self.docs[:n],
            self.vectors[:n],
            self.live[:n],
        )
        out.meta = self.meta.grown(capacity)
        out.n, out.dead = n, self.dead
        return out

    @classmethod
    def restored(cls, snap: IndexSnapshot) -> _Store:
        """The rows of a snapshot, with room to grow."""
        n = len(snap.keys)
        vocabularies = {name: Vocabulary(list(values)) for name, values in snap.vocabularies.items()}
        store = cls.empty(snap.dimension, max(1024, int(n * 1.25)), vocabularies)
        store.keys[:n], store.docs[:n], store.vectors[:n], store.live[:n] = (
            snap.keys,
            snap.docs,
            snap.vectors,
            snap.live,
        )
        store.meta.codes[:n], store.meta.published[:n] = snap.codes, snap.published
        store.n = n
        store.dead = n - int(np.count_nonzero(snap.live))
        return store


@dataclass(frozen=True)
class _State:
    store: _Store
    main: MainIndex | None


@dataclass
class IndexSnapshot:
    """Everything needed to restore an index exactly (rows, main index, watermarks)."""

    dimension: int
    keys: np.ndarray
    docs: np.ndarray
    vectors: np.ndarray
    live: np.ndarray
    codes: np.ndarray
    published: np.ndarray
    vocabularies: dict[str, list[str]]
    factory: str
    main_rows: int
    main_index: np.ndarray | None  # faiss.serialize_index bytes
    watermark: int
    deletion_watermark: int
    chunked: bool
    extra: dict[str, Any] = field(default_factory=dict)


class VectorIndex:
    def __init__(
        self, *, dimension: int, source: VectorSource | None = None, config: IndexConfig | None = None
    ) -> None:
        self.dimension = dimension
        self.config = config or IndexConfig()
        self._source = source
        self._state = _State(_Store.empty(dimension, 1024), None)
        self._row_of: dict[int, int] = {}  # live key -> row
        self._keys_of: dict[int, np.ndarray] = {}  # document -> its keys, in an index of chunks
        self._chunked = False
        self._dead_main = 0  # dead rows below main.rows
        self._watermark = 0
        self._deletion_watermark = 0
        self._rebuilds = 0
        self._write_lock = threading.Lock()
        self._catch_up_lock = threading.Lock()
        self._rebuild_lock = threading.Lock()

    # ----------------------------------------------------------------------------------------- writes
    @property
    def watermark(self) -> int:
        return self._watermark

    @property
    def size(self) -> int:
        return len(self._row_of)

    def upsert(
        self,
        document_ids: np.ndarray,
        vectors: np.ndarray,
        keys: np.ndarray | None = None,
        meta: MetaBatch | None = None,
    ) -> None:
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
        meta = MetaBatch.unknown(len(ids)) if meta is None else meta.take(keep)
        with self._write_lock:
            if keys is not None:
                self._chunked = True
                self._kill_documents(np.unique(docs))
                self._keys_of.update(_keys_by_document(docs, ids))
            else:
                self._kill_keys(ids.tolist())
            self._append(ids, docs, vectors, meta)

    def delete(self, document_ids: Iterable[int]) -> int:
        """Remove documents (all their chunks); returns how many vectors were removed."""
        with self._write_lock:
            return self._kill_documents(np.asarray(list(document_ids), dtype=np.int64))

    def _kill_documents(self, docs: np.ndarray) -> int:
        if not self._chunked:
            return self._kill_keys(docs.tolist())
        killed = 0
        for d in docs.tolist():
            old = self._keys_of.pop(d, None)
            if old is not None:
                killed += self._kill_keys(old.tolist())
        return killed

    def _kill_keys(self, keys: list[int]) -> int:
        state = self._state
        main_rows = state.main.rows if state.main else 0
        killed = 0
        for key in keys:
            row = self._row_of.pop(key, None)
            if row is not None:
                state.store.live[row] = False
                state.store.dead += 1
                killed += 1
                self._dead_main += row < main_rows
        return killed

    def _append(self, ids: np.ndarray, docs: np.ndarray, vectors: np.ndarray, meta: MetaBatch) -> None:
        state = self._state
        store = state.store
        m = len(ids)
        if store.n + m > store.capacity:
            store = store.grown(max(2 * store.capacity, store.n + m))
        start = store.n
        store.keys[start : start + m] = ids
        store.docs[start : start + m] = docs
        store.vectors[start : start + m] = vectors
        store.meta.write(start, meta)
        store.live[start : start + m] = True
        store.n = start + m  # rows below n are complete: readers may now see them
        self._row_of.update(zip(ids.tolist(), range(start, start + m), strict=True))
        if store is not state.store:
            self._state = _State(store, state.main)

    def catch_up(self) -> int:
        """Apply every stored update and deletion newer than the watermarks; return vectors changed."""
        if self._source is None:
            return 0
        applied = 0
        with self._catch_up_lock:
            for update in self._source.updates_after(self._watermark):
                self.upsert(update.document_ids, update.vectors, update.keys, update.meta)
                self._watermark = max(self._watermark, int(update.watermark))
                applied += len(update.document_ids)
            sequence, deleted = self._source.deletions_after(self._deletion_watermark)
            if len(deleted):
                applied += self.delete(deleted.tolist())
            self._deletion_watermark = max(self._deletion_watermark, sequence)
        if applied:
            logger.info(
                "index caught up: %d vectors applied, size=%d, watermark=%d",
                applied,
                self.size,
                self._watermark,
            )
        return applied

    # --------------------------------------------------------------------------------------- rebuilds
    def needs_rebuild(self) -> bool:
        state = self._state
        main_rows = state.main.rows if state.main else 0
        live = len(self._row_of)
        if state.main is None:
            return live > 0
        threshold = max(self.config.rebuild_min_rows, self.config.rebuild_fraction * main_rows)
        if state.store.n - main_rows > threshold or self._dead_main > threshold:
            return True
        return (
            factory_for(live, self.dimension, self.config) != state.main.factory and state.store.n > main_rows
        )

    def rebuild(self) -> bool:
        """Build a new main index from the live rows; searches keep using the old one meanwhile."""
        with self._rebuild_lock:
            with self._write_lock:
                state = self._state
                n0 = state.store.n
                keep = np.flatnonzero(state.store.live[:n0])
            if len(keep) == 0 and state.main is None:
                return False
            started = time.perf_counter()
            factory = factory_for(len(keep), self.dimension, self.config)
            capacity = max(1024, int(len(keep) * 1.25))
            fresh = _Store.empty(self.dimension, capacity, state.store.meta.vocabularies)
            fresh.vectors[: len(keep)] = state.store.vectors[keep]  # rows below n0 never change
            index = build_index(factory, fresh.vectors[: len(keep)], self.config) if len(keep) else None
            huge = self._huge_pages(index)
            with self._write_lock:
                now = self._state.store
                rows = np.concatenate([keep, np.arange(n0, now.n)])
                if len(rows) > fresh.capacity:
                    fresh = fresh.grown(int(len(rows) * 1.25))
                m = len(rows)
                fresh.vectors[len(keep) : m] = now.vectors[n0 : now.n]
                fresh.keys[:m], fresh.docs[:m], fresh.live[:m] = (
                    now.keys[rows],
                    now.docs[rows],
                    now.live[rows],
                )
                fresh.meta = now.meta.take(rows, fresh.capacity)
                fresh.n = m
                alive = np.flatnonzero(fresh.live[:m])
                fresh.dead = m - len(alive)
                self._row_of = dict(zip(fresh.keys[alive].tolist(), alive.tolist(), strict=True))
                self._dead_main = int(len(keep) - np.count_nonzero(fresh.live[: len(keep)]))
                main = MainIndex(index, len(keep), factory, huge) if index is not None else None
                self._state = _State(fresh, main)
                self._rebuilds += 1
            logger.info(
                "index rebuilt: %s over %d vectors in %.1f s (%d delta rows carried over)",
                factory,
                len(keep),
                time.perf_counter() - started,
                m - len(keep),
            )
            return True

    # ----------------------------------------------------------------------------------------- reads
    def search(self, queries: np.ndarray, k: int, *, filter: SearchFilter | None = None) -> SearchHits:
        """The ``k`` best keys per query among live rows passing ``filter``, best first."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dimension:
            raise DimensionMismatch(self.dimension, int(queries.shape[1]))
        state = self._state
        store, main = state.store, state.main
        n = store.n
        if n == 0 or k <= 0:
            return SearchHits(ids=[[] for _ in queries], scores=[[] for _ in queries])
        passing = store.meta.mask(filter, n) if filter is not None else None
        # Without a filter or a deleted row every row passes: no O(n) mask to build (0.1-0.2 ms per
        # call at 1M rows). A row deleted meanwhile is a delete concurrent with this search.
        every = passing is None and store.dead == 0
        main_rows = main.rows if main is not None else 0
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        if main is not None and main_rows:
            allowed = None if every else _allowed(store, passing, 0, main_rows)
            parts.append(search_main(main, store.vectors, allowed, queries, k, self.config))
        if n > main_rows:
            rows = (
                np.arange(main_rows, n)
                if every
                else main_rows + np.flatnonzero(_allowed(store, passing, main_rows, n))
            )
            parts.append(exact_search(store.vectors, rows, queries, k))
        scores = np.concatenate([p[0] for p in parts], axis=1)
        rows = np.concatenate([p[1] for p in parts], axis=1)
        return top_hits(store.keys, scores, rows, k)

    def _huge_pages(self, index: Any) -> int:
        """Move a main index, before it serves, into huge pages (when configured); the bytes moved."""
        if index is None or not self.config.huge_pages:
            return 0
        return collapse_index(index).bytes

    def vector_of(self, document_id: int) -> np.ndarray | None:
        """The stored vector of a document (an index of documents), or ``None`` if it holds none."""
        row = self._row_of.get(int(document_id))
        if row is None or self._chunked:
            return None
        return np.array(self._state.store.vectors[row])

    def vectors_of(
        self, document_ids: np.ndarray, flt: SearchFilter | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The documents of ``document_ids`` this index holds (an index of documents) and that pass ``flt``,
        in the order given: (ids, vectors, publication times in epoch seconds, ``NO_DATE`` unknown)."""
        ids = np.asarray(document_ids, dtype=np.int64)
        store = self._state.store
        if self._chunked or not len(ids):
            return ids[:0], np.zeros((0, self.dimension), np.float32), np.zeros(0, np.int64)
        rows = np.fromiter((self._row_of.get(int(i), -1) for i in ids), dtype=np.int64, count=len(ids))
        keep = rows >= 0
        if flt is not None and keep.any():
            keep[keep] = store.meta.rows_pass(flt, rows[keep])
        rows = rows[keep]
        return ids[keep], np.array(store.vectors[rows]), np.array(store.meta.published[rows])

    # ------------------------------------------------------------------------------------- snapshots
    def snapshot(self, **extra: Any) -> IndexSnapshot:
        """A consistent copy of the index (cheap: rows are immutable, only live flags are copied)."""
        with self._catch_up_lock, self._write_lock:
            state = self._state
            store, main, n = state.store, state.main, state.store.n
            live = store.live[:n].copy()
            watermark, deletion_watermark = self._watermark, self._deletion_watermark
            vocabularies = {name: list(v.values) for name, v in store.meta.vocabularies.items()}
        return IndexSnapshot(
            dimension=self.dimension,
            keys=store.keys[:n],
            docs=store.docs[:n],
            vectors=store.vectors[:n],
            live=live,
            codes=store.meta.codes[:n],
            published=store.meta.published[:n],
            vocabularies=vocabularies,
            factory=main.factory if main else "",
            main_rows=main.rows if main else 0,
            main_index=faiss.serialize_index(main.index) if main else None,
            watermark=watermark,
            deletion_watermark=deletion_watermark,
            chunked=self._chunked,
            extra=extra,
        )

    def restore(self, snap: IndexSnapshot) -> None:
        """Replace this index's content with a snapshot's (before catching up from its watermarks)."""
        if snap.dimension != self.dimension:
            raise DimensionMismatch(self.dimension, snap.dimension)
        store = _Store.restored(snap)
        main = None
        if snap.main_index is not None:
            index = faiss.deserialize_index(snap.main_index)
            main = MainIndex(index, snap.main_rows, snap.factory, self._huge_pages(index))
        alive = np.flatnonzero(snap.live)
        with self._catch_up_lock, self._write_lock:
            self._row_of = dict(zip(snap.keys[alive].tolist(), alive.tolist(), strict=True))
            self._chunked = snap.chunked
            self._keys_of = _keys_by_document(snap.docs[alive], snap.keys[alive]) if snap.chunked else {}
            self._dead_main = int(snap.main_rows - np.count_nonzero(snap.live[: snap.main_rows]))
            self._watermark, self._deletion_watermark = snap.watermark, snap.deletion_watermark
            self._state = _State(store, main)

    def stats(self) -> IndexStats:
        state = self._state
        main_rows = state.main.rows if state.main else 0
        return IndexStats(
            dimension=self.dimension,
            size=self.size,
            watermark=self._watermark,
            deletion_watermark=self._deletion_watermark,
            factory=state.main.factory if state.main else "",
            main_rows=main_rows,
            delta_rows=state.store.n - main_rows,
            dead_rows=state.store.n - len(self._row_of),
            rebuilds=self._rebuilds,
            huge_page_bytes=state.main.huge_page_bytes if state.main else 0,
        )


def _allowed(store: _Store, passing: np.ndarray | None, start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)`` that are live and pass the filter (a copy: writers flip live flags)."""
    allowed = store.live[start:stop].copy()
    if passing is not None:
        allowed &= passing[start:stop]
    return allowed


def _keys_by_document(docs: np.ndarray, keys: np.ndarray) -> dict[int, np.ndarray]:
    """The keys of each document (an index of chunks): ``keys[i]`` belongs to document ``docs[i]``."""
    order = np.argsort(docs, kind="stable")
    bounds = np.flatnonzero(np.diff(docs[order])) + 1
    return {int(docs[group[0]]): keys[group] for group in np.split(order, bounds) if len(group)}
