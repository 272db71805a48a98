"""The index actors' view of stored vectors: manifest rows after a watermark, and their files.

``level="document"`` yields one vector per document (the document vector); ``level="chunk"`` yields
one per chunk, keyed by ``document * CHUNK_SLOTS + chunk`` (a one-chunk document's vector is chunk 0).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from storage.database import make_engine, make_session_factory, session_scope
from storage.embeddings import EmbeddingRepository
from storage.index_feed import MetaBatch, deletions_after, fetch_meta
from storage.vector_files import CHUNK_SLOTS, DOCUMENT_ROW, VectorBatch, VectorFileStore

#: What an index holds: one vector per document, or one per chunk.
LEVELS = ("document", "chunk")


@dataclass(frozen=True)
class VectorUpdate:
    """Vectors of one manifest file that are still current, with the file's watermark."""

    watermark: int
    document_ids: np.ndarray
    vectors: np.ndarray
    keys: np.ndarray | None = None  # chunk keys, in an index of chunks
    meta: MetaBatch | None = None  # filter fields of each row's document


def shard_of(document_ids: np.ndarray, shards: int) -> np.ndarray:
    """The shard of each document: a stable hash (splitmix64) of its id modulo the shard count."""
    x = np.asarray(document_ids, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x % np.uint64(max(shards, 1))).astype(np.int64)


def level_mask(batch: VectorBatch, level: str) -> np.ndarray:
    """Rows of a vector file that belong to an index of ``level``."""
    chunk = batch.column("chunk")
    if level == "document":
        return np.asarray(chunk == DOCUMENT_ROW)
    return np.asarray((chunk >= 0) | (batch.column("chunks") == 1))


class ManifestVectorSource:
    """Reads committed vector files for one model, oldest first, keeping only current vectors of one
    shard (documents with ``shard_of(id, shards) == shard``), with their documents' filter fields."""

    def __init__(
        self,
        *,
        database_url: str,
        storage_uri: str,
        model_id: int,
        level: str = "document",
        shard: int = 0,
        shards: int = 1,
    ) -> None:
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
        if not 0 <= shard < shards:
            raise ValueError(f"shard {shard} is not in [0, {shards})")
        self.model_id = model_id
        self.level = level
        self.shard = shard
        self.shards = shards
        self._engine = make_engine(database_url, pool_size=1)
        self._sessions = make_session_factory(self._engine)
        self._files = VectorFileStore(storage_uri)

    def updates_after(self, watermark: int) -> Iterator[VectorUpdate]:
        with session_scope(self._sessions) as session:
            repo = EmbeddingRepository(session)
            refs = repo.vector_files_after(model_id=self.model_id, after_id=watermark)
            live = repo.live_vector_keys(model_id=self.model_id, file_ids=[r.id for r in refs])
        live_files = {file_id for _, file_id in live}
        empty_ids = np.empty(0, dtype=np.int64)
        for ref in refs:
            if ref.id not in live_files:
                # Every vector in this file was superseded by a later one: advance without reading it.
                yield VectorUpdate(ref.id, empty_ids, np.empty((0, 0), dtype=np.float32))
                continue
            batch = self._files.read(ref.path)
            keep = level_mask(batch, self.level) & np.fromiter(
                ((int(d), ref.id) in live for d in batch.document_ids),
                dtype=bool,
                count=len(batch.document_ids),
            )
            if self.shards > 1:
                keep &= shard_of(batch.document_ids, self.shards) == self.shard
            rows = batch.select(keep)
            keys = None
            if self.level == "chunk":
                keys = rows.document_ids * CHUNK_SLOTS + np.maximum(rows.column("chunk"), 0).astype(np.int64)
            with session_scope(self._sessions) as session:
                metas = fetch_meta(session, np.unique(rows.document_ids).tolist())
            meta = MetaBatch.of([metas.get(int(d)) for d in rows.document_ids])
            yield VectorUpdate(ref.id, rows.document_ids, rows.vectors, keys, meta)

    def deletions_after(self, sequence: int) -> tuple[int, np.ndarray]:
        with session_scope(self._sessions) as session:
            last, ids = deletions_after(session, sequence)
        return last, np.asarray(ids, dtype=np.int64)

    def close(self) -> None:
        self._engine.dispose()
