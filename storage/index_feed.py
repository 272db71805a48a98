"""What the search indexes read from PostgreSQL besides vector files: document metadata for filters,
texts for the keyword index, and the deletion log.

Every feed is keyed by a monotonic watermark so a reader catches up from where it stopped: the
manifest file id (``document_embeddings.file_id``) for texts, the deletion log id for deletions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from storage.models import Document, DocumentDeletion, DocumentEmbedding, Source

#: Publication time (epoch seconds) of a document without a date.
NO_DATE = np.iinfo(np.int64).min


def category_column() -> ColumnElement[str | None]:
    """A document's category: its own (``metadata.category``), else its source's."""
    return func.coalesce(Document.metadata_["category"].astext, Source.category)


@dataclass(frozen=True)
class DocumentMeta:
    """The fields search filters on."""

    language: str | None
    source: str | None
    category: str | None
    published_at: datetime | None


@dataclass(frozen=True)
class MetaBatch:
    """Metadata of a batch of rows (one entry per row), as sources deliver it."""

    languages: Sequence[str | None]
    sources: Sequence[str | None]
    categories: Sequence[str | None]
    published: np.ndarray  # int64 epoch seconds, NO_DATE when unknown

    @classmethod
    def unknown(cls, n: int) -> MetaBatch:
        none: list[str | None] = [None] * n
        return cls(none, none, none, np.full(n, NO_DATE, dtype=np.int64))

    def column(self, name: str) -> Sequence[str | None]:
        return {"language": self.languages, "source": self.sources, "category": self.categories}[name]

    def take(self, rows: np.ndarray) -> MetaBatch:
        pick = rows.tolist()
        return MetaBatch(
            [self.languages[i] for i in pick],
            [self.sources[i] for i in pick],
            [self.categories[i] for i in pick],
            np.asarray(self.published, dtype=np.int64)[rows],
        )

    @classmethod
    def of(cls, metas: Sequence[DocumentMeta | None]) -> MetaBatch:
        """Columns of per-document metadata (``None``: a document that no longer exists)."""
        return cls(
            [m.language if m else None for m in metas],
            [m.source if m else None for m in metas],
            [m.category if m else None for m in metas],
            np.asarray(
                [int(m.published_at.timestamp()) if m and m.published_at else NO_DATE for m in metas],
                dtype=np.int64,
            ),
        )


def meta_statement(
    ids: Sequence[int],
) -> Select[int, str | None, str | None, str | None, datetime | None]:
    return (
        select(Document.id, Document.language, Source.name, category_column(), Document.published_at)
        .outerjoin(Source, Source.id == Document.source_id)
        .where(Document.id.in_(list(ids)))
    )


def fetch_meta(session: Session, ids: Sequence[int]) -> dict[int, DocumentMeta]:
    """Metadata of the given documents (documents that no longer exist are absent)."""
    if not len(ids):
        return {}
    return {int(r[0]): DocumentMeta(r[1], r[2], r[3], r[4]) for r in session.execute(meta_statement(ids))}


def deletions_after(session: Session, sequence: int, *, limit: int = 100_000) -> tuple[int, list[int]]:
    """(last sequence read, documents deleted after ``sequence``), oldest first, at most ``limit``."""
    rows = session.execute(
        select(DocumentDeletion.id, DocumentDeletion.document_id)
        .where(DocumentDeletion.id > sequence)
        .order_by(DocumentDeletion.id)
        .limit(limit)
    ).all()
    if not rows:
        return sequence, []
    return int(rows[-1][0]), [int(r[1]) for r in rows]


@dataclass(frozen=True)
class KeywordDocument:
    """A document as the keyword index needs it, with the manifest file its embedding lives in."""

    id: int
    text: str  # title and body, as the keyword index analyses them
    language: str | None
    meta: DocumentMeta
    file_id: int


def embedded_documents_after(
    session: Session, *, model_id: int, file_id: int, limit: int = 5_000
) -> list[KeywordDocument]:
    """Documents whose current embedding (for ``model_id``) is in a manifest file after ``file_id``.

    Ordered by file then document, at most ``limit`` rows; a caller pages with the last row's file id
    only once it has read every row of that file (``limit`` is raised to cover whole files).
    """
    stmt = (
        select(
            Document.id,
            Document.title,
            Document.text,
            Document.language,
            Source.name,
            category_column(),
            Document.published_at,
            DocumentEmbedding.file_id,
        )
        .join(DocumentEmbedding, DocumentEmbedding.document_id == Document.id)
        .outerjoin(Source, Source.id == Document.source_id)
        .where(DocumentEmbedding.model_id == model_id, DocumentEmbedding.file_id > file_id)
        .order_by(DocumentEmbedding.file_id, Document.id)
        .limit(limit)
    )
    rows = session.execute(stmt).all()
    if len(rows) == limit:
        # Drop the last (maybe partial) file unless it is the only one: the next page starts there.
        last = rows[-1][7]
        whole = [r for r in rows if r[7] != last]
        # One file larger than the page: read all of that file.
        rows = whole or list(session.execute(stmt.limit(None).where(DocumentEmbedding.file_id == last)).all())
    return [
        KeywordDocument(
            id=int(r[0]),
            text=f"{r[1]}\n{r[2]}",
            language=r[3],
            meta=DocumentMeta(r[3], r[4], r[5], r[6]),
            file_id=int(r[7]),
        )
        for r in rows
    ]
