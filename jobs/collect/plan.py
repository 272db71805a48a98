"""Planning a round: frontier rows grouped by host, hosts spread over fetch partitions. Pure.

A host belongs to exactly one partition per round, and partitions run as separate Ray tasks, so the
per-host politeness a partition's fetcher enforces holds for the whole cluster: no two workers ever
fetch from the same host at the same time.
"""

from __future__ import annotations

import heapq
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from jobs.collect.sources import FILE_SUFFIXES, url_allowed
from jobs.urls import canonical_url, host_key
from storage.frontier import FrontierRow, NewURL
from storage.sources import SourceRow

#: The frontier kind of each source kind's root URL.
ROOT_KIND = {"feed": "feed", "sitemap": "sitemap", "page": "page", "site": "site"}
#: Host key of local files: read from disk, no politeness needed.
LOCAL_HOST = "file://local"


def roots(sources: Sequence[SourceRow]) -> list[NewURL]:
    """The URLs each due source starts from; a ``files`` source lists its files."""
    out: list[NewURL] = []
    for source in sources:
        if source.uri is None:
            continue
        if source.kind == "files":
            out.extend(
                NewURL(path.as_uri(), source.id, "file", LOCAL_HOST, 0, {})
                for path in local_files(source.uri)
            )
        elif source.kind in ROOT_KIND:
            out.append(NewURL(source.uri, source.id, ROOT_KIND[source.kind], host_key(source.uri), 0, {}))
    return out


def local_files(uri: str) -> list[Path]:
    path = Path(uri)
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FILE_SUFFIXES)


def discovered_urls(
    items: Sequence[dict[str, Any]],
    *,
    source: SourceRow,
    depth: int,
    max_depth: int,
) -> tuple[list[NewURL], int]:
    """Frontier entries for what a listing yielded, after the source's URL patterns and item cap;
    returns them and how many were filtered out."""
    accepted: list[NewURL] = []
    filtered = 0
    pages = 0
    limit = source.max_items
    for item in items:
        if depth + 1 > max_depth:
            filtered += 1
            continue
        try:
            url = canonical_url(item["url"]) if item["kind"] == "page" else item["url"]
        except ValueError:
            filtered += 1
            continue
        if item["kind"] == "page" and not url_allowed(url, source.url_patterns):
            filtered += 1
            continue
        if item["kind"] == "page":
            if limit is not None and pages >= limit:
                filtered += 1
                continue
            pages += 1
        accepted.append(
            NewURL(url, source.id, item["kind"], host_key(url), depth + 1, item.get("hint") or {})
        )
    return accepted, filtered


def partition(rows: Sequence[FrontierRow], *, partitions: int) -> list[list[dict[str, Any]]]:
    """Hosts to partitions, balancing URL counts (largest host first onto the lightest partition).

    Local files are spread evenly instead: they have no host to be polite to.
    """
    by_host: dict[str, list[FrontierRow]] = defaultdict(list)
    files: list[FrontierRow] = []
    for row in rows:
        (files if row.host == LOCAL_HOST else by_host[row.host]).append(row)
    n = max(1, min(partitions, len(by_host) + len(files)))
    heap = [(0, i) for i in range(n)]
    out: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    # Ties broken by a stable hash of the host so the same frontier plans the same way every time.
    for host in sorted(by_host, key=lambda h: (-len(by_host[h]), zlib.crc32(h.encode()))):
        load, i = heapq.heappop(heap)
        out[i].extend(asdict(r) for r in by_host[host])
        heapq.heappush(heap, (load + len(by_host[host]), i))
    for row in files:
        load, i = heapq.heappop(heap)
        out[i].append(asdict(row))
        heapq.heappush(heap, (load + 1, i))
    return [p for p in out if p]
