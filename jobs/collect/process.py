"""Stage 2 of a collect round: a fetched record -> documents, discovered URLs or a failure. Pure CPU work
(extraction, language identification, feed and sitemap parsing, fingerprints); no I/O but local files.

Records travel between stages as flat dicts; nested values are JSON strings so blocks keep one schema.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from jobs.collect.dedup import fingerprint
from jobs.collect.discover import ListingError, discover_feeds, parse_feed, parse_sitemap
from jobs.collect.errors import FetchErrorCode
from jobs.collect.extract import ExtractedPage, extract_page
from jobs.ingest.records import Rejected, parse_file
from storage.documents import DocumentRecord
from storage.sources import SourceRow

#: A fetch's "http_error" with a 5xx status, as recorded: worth retrying, unlike a 4xx.
SERVER_ERROR = "server_error"
#: Errors worth retrying in a later run, and after how long when the server did not say.
TRANSIENT_ERRORS = frozenset(
    {
        FetchErrorCode.TIMEOUT,
        FetchErrorCode.CONNECTION_ERROR,
        FetchErrorCode.DNS_ERROR,
        FetchErrorCode.RATE_LIMITED,
        FetchErrorCode.ROBOTS_UNAVAILABLE,
        SERVER_ERROR,
    }
)
DEFAULT_RETRY_S = 1800.0


def _json(value: Any) -> str:
    return json.dumps(value, default=_default, ensure_ascii=False)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def document_dict(
    page: ExtractedPage | DocumentRecord, *, category: str | None, language: str | None = None
) -> dict[str, Any]:
    """A document for the store stage, with its near-duplicate fingerprint and the source's category."""
    metadata = dict(page.metadata)
    if category and "category" not in metadata:
        metadata["category"] = category
    fp = fingerprint(page.text)
    return {
        "canonical_url": page.canonical_url,
        "title": page.title,
        "text": page.text,
        "language": page.language or language,
        "language_confidence": page.language_confidence if page.language else None,
        "published_at": page.published_at,
        "metadata": metadata,
        "external_id": getattr(page, "external_id", None),
        "signature": base64.b64encode(fp.signature).decode() if fp else None,
        "buckets": list(fp.buckets) if fp else [],
    }


def process_record(record: dict[str, Any], *, sources: dict[int, SourceRow]) -> dict[str, Any]:
    """Turn one fetched record into the store stage's input (see the module docstring)."""
    source = sources[int(record["source_id"])]
    out: dict[str, Any] = {
        key: record.get(key)
        for key in (
            "url",
            "source_id",
            "kind",
            "depth",
            "final_url",
            "status",
            "etag",
            "last_modified",
            "fetched_at",
            "retry_after_s",
        )
    }
    out.update(outcome="failed", error=None, error_detail=None, documents="[]", discovered="[]", rejects="[]")
    out["problem"] = None
    error = record.get("error")
    if error:
        if error == FetchErrorCode.HTTP_ERROR and (record.get("status") or 0) >= 500:
            error = SERVER_ERROR
        retry = record.get("retry_after_s")
        out.update(
            error=error,
            error_detail=record.get("error_detail"),
            retry_after_s=(retry or DEFAULT_RETRY_S) if error in TRANSIENT_ERRORS else None,
        )
        return out
    if record.get("status") == 304:
        out["outcome"] = "unchanged"
        return out
    base = record.get("final_url") or record["url"]
    body: bytes = record.get("body") or b""
    text: str | None = record.get("text")
    kind = record["kind"]
    hint = json.loads(record.get("hint") or "{}")
    try:
        if kind == "page" or (kind == "file" and not record["url"].endswith(".jsonl")):
            page = extract_page(
                text if text is not None else body,
                url=base if kind == "page" else _file_page_url(record["url"]),
                language_hint=source.language,
                hint=hint,
                trust_canonical=kind == "file",
            )
            if page is None:
                out.update(
                    error="no_content",
                    error_detail="no main text found in the page (empty or boilerplate only)",
                )
                return out
            out.update(outcome="document", documents=_json([document_dict(page, category=source.category)]))
        elif kind == "file":
            docs, rejects = _jsonl(record["url"], source)
            out.update(outcome="document", documents=_json(docs), rejects=_json(rejects))
        elif kind in ("feed", "sitemap"):
            listing = (parse_feed if kind == "feed" else parse_sitemap)(body, base_url=base)
            out.update(
                outcome="listing",
                discovered=_json([asdict(i) for i in listing.items]),
                problem=listing.problem,
            )
        elif kind == "site":
            found = discover_feeds(text or body.decode("utf-8", "replace"), base_url=base)
            out.update(outcome="listing", discovered=_json([asdict(i) for i in found]))
        else:
            out.update(error="unknown_kind", error_detail=f"frontier kind {kind!r} is not handled")
    except ListingError as exc:
        out.update(error=exc.code, error_detail=str(exc))
    return out


def _file_page_url(file_url: str) -> str:
    """The key of a local HTML file without a ``rel=canonical`` of its own (canonical URLs are http)."""
    return f"http://localhost{urlsplit(file_url).path}"


def _jsonl(file_url: str, source: SourceRow) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    path = Path(url2pathname(urlsplit(file_url).path))
    docs: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    for item in parse_file(path, source_name=source.name):
        if isinstance(item, Rejected):
            rejects.append({"ref": item.ref, "reason": item.reason})
            continue
        docs.append(document_dict(item, category=source.category, language=source.language))
    return docs, rejects
