"""HTML page -> document: trafilatura for main text and metadata, canonical URL, language. Pure.

``extract_page`` never fetches anything. It returns ``None`` when the page has no main text, which the
job records in the quarantine as ``no_content``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from trafilatura import bare_extraction

from jobs.ingest.records import parse_published_at
from jobs.urls import canonical_url, same_site
from storage.languages import detect_language

logger = logging.getLogger(__name__)

#: A page whose main text is shorter than this has no content worth storing (``no_content``).
MIN_TEXT_CHARS = 20
_HTML_LANG = re.compile(rb"<html[^>]*\slang\s*=\s*[\"']?([A-Za-z]{2,3})", re.IGNORECASE)


@dataclass(frozen=True)
class ExtractedPage:
    """What a page says about itself. ``canonical_url`` honours ``<link rel=canonical>`` on the same site."""

    canonical_url: str
    title: str
    text: str
    language: str | None
    published_at: datetime | None
    metadata: dict[str, Any] = field(default_factory=dict)
    language_confidence: float | None = None  # the identifier's probability; None when declared


def _declared_language(html: bytes | str) -> str | None:
    head = html[:4096] if isinstance(html, bytes) else html[:4096].encode("utf-8", "ignore")
    match = _HTML_LANG.search(head)
    return match.group(1).decode("ascii").lower() if match else None


def _canonical(page_url: str, declared: str | None, *, trust: bool = False) -> str:
    """The declared canonical URL when it is http(s) and on the same site; else the fetched URL's."""
    fetched = canonical_url(page_url)
    if not declared or urlsplit(declared).scheme not in ("http", "https"):
        return fetched
    try:
        candidate = canonical_url(declared)
    except ValueError:
        return fetched
    # A page may not claim another site's URL: that would let one site overwrite another's document.
    return candidate if trust or same_site(candidate, fetched) else fetched


def extract_page(
    html: bytes | str,
    *,
    url: str,
    language_hint: str | None = None,
    hint: dict[str, Any] | None = None,
    trust_canonical: bool = False,
) -> ExtractedPage | None:
    """Main text and metadata of an HTML page, or ``None`` when it has no main text.

    ``hint`` carries what a feed or sitemap said about the page (title, published_at, summary); it fills
    what the page itself does not say.
    """
    hint = hint or {}
    # ``trust_canonical``: local files an operator imported may name any site as their canonical URL.
    try:
        result = bare_extraction(html, url=url, with_metadata=True, include_comments=False)
    except (ValueError, TypeError, AttributeError) as exc:  # trafilatura on pathological markup
        logger.warning("extraction failed for %s: %s", url, exc)
        return None
    if result is None:
        return None
    data = result.as_dict() if hasattr(result, "as_dict") else dict(result)
    text = (data.get("text") or "").strip()
    if len(text) < MIN_TEXT_CHARS:
        return None
    title = (data.get("title") or hint.get("title") or "").strip()
    published = _published(data.get("date")) or _published(hint.get("published_at"))
    declared = _declared_language(html)
    guess = detect_language(f"{title}\n{text}", declared=declared)
    language, confidence = (language_hint, None) if language_hint else (guess.code, guess.confidence)
    metadata = {
        key: value
        for key, value in {
            "author": data.get("author"),
            "sitename": data.get("sitename"),
            "description": data.get("description") or hint.get("summary"),
            "image": data.get("image"),
            "tags": data.get("tags"),
            "categories": data.get("categories"),
            "fetched_url": url,
        }.items()
        if value
    }
    return ExtractedPage(
        canonical_url=_canonical(url, data.get("url"), trust=trust_canonical),
        title=title or text[:120],
        text=text,
        language=language,
        published_at=published,
        metadata=metadata,
        language_confidence=confidence,
    )


def _published(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return parse_published_at(str(value))
    except ValueError:
        return None
