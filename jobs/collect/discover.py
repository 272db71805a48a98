"""Turning feeds, sitemaps and site home pages into URLs to fetch. Pure: bytes in, URLs out.

Feeds go through feedparser (RSS 0.9x-2.0, RDF, Atom; lenient with broken XML) except JSON Feed, which
is read here. Sitemaps are parsed with lxml with entity resolution and network access off.
"""

from __future__ import annotations

import gzip
import html
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser
from lxml import etree
from trafilatura.feeds import FeedParameters, determine_feed

from jobs.ingest.records import parse_published_at

#: Namespaces of sitemap elements we read.
_SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
_NEWS_NS = "http://www.google.com/schemas/sitemap-news/0.9"
_MAX_SUMMARY = 2000
_TAG = re.compile(r"<[^>]*>")
_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class Discovered:
    """A URL found in a feed, sitemap or page, with what the listing said about it."""

    url: str
    kind: str  # "page", "feed" or "sitemap"
    hint: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Listing:
    """What a feed or sitemap yielded; ``problem`` is set when the input was damaged but partly usable."""

    items: list[Discovered]
    problem: str | None = None


class ListingError(ValueError):
    """The input is not a usable feed or sitemap; ``code`` is the quarantine reason."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        super().__init__(detail)


def _http_url(base: str, href: str | None) -> str | None:
    if not href:
        return None
    url = urljoin(base, href.strip())
    return url if urlsplit(url).scheme in ("http", "https") else None


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, time.struct_time):
        return datetime(*value[:6], tzinfo=UTC).isoformat()
    try:
        parsed = parse_published_at(str(value))
    except ValueError:
        return None
    return parsed.isoformat() if parsed else None


def _clip(value: str | None) -> str | None:
    """Plain text of an HTML summary, clipped."""
    if not value:
        return None
    plain = _WS.sub(" ", html.unescape(_TAG.sub(" ", value))).strip()
    return plain[:_MAX_SUMMARY] or None


def _hint(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v}


def _item(url: str, title: Any, published: Any, summary: Any) -> Discovered:
    return Discovered(url, "page", _hint(title=title, published_at=_iso(published), summary=_clip(summary)))


def parse_feed(body: bytes, *, base_url: str) -> Listing:
    """Items of an RSS, Atom or JSON feed, in feed order, duplicates removed."""
    stripped = body.lstrip()
    if stripped.startswith(b"{"):
        return _parse_json_feed(stripped, base_url=base_url)
    # Leading blank lines before the XML declaration are common in real feeds and harmless.
    parsed = feedparser.parse(stripped, sanitize_html=False, resolve_relative_uris=False)
    items: list[Discovered] = []
    seen: set[str] = set()
    for entry in parsed.entries:
        url = _http_url(base_url, entry.get("link"))
        if url is None or url in seen:
            continue
        seen.add(url)
        published = entry.get("published_parsed") or entry.get("updated_parsed")
        items.append(_item(url, entry.get("title"), published, entry.get("summary")))
    problem = None
    if parsed.bozo:
        detail = f"not well-formed: {parsed.get('bozo_exception')}"
        if not items:
            raise ListingError("malformed_feed", detail)
        problem = detail
    elif not parsed.get("version") and not items:
        raise ListingError("malformed_feed", "not an RSS, Atom or JSON feed")
    return Listing(items, problem)


def _parse_json_feed(body: bytes, *, base_url: str) -> Listing:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ListingError("malformed_feed", f"JSON feed is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not str(data.get("version", "")).startswith("https://jsonfeed.org/"):
        raise ListingError("malformed_feed", "JSON document is not a JSON Feed (no jsonfeed.org version)")
    items: list[Discovered] = []
    seen: set[str] = set()
    for entry in data.get("items") or []:
        if not isinstance(entry, dict):
            continue
        url = _http_url(base_url, entry.get("url") or entry.get("external_url"))
        if url is None or url in seen:
            continue
        seen.add(url)
        summary = entry.get("summary") or entry.get("content_text")
        items.append(_item(url, entry.get("title"), entry.get("date_published"), summary))
    return Listing(items)


def parse_sitemap(body: bytes, *, base_url: str) -> Listing:
    """Pages of a urlset (with lastmod and Google News fields) or child sitemaps of a sitemap index."""
    if body[:2] == b"\x1f\x8b":
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError) as exc:
            raise ListingError("malformed_sitemap", f"gzip sitemap cannot be decompressed: {exc}") from exc
    stripped = body.lstrip()
    if not stripped.startswith(b"<"):
        return _parse_text_sitemap(stripped, base_url=base_url)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, recover=True, huge_tree=False)
    try:
        root = etree.fromstring(stripped, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise ListingError("malformed_sitemap", f"not well-formed XML: {exc}") from exc
    if root is None:
        raise ListingError("malformed_sitemap", "empty or unreadable XML")
    problem = f"not well-formed XML: {parser.error_log.last_error}" if len(parser.error_log) else None
    problem = _declared_entities(root) or problem
    tag = etree.QName(root).localname
    if tag == "sitemapindex":
        children = [
            Discovered(url, "sitemap")
            for url in _dedupe(_http_url(base_url, loc) for loc in _texts(root, "sitemap", "loc"))
        ]
        return Listing(children, problem)
    if tag != "urlset":
        raise ListingError(
            "malformed_sitemap", f"root element <{tag}> is neither <urlset> nor <sitemapindex>"
        )
    items: list[Discovered] = []
    seen: set[str] = set()
    for node in root.iter(f"{{{_SITEMAP_NS}}}url", "url"):
        url = _http_url(base_url, _child_text(node, "loc"))
        if url is None or url in seen:
            continue
        seen.add(url)
        news_title = _child_text(node, "title", _NEWS_NS)
        news_date = _child_text(node, "publication_date", _NEWS_NS)
        lastmod = _child_text(node, "lastmod")
        items.append(
            Discovered(url, "page", _hint(title=news_title, published_at=_iso(news_date), lastmod=lastmod))
        )
    return Listing(items, problem)


def _declared_entities(root: Any) -> str | None:
    """What to flag when the document declares entities in a DTD (an XXE or "billion laughs" attempt, or
    an odd generator): they are never expanded, so the parts that use them come out empty."""
    dtd = root.getroottree().docinfo.internalDTD
    names = [entity.name for entity in dtd.iterentities()] if dtd is not None else []
    if not names:
        return None
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"declares entities in a DTD ({shown}); they are not expanded, so what uses them is left empty"


def _parse_text_sitemap(body: bytes, *, base_url: str) -> Listing:
    lines = body.decode("utf-8", errors="replace").splitlines()
    urls = list(_dedupe(_http_url(base_url, line) for line in lines if line.strip()))
    if not urls:
        raise ListingError("malformed_sitemap", "neither XML nor a plain-text list of URLs")
    return Listing([Discovered(url, "page") for url in urls])


def _dedupe(urls: Iterator[str | None]) -> Iterator[str]:
    seen: set[str] = set()
    for url in urls:
        if url and url not in seen:
            seen.add(url)
            yield url


def _texts(root: Any, parent: str, child: str) -> Iterator[str | None]:
    for node in root.iter(f"{{{_SITEMAP_NS}}}{parent}", parent):
        yield _child_text(node, child)


def _child_text(node: Any, name: str, namespace: str = _SITEMAP_NS) -> str | None:
    for candidate in node.iter(f"{{{namespace}}}{name}", name):
        if candidate.text and candidate.text.strip():
            return str(candidate.text.strip())
    return None


def discover_feeds(html: str, *, base_url: str) -> list[Discovered]:
    """Feeds linked from a site's home page; ``/sitemap.xml`` when it links none."""
    params = FeedParameters(base_url, urlsplit(base_url).netloc, base_url)
    feeds = [url for url in determine_feed(html, params) if _http_url(base_url, url)]
    if feeds:
        return [Discovered(url, "feed") for url in dict.fromkeys(feeds)]
    return [Discovered(urljoin(base_url, "/sitemap.xml"), "sitemap")]
