"""Storing parsed records: batched idempotent upserts, rejected records to the quarantine, a summary."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from jobs.errors import InputFileError
from jobs.ingest.records import Rejected, parse_file
from storage.database import make_engine, make_session_factory, session_scope
from storage.documents import DocumentRecord, DocumentRepository, UpsertCounts

logger = logging.getLogger(__name__)

#: Job name recorded with quarantined records.
JOB_NAME = "ingest"

#: Names made by Python's tempfile (tmp + 8 random characters) and mktemp (tmp. + 10).
TEMPORARY_NAME = re.compile(r"tmp([a-z0-9_]{8}|\.[a-z0-9]{10})", re.IGNORECASE)


def default_source_name(path: Path) -> str:
    """The file's name without extension, lower-cased; a temporary file's name is refused (no meaning)."""
    stem = path.stem
    if TEMPORARY_NAME.fullmatch(stem):
        raise InputFileError(
            str(path), f"its name {stem!r} looks temporary, so it names no source: pass --source NAME"
        )
    return stem.lower()


@dataclass(frozen=True)
class IngestSummary:
    path: str
    source: str
    counts: UpsertCounts
    rejected: int
    seconds: float

    def line(self) -> str:
        c = self.counts
        return (
            f"ingest {self.path} (source {self.source}): {c.inserted} new, {c.updated} updated, "
            f"{c.unchanged} unchanged, {c.duplicates_in_input} duplicates in input, "
            f"{self.rejected} rejected (see the quarantine table), {self.seconds:.1f} s"
        )


def ingest_file(
    path: Path, *, database_url: str, source_name: str | None = None, batch_size: int = 1000
) -> IngestSummary:
    start = time.perf_counter()
    source = source_name or default_source_name(path)
    engine = make_engine(database_url, pool_size=1)
    sessions = make_session_factory(engine)
    counts = UpsertCounts()
    rejected = 0
    try:
        with session_scope(sessions) as session:
            source_id = DocumentRepository(session).ensure_source(
                name=source, kind="file", uri=str(path.resolve())
            )
        batch: list[DocumentRecord] = []
        bad: list[Rejected] = []

        def flush() -> None:
            nonlocal counts, rejected
            with session_scope(sessions) as session:
                repo = DocumentRepository(session)
                counts = counts + repo.upsert_documents(documents=batch, source_id=source_id)
                for item in bad:
                    repo.quarantine(
                        job=JOB_NAME, source_ref=item.ref, reason=item.reason, payload=item.payload
                    )
                    logger.warning("rejected %s: %s", item.ref, item.reason)
            rejected += len(bad)
            batch.clear()
            bad.clear()

        for item in parse_file(path, source_name=source):
            if isinstance(item, Rejected):
                bad.append(item)
            else:
                batch.append(item)
            if len(batch) >= batch_size:
                flush()
        flush()
    finally:
        engine.dispose()
    summary = IngestSummary(str(path), source, counts, rejected, time.perf_counter() - start)
    return summary
