"""What the fetcher's parts hand each other: the policy, a request, a result, and the two steps between.

``FetchPolicy``, ``FetchRequest`` and ``FetchResult`` are public (``jobs.collect.fetch`` re-exports them).
``Exchange`` (one URL after its retries, or a refusal before any request) and ``Outcome`` (the end of a
redirect chain) travel from the retry loop (``jobs.collect.retry``) through the redirect walk
(``jobs.collect.redirects``) to the result builder (``jobs.collect.results``). No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from multidict import CIMultiDict, CIMultiDictProxy

from jobs.collect.errors import FetchErrorCode, InvalidFetchPolicy

FetchKind = Literal["page", "feed", "sitemap"]

#: Every value ``FetchResult.error`` can take.
ERROR_CODES: tuple[FetchErrorCode, ...] = tuple(FetchErrorCode)
#: How a refused address may be let through; ends the guard's refusals.
ALLOW_HINT = "add the host name or its network to allow_networks only if it is meant to be collected"
#: Headers of an exchange without a response.
NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())

#: Accept header per request kind.
ACCEPT_HEADERS: dict[str, str] = {
    "page": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1",
    "feed": (
        "application/rss+xml,application/atom+xml,application/feed+json,application/xml;q=0.9,"
        "text/xml;q=0.9,application/json;q=0.8,*/*;q=0.1"
    ),
    "sitemap": "application/xml,text/xml;q=0.9,application/gzip;q=0.8,text/plain;q=0.5,*/*;q=0.1",
    "robots": "text/plain,*/*;q=0.5",
}


@dataclass(frozen=True)
class FetchPolicy:
    user_agent: str = "PulseBot/0.1 (+https://github.com/pulse-platform/pulse; bot@pulse.invalid)"
    per_host_concurrency: int = 1  # like Scrapy's polite template
    per_host_delay_s: float = 1.0  # minimum time between starts of two requests to the same host
    global_concurrency: int = 32
    connect_timeout_s: float = 10.0
    total_timeout_s: float = 30.0  # per attempt, whole response
    max_bytes: int = 10 * 1024 * 1024  # body cap (decoded); bigger -> "too_large"
    max_redirects: int = 5
    max_retries: int = 2  # on timeouts, connection errors, 429, 500, 502, 503, 504
    backoff_base_s: float = 0.5  # exponential backoff with full jitter ...
    backoff_max_s: float = 30.0  # ... capped here
    max_retry_after_s: float = 60.0  # a longer Retry-After is not waited for: "rate_limited"
    respect_robots: bool = True
    allow_networks: tuple[str, ...] = ()  # CIDRs or exact host names allowed although not public

    def __post_init__(self) -> None:
        for name in ("per_host_concurrency", "global_concurrency", "max_bytes"):
            if getattr(self, name) < 1:
                raise InvalidFetchPolicy(name, getattr(self, name), "must be at least 1")
        for name in ("max_redirects", "max_retries"):
            if getattr(self, name) < 0:
                raise InvalidFetchPolicy(name, getattr(self, name), "must not be negative")
        for name in ("per_host_delay_s", "backoff_base_s", "backoff_max_s", "max_retry_after_s"):
            if getattr(self, name) < 0:
                raise InvalidFetchPolicy(name, getattr(self, name), "must not be negative")
        for name in ("connect_timeout_s", "total_timeout_s"):
            if getattr(self, name) <= 0:
                raise InvalidFetchPolicy(name, getattr(self, name), "must be positive")
        if not self.user_agent.strip():
            raise InvalidFetchPolicy("user_agent", self.user_agent, "must name the crawler")


@dataclass(frozen=True)
class FetchRequest:
    url: str
    kind: FetchKind = "page"  # decides which content types are acceptable
    etag: str | None = None  # conditional GET: If-None-Match
    last_modified: str | None = None  # conditional GET: If-Modified-Since


@dataclass(frozen=True)
class FetchResult:
    url: str  # as requested
    final_url: str  # after redirects
    status: int | None  # last HTTP status, None when no response
    body: bytes  # b"" on error and on 304
    text: str | None  # decoded body; None when not decodable (or no body)
    content_type: str | None  # media type without parameters, lower case
    charset: str | None
    etag: str | None
    last_modified: str | None
    redirects: tuple[str, ...]  # every Location followed, in order
    attempts: int  # HTTP attempts on the last hop (1 + retries); 0 when refused before any request
    elapsed_s: float
    fetched_at: datetime  # UTC, aware: when the fetch started
    error: FetchErrorCode | None  # None on success or 304
    error_detail: str | None
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300

    @property
    def not_modified(self) -> bool:
        return self.status == 304


@dataclass(frozen=True)
class Exchange:
    """What came of one URL: its last HTTP attempt after retries, or a refusal before any request."""

    status: int | None = None
    headers: CIMultiDictProxy[str] = field(default_factory=lambda: NO_HEADERS)
    body: bytes = b""  # read for 2xx answers only
    error: FetchErrorCode | None = None
    detail: str | None = None
    retry_after_s: float | None = None  # of the last 429/503 answer that carried one
    attempts: int = 1  # 0: refused before any request

    def failed(self, error: FetchErrorCode, detail: str) -> Exchange:
        return replace(self, error=error, detail=detail)


@dataclass(frozen=True)
class Outcome:
    """The end of a redirect chain: the last URL asked, what came of it, and every Location followed."""

    final_url: str
    exchange: Exchange
    redirects: tuple[str, ...] = ()
