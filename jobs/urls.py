"""URL helpers shared by the ingest and collect jobs. Pure."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from courlan import extract_domain, normalize_url


def canonical_url(url: str) -> str:
    """Lower-case scheme and host, no default port, no fragment, no tracking parameters, sorted query."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    normalized = normalize_url(url.strip())
    parts = urlsplit(normalized)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


def host_key(url: str) -> str:
    """``scheme://host:port`` of a URL: the unit of politeness (one throttle per key)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


def same_site(a: str, b: str) -> bool:
    """True when both URLs belong to the same registered domain (``www.x.com`` and ``x.com``)."""
    host_a, host_b = urlsplit(a).hostname, urlsplit(b).hostname
    if not host_a or not host_b:
        return False
    if host_a == host_b:
        return True
    dom_a, dom_b = extract_domain(a, fast=True), extract_domain(b, fast=True)
    return bool(dom_a) and dom_a == dom_b
