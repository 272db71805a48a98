"""Source specifications: what a user registers with ``pulse sources add``. Pure validation.

Kinds:

``feed``     an RSS, Atom or JSON feed; its items' links are fetched as pages
``sitemap``  a sitemap, sitemap index or Google News sitemap (XML, gzip or plain text)
``page``     one HTML page, re-fetched each interval (conditional GET)
``site``     a site root: feeds are discovered in its HTML (``<link rel=alternate>`` and links), else
             ``/sitemap.xml`` is used
``files``    a local HTML or JSONL file, or a folder of them (offline imports); a path, not a URL
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from jobs.collect.errors import SourceSpecError
from jobs.urls import canonical_url

SourceKind = Literal["feed", "sitemap", "page", "site", "files"]
SOURCE_KINDS: tuple[str, ...] = get_args(SourceKind)
#: Kinds fetched over HTTP(S).
WEB_KINDS = frozenset({"feed", "sitemap", "page", "site"})
#: File suffixes a ``files`` source imports.
FILE_SUFFIXES = frozenset({".html", ".htm", ".jsonl"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")


@dataclass(frozen=True)
class SourceSpec:
    """A validated source. ``uri`` is a canonical URL for web kinds and an absolute path for files."""

    name: str
    kind: SourceKind
    uri: str
    language: str | None = None
    category: str | None = None
    interval_s: int = 3600
    max_items: int | None = None
    url_patterns: tuple[str, ...] = field(default_factory=tuple)

    def allows(self, url: str) -> bool:
        """True when ``url`` matches one of the allowed patterns (or no pattern is set)."""
        return url_allowed(url, self.url_patterns)


def url_allowed(url: str, patterns: tuple[str, ...] | list[str]) -> bool:
    return not patterns or any(re.search(p, url) for p in patterns)


def make_source_spec(
    *,
    name: str,
    kind: str,
    uri: str,
    language: str | None = None,
    category: str | None = None,
    interval_s: int = 3600,
    max_items: int | None = None,
    url_patterns: tuple[str, ...] | list[str] = (),
) -> SourceSpec:
    """Validate user input; raises ``SourceSpecError`` with the field and what to do."""
    if not _NAME.match(name):
        raise SourceSpecError(
            name, "name must be 1-200 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if kind not in SOURCE_KINDS:
        raise SourceSpecError(name, f"kind {kind!r} is not one of {', '.join(SOURCE_KINDS)}")
    if kind in WEB_KINDS:
        try:
            uri = canonical_url(uri)
        except ValueError as exc:
            raise SourceSpecError(name, f"{exc}; a {kind} source needs an http(s) URL") from exc
    else:
        path = Path(uri).expanduser()
        if not path.exists():
            raise SourceSpecError(name, f"path {uri} does not exist")
        if path.is_file() and path.suffix.lower() not in FILE_SUFFIXES:
            raise SourceSpecError(name, f"{uri} is not one of {', '.join(sorted(FILE_SUFFIXES))}")
        uri = str(path.resolve())
    if language is not None and not re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})?", language):
        raise SourceSpecError(name, f"language {language!r} is not a language tag such as 'en' or 'ar'")
    if interval_s < 60:
        raise SourceSpecError(name, f"interval {interval_s} s is below the 60 s minimum")
    if max_items is not None and max_items < 1:
        raise SourceSpecError(name, "max_items must be at least 1")
    for pattern in url_patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise SourceSpecError(
                name, f"URL pattern {pattern!r} is not a regular expression: {exc}"
            ) from exc
    return SourceSpec(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        uri=uri,
        language=language,
        category=category,
        interval_s=interval_s,
        max_items=max_items,
        url_patterns=tuple(url_patterns),
    )
