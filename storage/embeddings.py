"""The embedding model registry, the vector-file manifest and which documents each model has embedded.

Writers commit a Parquet file first, then one manifest row (``vector_files``) together with the
``document_embeddings`` rows it covers, in one transaction. ``vector_files.id`` is the watermark that
readers (index actors) catch up from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from storage.errors import ModelNotRegistered
from storage.models import Document, DocumentEmbedding, EmbeddingModel, VectorFile


@dataclass(frozen=True)
class ModelRow:
    id: int
    name: str
    revision: str
    dimension: int
    normalize: bool
    is_active: bool


@dataclass(frozen=True)
class PendingDocument:
    id: int
    content_hash: str
    title: str
    text: str


@dataclass(frozen=True)
class VectorFileRef:
    id: int
    path: str
    row_count: int


#: The active model (at most one: a partial unique index), for sync and async callers alike.
ACTIVE_MODEL = select(EmbeddingModel).where(EmbeddingModel.is_active)


def _row(model: EmbeddingModel) -> ModelRow:
    return ModelRow(model.id, model.name, model.revision, model.dimension, model.normalize, model.is_active)


class EmbeddingRepository:
    """SQL for the model registry and the vector manifest, on a caller-owned session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # -- model registry -------------------------------------------------------------------------
    def register_model(
        self,
        *,
        name: str,
        revision: str,
        dimension: int,
        normalize: bool = True,
        activate_if_none: bool = True,
    ) -> ModelRow:
        stmt = (
            insert(EmbeddingModel)
            .values(name=name, revision=revision, dimension=dimension, normalize=normalize)
            .on_conflict_do_nothing(constraint="uq_embedding_models_name_revision")
        )
        self.session.execute(stmt)
        model = self.session.execute(
            select(EmbeddingModel).where(EmbeddingModel.name == name, EmbeddingModel.revision == revision)
        ).scalar_one()
        if activate_if_none and self.active_model() is None:
            self.activate(model.id)
            self.session.refresh(model)
        return _row(model)

    def activate(self, model_id: int) -> None:
        if self.session.get(EmbeddingModel, model_id) is None:
            raise ModelNotRegistered(model_id)
        self.session.execute(update(EmbeddingModel).where(EmbeddingModel.is_active).values(is_active=False))
        self.session.execute(
            update(EmbeddingModel).where(EmbeddingModel.id == model_id).values(is_active=True)
        )

    def active_model(self) -> ModelRow | None:
        model = self.session.execute(ACTIVE_MODEL).scalar_one_or_none()
        return _row(model) if model else None

    # -- what needs embedding -------------------------------------------------------------------
    def _pending_condition(self, model_id: int, full: bool):  # type: ignore[no-untyped-def]
        join = and_(DocumentEmbedding.document_id == Document.id, DocumentEmbedding.model_id == model_id)
        if full:
            return join, None
        return join, or_(
            DocumentEmbedding.document_id.is_(None), DocumentEmbedding.content_hash != Document.content_hash
        )

    def pending_documents(
        self, *, model_id: int, after_id: int = 0, limit: int = 10_000, full: bool = False
    ) -> list[PendingDocument]:
        """Documents with no vector for ``model_id`` at their current content hash, by id (keyset pages)."""
        join, condition = self._pending_condition(model_id, full)
        stmt = (
            select(Document.id, Document.content_hash, Document.title, Document.text)
            .outerjoin(DocumentEmbedding, join)
            .where(Document.id > after_id)
            .order_by(Document.id)
            .limit(limit)
        )
        if condition is not None:
            stmt = stmt.where(condition)
        return [PendingDocument(r.id, r.content_hash, r.title, r.text) for r in self.session.execute(stmt)]

    def count_pending(self, *, model_id: int) -> int:
        join, condition = self._pending_condition(model_id, False)
        stmt = select(func.count()).select_from(Document).outerjoin(DocumentEmbedding, join).where(condition)
        return int(self.session.execute(stmt).scalar_one())

    def count_embedded(self, *, model_id: int) -> int:
        stmt = (
            select(func.count()).select_from(DocumentEmbedding).where(DocumentEmbedding.model_id == model_id)
        )
        return int(self.session.execute(stmt).scalar_one())

    # -- the manifest ---------------------------------------------------------------------------
    def record_vector_file(
        self, *, model_id: int, path: str, document_ids: Sequence[int], content_hashes: Sequence[str]
    ) -> int:
        """Commit one durable Parquet file: its manifest row and the embeddings it holds.

        Idempotent by path: committing the same file twice changes nothing.
        """
        file_id = self.session.execute(
            insert(VectorFile)
            .values(model_id=model_id, path=path, row_count=len(document_ids))
            .on_conflict_do_update(index_elements=[VectorFile.path], set_={"row_count": len(document_ids)})
            .returning(VectorFile.id)
        ).scalar_one()
        if document_ids:
            stmt = insert(DocumentEmbedding).values(
                [
                    {"model_id": model_id, "document_id": int(doc_id), "content_hash": h, "file_id": file_id}
                    for doc_id, h in zip(document_ids, content_hashes, strict=True)
                ]
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[DocumentEmbedding.model_id, DocumentEmbedding.document_id],
                set_={
                    "content_hash": stmt.excluded.content_hash,
                    "file_id": stmt.excluded.file_id,
                    "embedded_at": func.now(),
                },
            )
            self.session.execute(stmt)
        return int(file_id)

    def vector_files_after(self, *, model_id: int, after_id: int) -> list[VectorFileRef]:
        stmt = (
            select(VectorFile.id, VectorFile.path, VectorFile.row_count)
            .where(VectorFile.model_id == model_id, VectorFile.id > after_id)
            .order_by(VectorFile.id)
        )
        return [VectorFileRef(r.id, r.path, r.row_count) for r in self.session.execute(stmt)]

    def live_vector_keys(self, *, model_id: int, file_ids: Sequence[int]) -> set[tuple[int, int]]:
        """``(document_id, file_id)`` pairs that are current: a document's vector lives in one file only."""
        if not file_ids:
            return set()
        stmt = select(DocumentEmbedding.document_id, DocumentEmbedding.file_id).where(
            DocumentEmbedding.model_id == model_id, DocumentEmbedding.file_id.in_(list(file_ids))
        )
        return {(int(r.document_id), int(r.file_id)) for r in self.session.execute(stmt)}


async def fetch_active_model(session: AsyncSession) -> ModelRow | None:
    """The active model, for async callers."""
    result = await session.execute(ACTIVE_MODEL)
    model = result.scalar_one_or_none()
    return _row(model) if model else None
