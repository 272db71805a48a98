"""Parsing ingest files into ``DocumentRecord`` values. Pure: no Ray, no database.

Accepted fields per record (JSONL object or CSV row): ``id``, ``title``, ``text``, ``url``,
``published_at`` (ISO 8601 date or datetime; naive means UTC), ``language``, ``metadata`` (an object, or
a JSON object string in CSV). Other fields are kept in ``metadata``. A record needs a ``url`` or an
``id``, and a non-empty ``title`` or ``text``; otherwise it is rejected with its reason. A record holding a
lone surrogate anywhere (the JSON escape ``"\\ud800"``: not Unicode text, PostgreSQL cannot store it) is
rejected too, naming the field; NUL characters are dropped when the document is stored
(``storage.documents.normalize_text``).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from jobs.errors import InputFileError
from jobs.urls import canonical_url
from storage.documents import DocumentRecord

KNOWN_FIELDS = frozenset({"id", "title", "text", "url", "published_at", "language", "metadata"})
MAX_TEXT_CHARS = 1_000_000
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Rejected:
    """A record that cannot be stored, with where it was and why."""

    ref: str
    reason: str
    payload: dict[str, Any]


def parse_published_at(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError(f"published_at must be an ISO 8601 string, got {type(value).__name__}")
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(text), datetime.min.time())
        except ValueError as exc:
            raise ValueError(f"published_at {value!r} is not an ISO 8601 date or datetime") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _surrogate_field(value: Any, where: str) -> str | None:
    """The first field (``metadata.tags[2]``) of ``value`` whose string or key holds a lone surrogate."""
    if isinstance(value, str):
        return where if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{where}.{key}" if where else str(key)
            if isinstance(key, str) and _SURROGATE.search(key):
                return here
            found = _surrogate_field(item, here)
            if found is not None:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _surrogate_field(item, f"{where}[{i}]")
            if found is not None:
                return found
    return None


def to_record(raw: dict[str, Any], *, source_name: str) -> DocumentRecord:
    """Validate one raw record; raise ``ValueError`` with a readable reason when it cannot be stored."""
    field = _surrogate_field(raw, "")
    if field is not None:
        raise ValueError(
            f"{field!a} contains a lone surrogate (an escape such as \\ud800 that is not Unicode "
            "text and cannot be stored); fix the producer's encoding or remove it"
        )
    title = raw.get("title") or ""
    body = raw.get("text") or ""
    if not isinstance(title, str) or not isinstance(body, str):
        raise ValueError("title and text must be strings")
    if not title.strip() and not body.strip():
        raise ValueError("empty document: title and text are both empty")
    if len(body) > MAX_TEXT_CHARS:
        raise ValueError(f"text longer than {MAX_TEXT_CHARS} characters")
    ext_id = raw.get("id")
    ext_id = None if ext_id in (None, "") else str(ext_id)
    url = raw.get("url")
    if url not in (None, ""):
        if not isinstance(url, str):
            raise ValueError("url must be a string")
        canonical = canonical_url(url)
    elif ext_id is not None:
        canonical = f"urn:pulse:{source_name}:{ext_id}"
    else:
        raise ValueError("a record needs a url or an id")
    metadata = raw.get("metadata") or {}
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except json.JSONDecodeError as exc:
            raise ValueError(f"metadata is not valid JSON: {exc.msg}") from exc
    if not isinstance(metadata, dict):
        raise ValueError("metadata must be a JSON object")
    extra = {k: v for k, v in raw.items() if k not in KNOWN_FIELDS and v not in (None, "")}
    language = raw.get("language") or None
    if language is not None and (not isinstance(language, str) or len(language) > 16):
        raise ValueError("language must be a short code such as 'en' or 'ar'")
    return DocumentRecord(
        canonical_url=canonical,
        title=title,
        text=body,
        external_id=ext_id,
        published_at=parse_published_at(raw.get("published_at")),
        language=language,
        metadata={**extra, **metadata},
    )


def read_raw(path: Path) -> Iterator[tuple[str, dict[str, Any] | str]]:
    """``(ref, record)`` for each line of a JSONL file or row of a CSV; a string record is a parse error."""
    suffix = path.suffix.lower()
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise InputFileError(str(path), exc.strerror or str(exc)) from exc
    with handle:
        if suffix in (".jsonl", ".ndjson", ".json"):
            for lineno, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                ref = f"{path.name}:{lineno}"
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield ref, f"invalid JSON: {exc.msg} at column {exc.colno}"
                    continue
                yield (ref, obj) if isinstance(obj, dict) else (ref, "a JSONL line must be a JSON object")
        elif suffix == ".csv":
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not ({"title", "text"} & set(reader.fieldnames)):
                raise InputFileError(str(path), "a CSV needs a header with at least title or text")
            for rowno, row in enumerate(reader, 2):
                yield f"{path.name}:{rowno}", {k: v for k, v in row.items() if k is not None}
        else:
            raise InputFileError(str(path), f"unknown format {suffix!r}: use .jsonl or .csv")


def parse_file(path: Path, *, source_name: str) -> Iterator[DocumentRecord | Rejected]:
    """Every record of the file, validated: ``DocumentRecord`` or ``Rejected``."""
    for ref, raw in read_raw(path):
        if isinstance(raw, str):
            yield Rejected(ref, raw, {})
            continue
        try:
            yield to_record(raw, source_name=source_name)
        except ValueError as exc:
            yield Rejected(ref, str(exc), _json_safe(raw))


def _json_safe(raw: dict[str, Any]) -> dict[str, Any]:
    safe: dict[str, Any] = json.loads(json.dumps(raw, default=str))
    return safe
