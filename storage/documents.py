"""Documents and sources: idempotent upserts keyed by canonical URL, lookups, the quarantine."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, func, literal_column, select
from sqlalchemy import delete as sa_delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from storage.index_feed import category_column
from storage.languages import detect_language, normalize_code
from storage.models import Document, QuarantinedRecord, Source

_WS = re.compile(r"\s+")


def normalize_text(value: str) -> str:
    """NFC, collapsed whitespace, no NUL (PostgreSQL text cannot hold it), stripped: the form that is
    hashed and stored."""
    return _WS.sub(" ", unicodedata.normalize("NFC", value.replace("\x00", ""))).strip()


def map_json_strings(value: Any, fn: Callable[[str], str]) -> Any:
    """``value`` (a JSON value) with ``fn`` applied to every string in it, keys included, at any depth."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {map_json_strings(k, fn): map_json_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [map_json_strings(v, fn) for v in value]
    return value


def clean_json(value: Any) -> Any:
    """A JSON value without NUL characters in its strings (PostgreSQL's jsonb refuses ``\\u0000``)."""
    return map_json_strings(value, lambda text: text.replace("\x00", ""))


#: What PostgreSQL text and jsonb cannot hold: NUL and lone surrogates (U+D800-U+DFFF, not Unicode text).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any) -> Any:
    """A JSON value PostgreSQL text and jsonb can hold: NUL dropped, lone surrogates replaced by U+FFFD,
    in strings and keys at any depth."""
    return map_json_strings(
        value, lambda text: UNSTORABLE.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", text)
    )


def content_hash(title: str, body: str) -> str:
    """SHA-256 of the normalised title and text: equal content, equal hash, whatever the whitespace."""
    payload = normalize_text(title) + "\x1f" + normalize_text(body)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class DocumentRecord:
    """A document ready to store. ``canonical_url`` is its natural key."""

    canonical_url: str
    title: str
    text: str
    external_id: str | None = None
    published_at: datetime | None = None
    language: str | None = None  # None: identified when stored (``storage.languages``)
    metadata: dict[str, Any] = field(default_factory=dict)
    language_confidence: float | None = None  # the identifier's probability; None when declared

    @property
    def content_hash(self) -> str:
        return content_hash(self.title, self.text)


@dataclass(frozen=True)
class UpsertCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates_in_input: int = 0

    def __add__(self, other: UpsertCounts) -> UpsertCounts:
        return UpsertCounts(
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
            self.duplicates_in_input + other.duplicates_in_input,
        )


@dataclass(frozen=True)
class DocumentSummary:
    """What search results show of a document."""

    id: int
    title: str
    url: str
    published_at: datetime | None
    language: str | None = None
    source: str | None = None
    category: str | None = None


@dataclass(frozen=True)
class DocumentDetail(DocumentSummary):
    """A whole document, as ``GET /v1/documents/{id}`` shows it."""

    text: str = ""
    fetched_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class DocumentRepository:
    """SQL for documents, sources and quarantined records, on a caller-owned session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def ensure_source(self, *, name: str, kind: str, uri: str | None = None) -> int:
        stmt = (
            insert(Source)
            .values(name=name, kind=kind, uri=uri)
            .on_conflict_do_update(index_elements=[Source.name], set_={"uri": uri})
            .returning(Source.id)
        )
        return int(self.session.execute(stmt).scalar_one())

    def upsert_documents(self, *, documents: Sequence[DocumentRecord], source_id: int | None) -> UpsertCounts:
        """Insert new documents, update changed ones, leave identical ones untouched (no write at all)."""
        by_url: dict[str, DocumentRecord] = {}
        for doc in documents:
            by_url[doc.canonical_url] = doc  # last one wins inside one batch
        duplicates = len(documents) - len(by_url)
        if not by_url:
            return UpsertCounts(duplicates_in_input=duplicates)
        rows = [_row(doc, source_id) for doc in by_url.values()]
        result = self.session.execute(_upsert_statement(rows)).all()
        inserted = sum(1 for row in result if row.inserted)
        updated = len(result) - inserted
        return UpsertCounts(
            inserted=inserted,
            updated=updated,
            unchanged=len(rows) - len(result),
            duplicates_in_input=duplicates,
        )

    def upsert_one(self, document: DocumentRecord, *, source_id: int | None) -> tuple[int, str]:
        """Store one document; returns its id and ``"new"``, ``"updated"`` or ``"unchanged"``."""
        row = self.session.execute(_upsert_statement([_row(document, source_id)])).one_or_none()
        if row is not None:
            return int(row.id), "new" if row.inserted else "updated"
        existing = self.id_by_url(document.canonical_url)
        if existing is None:  # pragma: no cover - the conflicting row cannot vanish inside the transaction
            raise RuntimeError(f"document {document.canonical_url} neither inserted nor found")
        return existing, "unchanged"

    def id_by_url(self, canonical_url: str) -> int | None:
        return self.session.execute(
            select(Document.id).where(Document.canonical_url == canonical_url)
        ).scalar_one_or_none()

    def delete(self, ids: Sequence[int]) -> int:
        """Delete documents (their embeddings go with them; the deletion log tells the indexes)."""
        if not ids:
            return 0
        # A DML statement gives a CursorResult; Session.execute is typed as giving a Result (SQLAlchemy's
        # advice: cast to read rowcount).
        result = cast(
            CursorResult[Any], self.session.execute(sa_delete(Document).where(Document.id.in_(list(ids))))
        )
        return int(result.rowcount or 0)

    def count(self) -> int:
        return int(self.session.execute(select(func.count()).select_from(Document)).scalar_one())

    def quarantine(self, *, job: str, source_ref: str, reason: str, payload: dict[str, Any]) -> None:
        """Record a refused record. What it carries is made storable (``storable``): a record refused
        for holding NUL or a lone surrogate must not fail its own quarantine."""
        self.session.add(
            QuarantinedRecord(
                job=job, source_ref=storable(source_ref), reason=storable(reason), payload=storable(payload)
            )
        )


def _row(doc: DocumentRecord, source_id: int | None) -> dict[str, Any]:
    if doc.language:
        language, confidence = normalize_code(doc.language), doc.language_confidence
    else:  # every stored document has a language: identify it (see storage.languages)
        guess = detect_language(f"{doc.title}\n{doc.text}")
        language, confidence = guess.code, guess.confidence
    return {
        "source_id": source_id,
        "external_id": doc.external_id,
        "canonical_url": doc.canonical_url,
        "title": normalize_text(doc.title),
        "text": normalize_text(doc.text),
        "language": language,
        "language_confidence": confidence,
        "published_at": doc.published_at,
        "content_hash": doc.content_hash,
        "metadata": clean_json(doc.metadata),
    }


def _upsert_statement(rows: list[dict[str, Any]]) -> Any:
    """INSERT ... ON CONFLICT (canonical_url) DO UPDATE only when something differs, RETURNING the
    changed rows' ids and whether each was inserted: identical input writes nothing at all."""
    stmt = insert(Document).values(rows)
    excluded = stmt.excluded
    changed = (
        Document.content_hash.is_distinct_from(excluded.content_hash)
        | Document.published_at.is_distinct_from(excluded.published_at)
        | Document.language.is_distinct_from(excluded.language)
        | Document.external_id.is_distinct_from(excluded.external_id)
        | Document.source_id.is_distinct_from(excluded.source_id)
        | Document.metadata_.is_distinct_from(excluded.metadata)
    )
    return stmt.on_conflict_do_update(
        index_elements=[Document.canonical_url],
        set_={
            "source_id": excluded.source_id,
            "external_id": excluded.external_id,
            "title": excluded.title,
            "text": excluded.text,
            "language": excluded.language,
            "language_confidence": excluded.language_confidence,
            "published_at": excluded.published_at,
            "content_hash": excluded.content_hash,
            "metadata": excluded.metadata,
            "fetched_at": func.now(),
            "updated_at": func.now(),
        },
        where=changed,
    ).returning(Document.id, literal_column("(xmax = 0)").label("inserted"))


def summary_statement(
    ids: Sequence[int],
) -> Select[int, str, str, datetime | None, str | None, str, str | None]:
    """The query behind ``fetch_summaries``: search results' fields, with source name and category."""
    return (
        select(
            Document.id,
            Document.title,
            Document.canonical_url,
            Document.published_at,
            Document.language,
            Source.name.label("source"),
            category_column().label("category"),
        )
        .outerjoin(Source, Source.id == Document.source_id)
        .where(Document.id.in_(list(ids)))
    )


def _summary(row: Any) -> DocumentSummary:
    return DocumentSummary(
        row.id, row.title, row.canonical_url, row.published_at, row.language, row.source, row.category
    )


async def fetch_summaries(session: AsyncSession, ids: Sequence[int]) -> dict[int, DocumentSummary]:
    if not ids:
        return {}
    result = await session.execute(summary_statement(ids))
    return {row.id: _summary(row) for row in result}


async def fetch_summaries_and_leads(
    session: AsyncSession, ids: Sequence[int], *, chars: int
) -> tuple[dict[int, DocumentSummary], dict[int, str]]:
    """``fetch_summaries`` and, in the same query, the first ``chars`` characters of each document's text
    (snippets are cut from them)."""
    if not ids:
        return {}, {}
    stmt = summary_statement(ids).add_columns(func.left(Document.text, chars).label("lead"))
    rows = (await session.execute(stmt)).all()
    return {row.id: _summary(row) for row in rows}, {row.id: str(row.lead or "") for row in rows}


async def fetch_document(session: AsyncSession, document_id: int) -> DocumentDetail | None:
    """One whole document, or ``None`` if there is no document with that id."""
    stmt = summary_statement([document_id]).add_columns(
        Document.text, Document.fetched_at, Document.metadata_.label("metadata")
    )
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        return None
    base = _summary(row)
    return DocumentDetail(
        **{f: getattr(base, f) for f in DocumentSummary.__dataclass_fields__},
        text=row.text,
        fetched_at=row.fetched_at,
        metadata=dict(row.metadata or {}),
    )
