"""Which documents each model has embedded, the vector-file manifest, and embedding runs.

Writers commit a Parquet file first, then one manifest row (``vector_files``) together with the
``document_embeddings`` rows it covers, in one transaction. ``vector_files.id`` is the watermark that
readers (index actors) catch up from. A document is pending for a model when it has no embedding row at
its current content hash (or, in a ``--full`` run, one older than the run's cutoff).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from storage.models import Document, DocumentEmbedding, EmbedRun, VectorFile

#: Advisory-lock class of embedding runs (the second key is the model id).
EMBED_LOCK_CLASS = 0x656D62  # "emb"
#: SQLSTATE of a lock wait that ran past ``lock_timeout``.
LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True)
class PendingDocument:
    id: int
    content_hash: str
    title: str
    text: str


@dataclass(frozen=True)
class IdRange:
    """Pending documents with ``lo <= id <= hi``: ``count`` of them when planned."""

    lo: int
    hi: int
    count: int


@dataclass(frozen=True)
class VectorFileRef:
    id: int
    path: str
    row_count: int


@dataclass(frozen=True)
class EmbedRunRow:
    id: int
    model_id: int
    full: bool
    status: str
    started_at: datetime
    cutoff: datetime
    finished_at: datetime | None
    summary: dict[str, Any]


class EmbeddingRepository:
    """SQL for the manifest and what needs embedding, on a caller-owned session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # -- what needs embedding -------------------------------------------------------------------
    @staticmethod
    def _pending(model_id: int, cutoff: datetime | None):  # type: ignore[no-untyped-def]
        join = and_(DocumentEmbedding.document_id == Document.id, DocumentEmbedding.model_id == model_id)
        condition = or_(
            DocumentEmbedding.document_id.is_(None), DocumentEmbedding.content_hash != Document.content_hash
        )
        if cutoff is not None:
            condition = or_(condition, DocumentEmbedding.embedded_at < cutoff)
        return join, condition

    def plan_ranges(
        self, *, model_id: int, cutoff: datetime | None = None, rows_per_range: int, page: int = 100_000
    ) -> Iterator[IdRange]:
        """Id ranges of about ``rows_per_range`` pending documents each, in id order (ids only are read)."""
        join, condition = self._pending(model_id, cutoff)
        after = 0
        lo: int | None = None
        count = 0
        last = 0
        while True:
            ids = (
                self.session.execute(
                    select(Document.id)
                    .outerjoin(DocumentEmbedding, join)
                    .where(condition, Document.id > after)
                    .order_by(Document.id)
                    .limit(page)
                )
                .scalars()
                .all()
            )
            if not ids:
                break
            for doc_id in ids:
                if lo is None:
                    lo = doc_id
                count += 1
                last = doc_id
                if count == rows_per_range:
                    yield IdRange(lo, doc_id, count)
                    lo, count = None, 0
            after = ids[-1]
        if lo is not None:
            yield IdRange(lo, last, count)

    def pending_in_range(
        self, *, model_id: int, lo: int, hi: int, cutoff: datetime | None = None
    ) -> list[PendingDocument]:
        """The documents of one planned range that are still pending (another run may have done some)."""
        join, condition = self._pending(model_id, cutoff)
        stmt = (
            select(Document.id, Document.content_hash, Document.title, Document.text)
            .outerjoin(DocumentEmbedding, join)
            .where(condition, Document.id.between(lo, hi))
            .order_by(Document.id)
        )
        return [PendingDocument(r.id, r.content_hash, r.title, r.text) for r in self.session.execute(stmt)]

    def pending_of(
        self, *, model_id: int, keys: Sequence[tuple[int, str]], cutoff: datetime | None = None
    ) -> set[int]:
        """Of ``(document id, content hash)`` pairs read elsewhere (Parquet), the ids that are pending:
        the document exists at that content hash and has no current vector for the model."""
        if not keys:
            return set()
        join, condition = self._pending(model_id, cutoff)
        ids = [int(k) for k, _ in keys]
        current = dict(
            self.session.execute(
                select(Document.id, Document.content_hash)
                .outerjoin(DocumentEmbedding, join)
                .where(condition, Document.id.in_(ids))
            ).all()
        )
        return {int(k) for k, h in keys if current.get(int(k)) == h}

    def count_pending(self, *, model_id: int, cutoff: datetime | None = None) -> int:
        join, condition = self._pending(model_id, cutoff)
        stmt = select(func.count()).select_from(Document).outerjoin(DocumentEmbedding, join).where(condition)
        return int(self.session.execute(stmt).scalar_one())

    def count_embedded(self, *, model_id: int) -> int:
        stmt = (
            select(func.count()).select_from(DocumentEmbedding).where(DocumentEmbedding.model_id == model_id)
        )
        return int(self.session.execute(stmt).scalar_one())

    # -- the manifest ---------------------------------------------------------------------------
    def record_vector_file(
        self,
        *,
        model_id: int,
        path: str,
        document_ids: Sequence[int],
        content_hashes: Sequence[str],
        chunk_counts: Sequence[int] | None = None,
        row_count: int | None = None,
    ) -> int:
        """Commit one durable Parquet file: its manifest row and the embeddings it holds.

        Idempotent by path: committing the same file twice changes nothing.
        """
        rows = len(document_ids) if row_count is None else row_count
        counts = list(chunk_counts) if chunk_counts is not None else [1] * len(document_ids)
        file_id = self.session.execute(
            insert(VectorFile)
            .values(model_id=model_id, path=path, row_count=rows)
            .on_conflict_do_update(index_elements=[VectorFile.path], set_={"row_count": rows})
            .returning(VectorFile.id)
        ).scalar_one()
        if document_ids:
            stmt = insert(DocumentEmbedding).values(
                [
                    {
                        "model_id": model_id,
                        "document_id": int(doc_id),
                        "content_hash": h,
                        "file_id": file_id,
                        "chunk_count": int(n),
                    }
                    for doc_id, h, n in zip(document_ids, content_hashes, counts, strict=True)
                ]
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[DocumentEmbedding.model_id, DocumentEmbedding.document_id],
                set_={
                    "content_hash": stmt.excluded.content_hash,
                    "file_id": stmt.excluded.file_id,
                    "chunk_count": stmt.excluded.chunk_count,
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

    def latest_watermark(self, *, model_id: int) -> int:
        return int(self.session.execute(_latest_watermark(model_id)).scalar_one())

    def committed_paths(self, *, model_id: int) -> set[str]:
        stmt = select(VectorFile.path).where(VectorFile.model_id == model_id)
        return set(self.session.execute(stmt).scalars())

    def live_vector_keys(self, *, model_id: int, file_ids: Sequence[int]) -> set[tuple[int, int]]:
        """``(document_id, file_id)`` pairs that are current: a document's vectors live in one file only."""
        if not file_ids:
            return set()
        stmt = select(DocumentEmbedding.document_id, DocumentEmbedding.file_id).where(
            DocumentEmbedding.model_id == model_id, DocumentEmbedding.file_id.in_(list(file_ids))
        )
        return {(int(r.document_id), int(r.file_id)) for r in self.session.execute(stmt)}


def _run_row(r: EmbedRun) -> EmbedRunRow:
    return EmbedRunRow(
        r.id, r.model_id, r.full, r.status, r.started_at, r.cutoff, r.finished_at, dict(r.summary or {})
    )


class EmbedRunRepository:
    """Embedding runs and their per-model lock, on a caller-owned session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def try_lock(self, model_id: int) -> bool:
        """Take the session-level lock of a model's runs; hold the connection for the run's whole life."""
        stmt = select(func.pg_try_advisory_lock(EMBED_LOCK_CLASS, model_id))
        return bool(self.session.execute(stmt).scalar_one())

    def lock(self, model_id: int, *, wait_s: float = 0.0) -> bool:
        """``try_lock``, waiting up to ``wait_s`` seconds for the run that holds the lock (0: not at all);
        False when it is still held then. A waiting caller is served before any later ``try_lock`` (a
        request that conflicts with a queued one waits in PostgreSQL), so a stream of short runs (the CMS
        scheduler embedding items as editors change them) cannot starve it."""
        if wait_s <= 0:
            return self.try_lock(model_id)
        self.session.execute(text(f"SET LOCAL lock_timeout = {max(1, int(wait_s * 1000))}"))
        try:
            self.session.execute(select(func.pg_advisory_lock(EMBED_LOCK_CLASS, model_id)))
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            self.session.rollback()
            return False
        return True

    def unlock(self, model_id: int) -> None:
        self.session.execute(select(func.pg_advisory_unlock(EMBED_LOCK_CLASS, model_id)))

    def start(self, *, model_id: int, full: bool) -> EmbedRunRow:
        """A new run. A run left ``running`` by a killed process becomes ``interrupted``; a ``--full`` run
        right after an unfinished ``--full`` run keeps its cutoff, so what that run did is not redone."""
        previous = self.last(model_id)
        self.session.execute(
            update(EmbedRun)
            .where(EmbedRun.model_id == model_id, EmbedRun.status == "running")
            .values(status="interrupted", finished_at=func.now())
        )
        values: dict[str, Any] = {"model_id": model_id, "full": full}
        if full and previous is not None and previous.full and previous.status != "done":
            values["cutoff"] = previous.cutoff
        run = self.session.execute(insert(EmbedRun).values(**values).returning(EmbedRun)).scalar_one()
        return _run_row(run)

    def finish(self, run_id: int, *, status: str, summary: dict[str, Any]) -> None:
        self.session.execute(
            update(EmbedRun)
            .where(EmbedRun.id == run_id)
            .values(status=status, summary=summary, finished_at=func.now())
        )

    def last(self, model_id: int) -> EmbedRunRow | None:
        run = self.session.execute(
            select(EmbedRun).where(EmbedRun.model_id == model_id).order_by(EmbedRun.id.desc()).limit(1)
        ).scalar_one_or_none()
        return _run_row(run) if run else None


def _latest_watermark(model_id: int):  # type: ignore[no-untyped-def]
    return select(func.coalesce(func.max(VectorFile.id), 0)).where(VectorFile.model_id == model_id)


async def fetch_latest_watermark(session: AsyncSession, *, model_id: int) -> int:
    """The newest committed vector file of a model (0 if none), for async callers."""
    return int((await session.execute(_latest_watermark(model_id))).scalar_one())
