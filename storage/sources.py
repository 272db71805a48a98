"""Sources: where documents come from, with their collection settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from storage.errors import SourceExists, SourceNotFound
from storage.models import CrawlURL, Document, Source
from storage.rows import row_to


@dataclass(frozen=True)
class SourceRow:
    id: int
    name: str
    kind: str
    uri: str | None
    enabled: bool
    language: str | None
    category: str | None
    interval_s: int
    max_items: int | None
    url_patterns: tuple[str, ...]
    last_collected_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, source: Source) -> SourceRow:
        return row_to(cls, source, url_patterns=tuple(source.url_patterns or ()))


#: When a source is next due: its last collection plus its interval (NULL when never collected).
NEXT_DUE = Source.last_collected_at + Source.interval_s * text("interval '1 second'")
#: Source kinds the collect job handles (``file`` sources are `pulse ingest` imports).
COLLECTABLE_KINDS = ("feed", "sitemap", "page", "site", "files")


class SourceRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(
        self,
        *,
        name: str,
        kind: str,
        uri: str,
        language: str | None = None,
        category: str | None = None,
        interval_s: int = 3600,
        max_items: int | None = None,
        url_patterns: Sequence[str] = (),
    ) -> SourceRow:
        stmt = (
            insert(Source)
            .values(
                name=name,
                kind=kind,
                uri=uri,
                language=language,
                category=category,
                interval_s=interval_s,
                max_items=max_items,
                url_patterns=list(url_patterns),
            )
            .on_conflict_do_nothing(index_elements=[Source.name])
            .returning(Source.id)
        )
        new_id = self.session.execute(stmt).scalar_one_or_none()
        if new_id is None:
            raise SourceExists(name)
        return self.get(name)

    def get(self, name: str) -> SourceRow:
        source = self.session.execute(select(Source).where(Source.name == name)).scalar_one_or_none()
        if source is None:
            raise SourceNotFound(name)
        return SourceRow.of(source)

    def all(self) -> list[SourceRow]:
        return [SourceRow.of(s) for s in self.session.execute(select(Source).order_by(Source.id)).scalars()]

    def remove(self, name: str) -> int:
        """Delete a source and its frontier; its documents stay (their source becomes unknown)."""
        source = self.get(name)
        self.session.execute(delete(Source).where(Source.id == source.id))
        return source.id

    def stats(self, source_id: int) -> dict[str, Any]:
        docs = self.session.execute(
            select(func.count()).select_from(Document).where(Document.source_id == source_id)
        ).scalar_one()
        frontier = dict(
            self.session.execute(
                select(CrawlURL.status, func.count())
                .where(CrawlURL.source_id == source_id)
                .group_by(CrawlURL.status)
            ).all()
        )
        return {"documents": int(docs), "urls": {str(k): int(v) for k, v in frontier.items()}}

    def due(self, *, names: Sequence[str] = (), force: bool = False) -> list[SourceRow]:
        """Enabled collectable sources whose interval has passed (all named ones when ``force``)."""
        stmt = select(Source).where(Source.enabled, Source.kind.in_(COLLECTABLE_KINDS))
        if names:
            stmt = stmt.where(Source.name.in_(list(names)))
        if not force:
            stmt = stmt.where(
                or_(
                    Source.last_collected_at.is_(None),
                    func.now() >= NEXT_DUE,
                )
            )
        return [SourceRow.of(s) for s in self.session.execute(stmt.order_by(Source.id)).scalars()]

    def next_due_in_s(self) -> float | None:
        """Seconds until the next enabled source is due (0 when one is due now), None when there is none."""
        remaining = case(
            (Source.last_collected_at.is_(None), 0),
            else_=func.extract("epoch", NEXT_DUE - func.now()),
        )
        value = self.session.execute(
            select(func.min(remaining)).where(Source.enabled, Source.kind.in_(COLLECTABLE_KINDS))
        ).scalar_one_or_none()
        return None if value is None else max(0.0, float(value))

    def mark_collected(self, source_ids: Sequence[int]) -> None:
        if source_ids:
            self.session.execute(
                update(Source).where(Source.id.in_(list(source_ids))).values(last_collected_at=func.now())
            )
