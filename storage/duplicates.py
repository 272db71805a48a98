"""URL aliases and near-duplicate fingerprints (MinHash signatures and their LSH buckets).

Writers that may store near-duplicates concurrently serialise on PostgreSQL advisory locks keyed by the
content hash and the LSH buckets (``lock_keys``), so two copies of one story committed at the same moment
by two workers still end up as one document and one alias.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sqlalchemy import delete, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from storage.models import Document, DocumentAlias, DocumentLSH, DocumentMinHash


def _key(value: str) -> int:
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "little", signed=True)


class DuplicateRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def lock_keys(self, *, content_hash: str, buckets: Sequence[int]) -> None:
        """Transaction-scoped advisory locks, taken in ascending order (no deadlock between writers)."""
        keys = sorted({_key("hash:" + content_hash), *(_key(f"lsh:{b}") for b in buckets)})
        # One round trip; the sorted subquery fixes the order in which the locks are taken.
        self.session.execute(
            text(
                "SELECT pg_advisory_xact_lock(k) FROM "
                "(SELECT k FROM unnest(CAST(:keys AS bigint[])) AS k ORDER BY k) AS ordered"
            ),
            {"keys": keys},
        )

    def document_with_hash(self, content_hash: str, *, exclude_url: str) -> int | None:
        return self.session.execute(
            select(Document.id)
            .where(Document.content_hash == content_hash, Document.canonical_url != exclude_url)
            .order_by(Document.id)
            .limit(1)
        ).scalar_one_or_none()

    def candidates(self, buckets: Sequence[int]) -> list[tuple[int, bytes]]:
        """Documents sharing at least one LSH bucket, with their signatures."""
        if not buckets:
            return []
        pairs = [(band, bucket) for band, bucket in enumerate(buckets)]
        ids = (
            select(DocumentLSH.document_id)
            .where(tuple_(DocumentLSH.band, DocumentLSH.bucket).in_(pairs))
            .distinct()
            .scalar_subquery()
        )
        rows = self.session.execute(
            select(DocumentMinHash.document_id, DocumentMinHash.signature).where(
                DocumentMinHash.document_id.in_(ids)
            )
        ).all()
        return [(int(r.document_id), bytes(r.signature)) for r in rows]

    def set_fingerprint(self, document_id: int, *, signature: bytes, buckets: Sequence[int]) -> None:
        self.session.execute(delete(DocumentLSH).where(DocumentLSH.document_id == document_id))
        stmt = insert(DocumentMinHash).values(document_id=document_id, signature=signature)
        self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[DocumentMinHash.document_id], set_={"signature": signature}
            )
        )
        if buckets:
            self.session.execute(
                insert(DocumentLSH)
                .values([{"band": i, "bucket": b, "document_id": document_id} for i, b in enumerate(buckets)])
                .on_conflict_do_nothing()
            )

    def add_alias(self, url: str, *, document_id: int, reason: str, similarity: float | None = None) -> bool:
        """Record another URL of a document; a URL already aliased keeps its first document."""
        stmt = (
            insert(DocumentAlias)
            .values(url=url, document_id=document_id, reason=reason, similarity=similarity)
            .on_conflict_do_nothing(index_elements=[DocumentAlias.url])
            .returning(DocumentAlias.url)
        )
        return self.session.execute(stmt).first() is not None

    def aliases(self, document_id: int) -> list[tuple[str, str, float | None]]:
        rows = self.session.execute(
            select(DocumentAlias.url, DocumentAlias.reason, DocumentAlias.similarity)
            .where(DocumentAlias.document_id == document_id)
            .order_by(DocumentAlias.url)
        ).all()
        return [(r.url, r.reason, r.similarity) for r in rows]
