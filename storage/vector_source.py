"""The index actors' view of stored vectors: manifest rows after a watermark, and their files."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from storage.database import make_engine, make_session_factory, session_scope
from storage.embeddings import EmbeddingRepository
from storage.vector_files import VectorFileStore


@dataclass(frozen=True)
class VectorUpdate:
    """Vectors of one manifest file that are still current, with the file's watermark."""

    watermark: int
    document_ids: np.ndarray
    vectors: np.ndarray


class ManifestVectorSource:
    """Reads committed vector files for one model, oldest first, keeping only current vectors."""

    def __init__(self, *, database_url: str, storage_uri: str, model_id: int) -> None:
        self.model_id = model_id
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
            keep = np.fromiter(
                ((int(d), ref.id) in live for d in batch.document_ids),
                dtype=bool,
                count=len(batch.document_ids),
            )
            yield VectorUpdate(ref.id, batch.document_ids[keep], batch.vectors[keep])

    def close(self) -> None:
        self._engine.dispose()
