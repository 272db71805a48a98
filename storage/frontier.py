"""The crawl frontier (``crawl_urls``) and collect runs.

A URL is ``pending`` until a run commits its outcome together with what it produced, so a run killed at
any point leaves exactly the unfinished URLs pending for the next run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from storage.models import CollectRun, CrawlURL

#: Key of the PostgreSQL advisory lock that makes collect runs exclusive.
COLLECT_LOCK_KEY = 0x70756C73  # "puls"
#: A failed URL with a transient error is retried this many times (in later runs) at most.
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class FrontierRow:
    url: str
    source_id: int
    kind: str
    host: str
    depth: int
    hint: dict[str, Any]
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True)
class NewURL:
    url: str
    source_id: int
    kind: str
    host: str
    depth: int
    hint: dict[str, Any]


@dataclass(frozen=True)
class URLOutcome:
    """What a run learned about one URL; written in the same transaction as the documents it produced."""

    url: str
    status: str  # "done" or "failed"
    http_status: int | None = None
    error: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    document_id: int | None = None
    fetched_at: datetime | None = None
    retry_after_s: float | None = None


def _rows(urls: Iterable[NewURL]) -> list[dict[str, Any]]:
    """Insert rows, one per URL (a URL twice in one statement would be an error in ON CONFLICT)."""
    unique = {u.url: u for u in urls}
    return [
        {
            "url": u.url,
            "source_id": u.source_id,
            "kind": u.kind,
            "host": u.host,
            "depth": u.depth,
            "hint": u.hint,
        }
        for u in unique.values()
    ]


class FrontierRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def seed(self, roots: Iterable[NewURL]) -> int:
        """Queue each source's root URL for this cycle (again, when it was fetched in an earlier one);
        validators from earlier fetches are kept for the conditional GET."""
        rows = _rows(roots)
        if not rows:
            return 0
        stmt = insert(CrawlURL).values(rows)
        upsert = stmt.on_conflict_do_update(
            index_elements=[CrawlURL.url],
            set_={
                "status": "pending",
                "source_id": stmt.excluded.source_id,
                "kind": stmt.excluded.kind,
                "depth": 0,
            },
            where=CrawlURL.status != "pending",
        ).returning(CrawlURL.url)
        return len(self.session.execute(upsert).all())

    def add(self, urls: Sequence[NewURL]) -> int:
        """Queue newly discovered URLs; a URL already known (pending, done or failed) is left alone."""
        rows = _rows(urls)
        if not rows:
            return 0
        stmt = (
            insert(CrawlURL)
            .values(rows)
            .on_conflict_do_nothing(index_elements=[CrawlURL.url])
            .returning(CrawlURL.url)
        )
        return len(self.session.execute(stmt).all())

    def requeue_retries(self) -> int:
        """Failed URLs whose retry time has come (transient errors only) become pending again."""
        stmt = (
            update(CrawlURL)
            .where(
                CrawlURL.status == "failed",
                CrawlURL.retry_at.is_not(None),
                CrawlURL.retry_at <= func.now(),
                CrawlURL.attempts < MAX_ATTEMPTS,
            )
            .values(status="pending")
            .returning(CrawlURL.url)
        )
        return len(self.session.execute(stmt).all())

    def pending(self, *, source_ids: Sequence[int] | None = None) -> list[FrontierRow]:
        stmt = select(CrawlURL).where(CrawlURL.status == "pending")
        if source_ids is not None:
            stmt = stmt.where(CrawlURL.source_id.in_(list(source_ids)))
        rows = self.session.execute(stmt.order_by(CrawlURL.depth, CrawlURL.discovered_at)).scalars()
        return [
            FrontierRow(r.url, r.source_id, r.kind, r.host, r.depth, r.hint, r.etag, r.last_modified)
            for r in rows
        ]

    def count_pending(self, *, source_ids: Sequence[int] | None = None) -> int:
        stmt = select(func.count()).select_from(CrawlURL).where(CrawlURL.status == "pending")
        if source_ids is not None:
            stmt = stmt.where(CrawlURL.source_id.in_(list(source_ids)))
        return int(self.session.execute(stmt).scalar_one())

    def record(self, outcome: URLOutcome, *, run_id: int | None) -> None:
        values: dict[str, Any] = {
            "status": outcome.status,
            "http_status": outcome.http_status,
            "error": outcome.error,
            "attempts": CrawlURL.attempts + 1,
            "run_id": run_id,
            "fetched_at": outcome.fetched_at or func.now(),
            "retry_at": (
                func.now() + text(f"interval '{max(1, int(outcome.retry_after_s))} seconds'")
                if outcome.retry_after_s is not None
                else None
            ),
        }
        if outcome.document_id is not None:
            values["document_id"] = outcome.document_id
        # Validators are kept from the last good response: a failure must not erase them.
        if outcome.etag is not None or outcome.last_modified is not None:
            values["etag"] = outcome.etag
            values["last_modified"] = outcome.last_modified
        self.session.execute(update(CrawlURL).where(CrawlURL.url == outcome.url).values(**values))

    def failures_by_reason(self, *, run_id: int) -> dict[str, int]:
        rows = self.session.execute(
            select(CrawlURL.error, func.count())
            .where(CrawlURL.run_id == run_id, CrawlURL.status == "failed")
            .group_by(CrawlURL.error)
        ).all()
        return {str(reason): int(n) for reason, n in rows}


class RunRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def try_lock(self) -> bool:
        """Take the session-level collect lock; hold the connection for the run's whole life."""
        return bool(self.session.execute(select(func.pg_try_advisory_lock(COLLECT_LOCK_KEY))).scalar_one())

    def unlock(self) -> None:
        self.session.execute(select(func.pg_advisory_unlock(COLLECT_LOCK_KEY)))

    def start(self) -> int:
        """A new run; runs left ``running`` by a killed process are marked ``interrupted``."""
        self.session.execute(
            update(CollectRun).where(CollectRun.status == "running").values(status="interrupted")
        )
        return int(self.session.execute(insert(CollectRun).returning(CollectRun.id)).scalar_one())

    def finish(self, run_id: int, *, status: str, summary: dict[str, Any]) -> None:
        self.session.execute(
            update(CollectRun)
            .where(CollectRun.id == run_id)
            .values(status=status, summary=summary, finished_at=func.now())
        )

    def last(self, limit: int = 5) -> list[dict[str, Any]]:
        runs = self.session.execute(select(CollectRun).order_by(CollectRun.id.desc()).limit(limit)).scalars()
        return [
            {
                "id": r.id,
                "status": r.status,
                "started_at": r.started_at,
                "finished_at": r.finished_at,
                "summary": r.summary,
            }
            for r in runs
        ]
