"""Stage 3 of a collect round: one transaction per record stores its documents (deduplicated), queues the
URLs it discovered, quarantines what failed and marks the URL done in the frontier.

The frontier row only leaves ``pending`` in the same transaction that stores what it produced, so a run
killed at any moment is finished by the next one, without duplicates.
"""

from __future__ import annotations

import base64
import json
import logging
from collections import Counter
from datetime import datetime
from typing import Any

import pyarrow as pa
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from cluster.ground import ray_metrics
from cluster.ground.metrics import COLLECT_DOCUMENTS, COLLECT_ERRORS, COLLECT_URLS
from jobs.collect.dedup import similarity
from jobs.collect.plan import discovered_urls
from jobs.ingest.records import parse_published_at
from storage.database import make_engine, make_session_factory, session_scope
from storage.documents import DocumentRecord, DocumentRepository
from storage.duplicates import DuplicateRepository
from storage.frontier import FrontierRepository, URLOutcome
from storage.sources import SourceRow

logger = logging.getLogger(__name__)

#: Job name recorded with quarantined records.
JOB_NAME = "collect"
#: SQLSTATE of a deadlock PostgreSQL broke by aborting one transaction.
DEADLOCK_DETECTED = "40P01"
#: Times a deadlocked store batch is retried.
DEADLOCK_RETRIES = 3
#: Counters each stored record reports (columns of the store stage's output).
COUNTERS = ("new", "updated", "unchanged", "duplicates", "discovered", "filtered", "failed")


def _doc_record(doc: dict[str, Any]) -> DocumentRecord:
    published = doc.get("published_at")
    return DocumentRecord(
        canonical_url=doc["canonical_url"],
        title=doc["title"],
        text=doc["text"],
        external_id=doc.get("external_id"),
        published_at=parse_published_at(published) if isinstance(published, str) else published,
        language=doc.get("language"),
        metadata=doc.get("metadata") or {},
        language_confidence=doc.get("language_confidence"),
    )


def store_document(
    session: Session,
    doc: dict[str, Any],
    *,
    source_id: int,
    fetched_url: str | None,
    near_duplicate_threshold: float,
) -> tuple[int, str]:
    """Store one document unless it duplicates another; returns the document id and the outcome
    (``new``, ``updated``, ``unchanged`` or ``duplicates``)."""
    docs = DocumentRepository(session)
    dups = DuplicateRepository(session)
    record = _doc_record(doc)
    buckets: list[int] = doc.get("buckets") or []
    signature = base64.b64decode(doc["signature"]) if doc.get("signature") else None
    existing = docs.id_by_url(record.canonical_url)
    if existing is None:
        dups.lock_keys(content_hash=record.content_hash, buckets=buckets)
        twin = dups.document_with_hash(record.content_hash, exclude_url=record.canonical_url)
        best: tuple[int, float] | None = (twin, 1.0) if twin is not None else None
        if best is None and signature is not None:
            for candidate_id, candidate_sig in dups.candidates(buckets):
                score = similarity(signature, candidate_sig)
                if score >= near_duplicate_threshold and (best is None or score > best[1]):
                    best = (candidate_id, score)
        if best is not None:
            reason = "same_content" if twin is not None else "near_duplicate"
            dups.add_alias(record.canonical_url, document_id=best[0], reason=reason, similarity=best[1])
            if fetched_url and fetched_url != record.canonical_url:
                dups.add_alias(fetched_url, document_id=best[0], reason=reason, similarity=best[1])
            return best[0], "duplicates"
    doc_id, outcome = docs.upsert_one(record, source_id=source_id)
    if outcome != "unchanged" and signature is not None:
        dups.set_fingerprint(doc_id, signature=signature, buckets=buckets)
    if fetched_url and fetched_url != record.canonical_url:
        dups.add_alias(fetched_url, document_id=doc_id, reason="canonical")
    return doc_id, outcome


class StoreBatch:
    """``map_batches`` callable on a small actor pool: one engine per actor, one transaction per batch."""

    def __init__(
        self,
        *,
        database_url: str,
        run_id: int,
        sources: dict[int, SourceRow],
        near_duplicate_threshold: float,
        max_depth: int,
    ) -> None:
        self.engine = make_engine(database_url, pool_size=1)
        self.sessions = make_session_factory(self.engine)
        self.run_id = run_id
        self.sources = sources
        self.threshold = near_duplicate_threshold
        self.max_depth = max_depth

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = self.store_all(batch.to_pylist())
        record_batch_metrics(rows)
        return pa.Table.from_pylist(rows)

    def store_all(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One transaction per batch, one savepoint per record. Two store actors may deadlock on the
        advisory locks of near-duplicate buckets; PostgreSQL then aborts one batch, which is retried."""
        for attempt in range(DEADLOCK_RETRIES + 1):
            try:
                with session_scope(self.sessions) as session:
                    return [self.store(session, rec) for rec in records]
            except OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) != DEADLOCK_DETECTED or attempt == DEADLOCK_RETRIES:
                    raise
                logger.warning("store batch deadlocked with another writer; retrying (%d)", attempt + 1)
        raise AssertionError("unreachable")

    def store(self, session: Session, rec: dict[str, Any]) -> dict[str, Any]:
        """Store one record in a savepoint; a record PostgreSQL refuses is quarantined (``store_error``)
        instead of stopping the job, and nothing of it is kept but that."""
        try:
            with session.begin_nested():
                return self._store(session, rec)
        except (DataError, IntegrityError) as exc:
            logger.warning("cannot store %s: %s", rec["url"], exc.orig)
            detail = f"PostgreSQL refused the record: {exc.orig}"
            failed = {**rec, "outcome": "failed", "error": "store_error", "error_detail": detail}
            failed.update(documents="[]", discovered="[]", rejects="[]", problem=None, retry_after_s=None)
            with session.begin_nested():
                return self._store(session, failed)

    def _store(self, session: Session, rec: dict[str, Any]) -> dict[str, Any]:
        counts: Counter[str] = Counter()
        frontier = FrontierRepository(session)
        docs_repo = DocumentRepository(session)
        document_id: int | None = None
        source_id = int(rec["source_id"])
        for reject in json.loads(rec.get("rejects") or "[]"):
            docs_repo.quarantine(
                job=JOB_NAME,
                source_ref=reject["ref"],
                reason=reject["reason"],
                payload={"url": rec["url"]},
            )
            counts["failed"] += 1
        if rec["outcome"] == "document":
            for doc in json.loads(rec["documents"]):
                fetched = rec.get("final_url") or rec["url"]
                document_id, outcome = store_document(
                    session,
                    doc,
                    source_id=source_id,
                    fetched_url=fetched if rec["kind"] == "page" else None,
                    near_duplicate_threshold=self.threshold,
                )
                counts[outcome] += 1
        elif rec["outcome"] == "listing":
            items = json.loads(rec["discovered"])
            source = self.sources.get(source_id)
            if source is not None:
                new_urls, filtered = discovered_urls(
                    items, source=source, depth=int(rec["depth"]), max_depth=self.max_depth
                )
                counts["discovered"] += frontier.add(new_urls)
                counts["filtered"] += filtered
        elif rec["outcome"] == "unchanged":
            counts["unchanged"] += 1
        if rec.get("problem"):
            docs_repo.quarantine(
                job=JOB_NAME,
                source_ref=rec["url"],
                reason=f"malformed_{'feed' if rec['kind'] == 'feed' else 'sitemap'}",
                payload={"detail": rec["problem"], "partial": True},
            )
        failed = rec["outcome"] == "failed"
        if failed:
            counts["failed"] += 1
            docs_repo.quarantine(
                job=JOB_NAME,
                source_ref=rec["url"],
                reason=rec["error"],
                payload={
                    "detail": rec.get("error_detail"),
                    "status": rec.get("status"),
                    "kind": rec["kind"],
                },
            )
        frontier.record(
            URLOutcome(
                url=rec["url"],
                status="failed" if failed else "done",
                http_status=rec.get("status"),
                error=rec.get("error"),
                etag=rec.get("etag"),
                last_modified=rec.get("last_modified"),
                document_id=document_id,
                fetched_at=_when(rec.get("fetched_at")),
                retry_after_s=rec.get("retry_after_s") if failed else None,
            ),
            run_id=self.run_id,
        )
        out: dict[str, Any] = {"url": rec["url"], "kind": rec["kind"], "error": rec.get("error")}
        out.update({name: counts[name] for name in COUNTERS})
        return out


#: The counters of ``COUNTERS`` that are document outcomes (``pulse_collect_documents_total``).
DOCUMENT_OUTCOMES = ("new", "updated", "unchanged", "duplicates")


def batch_metrics(rows: list[dict[str, Any]]) -> dict[str, Counter[tuple[str, ...]]]:
    """A stored batch's metric increments, summed per tag values (one record per series and batch):
    ``urls`` by (kind, result), ``documents`` by (source kind, outcome), ``errors`` by error code."""
    urls: Counter[tuple[str, ...]] = Counter()
    documents: Counter[tuple[str, ...]] = Counter()
    errors: Counter[tuple[str, ...]] = Counter()
    for row in rows:
        urls[(row["kind"], _result(row))] += 1
        for outcome in DOCUMENT_OUTCOMES:
            documents[(row["kind"], outcome)] += row.get(outcome) or 0
        if row.get("error"):
            errors[(str(row["error"]),)] += 1
    return {"urls": urls, "documents": +documents, "errors": errors}


def record_batch_metrics(rows: list[dict[str, Any]]) -> None:
    """Record ``batch_metrics(rows)`` (Ray's metrics agent exports them; see docs/observability.md)."""
    sums = batch_metrics(rows)
    for (kind, result), n in sums["urls"].items():
        ray_metrics.inc(COLLECT_URLS, n, kind=kind, result=result)
    for (kind, outcome), n in sums["documents"].items():
        ray_metrics.inc(COLLECT_DOCUMENTS, n, source_kind=kind, outcome=outcome)
    for (code,), n in sums["errors"].items():
        ray_metrics.inc(COLLECT_ERRORS, n, kind=code)


def _result(row: dict[str, Any]) -> str:
    """The metric label of a stored record: its error code, else its main outcome."""
    if row.get("error"):
        return str(row["error"])
    return next((name for name in COUNTERS if row.get(name)), "done")


def _when(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return parse_published_at(str(value))
