"""The polite fetcher: one aiohttp session, per-host throttles, robots.txt, SSRF guards and byte caps.

``Fetcher.fetch`` never raises for network, HTTP or policy problems: each failure is a ``FetchResult`` whose
``error`` is one of ``ERROR_CODES`` and whose ``error_detail`` says what failed and what to do.

One fetch, in order, for the URL and then for every redirect hop (followed by hand, at most
``max_redirects``; a URL seen twice is a loop):

1. ``check_url``: http(s) only, no internal IP literals (``cluster.ground.address_guard``);
2. robots.txt of that host (fetched once through this same path, ``jobs.collect.robots``);
3. the host's throttle: ``per_host_concurrency`` slots and ``per_host_delay_s`` between request starts,
   raised by ``Crawl-delay``, doubled on 429/503, decaying back after successes; then a global slot;
4. the request (``allow_redirects=False``; the resolver refuses internal addresses at connect time),
   retried on timeouts, connection errors, 429, 500, 502, 503 and 504 with full-jitter exponential backoff
   or the server's ``Retry-After``;
5. the body, read in chunks after decompression and cut at ``max_bytes``; then the content type is checked
   against the request's kind and the text decoded.

The pure rules live beside it and are tested without a network: ``jobs.collect.content`` (media types,
charsets, capped gunzip) and ``jobs.collect.throttle`` (``HostThrottle``, backoff, ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from types import SimpleNamespace, TracebackType
from typing import Literal

import aiohttp
from aiohttp.abc import AbstractResolver
from multidict import CIMultiDictProxy
from yarl import URL

from cluster.ground.address_guard import AllowList, SafeResolver, check_url
from cluster.ground.errors import BlockedAddress, BlockedURL
from jobs.collect.content import (
    ACCEPTED_TYPES,
    GZIP_TYPES,
    BodyTooLarge,
    accepts,
    decode_body,
    gunzip_capped,
    parse_content_type,
)
from jobs.collect.errors import InvalidFetchPolicy
from jobs.collect.robots import ROBOTS_MAX_BYTES, RobotsCache, RobotsFile, RobotsRules, product_token
from jobs.collect.throttle import HostThrottle, backoff_delay, parse_retry_after
from jobs.urls import host_key

logger = logging.getLogger(__name__)

FetchKind = Literal["page", "feed", "sitemap"]
#: How a refused address may be let through; ends the guard's refusals.
ALLOW_HINT = "add the host name or its network to allow_networks only if it is meant to be collected"

#: Every value ``FetchResult.error`` can take.
ERROR_CODES = (
    "blocked_scheme",
    "blocked_address",
    "robots_disallowed",
    "robots_unavailable",
    "too_large",
    "too_many_redirects",
    "redirect_loop",
    "timeout",
    "connection_error",
    "dns_error",
    "http_error",
    "rate_limited",
    "bad_content_type",
    "decode_error",
    "invalid_url",
)
#: Statuses worth another attempt.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Statuses that slow the host down (its delay doubles) and may carry Retry-After.
SLOW_DOWN_STATUSES = frozenset({429, 503})
#: Error codes of one attempt worth another attempt.
TRANSIENT_ERRORS = frozenset({"timeout", "connection_error"})
#: Statuses followed as redirects (with a Location header).
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Bytes asked of the decoded body stream at a time.
CHUNK_BYTES = 64 * 1024
#: Requests ``fetch_many`` takes from its input ahead of completion (bounds memory on huge inputs).
PENDING_WINDOW = 4096

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


# --------------------------------------------------------------------------- public data


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
    error: str | None  # None on success or 304; else one of ERROR_CODES
    error_detail: str | None
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300

    @property
    def not_modified(self) -> bool:
        return self.status == 304


# --------------------------------------------------------------------------- helpers


def _safe_header(value: str | None) -> str | None:
    if value is None or "\r" in value or "\n" in value or not value.strip():
        return None
    return value.strip()


def _reason(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


# --------------------------------------------------------------------------- the fetcher


@dataclass
class _Exchange:
    """One HTTP request and what came of it."""

    status: int | None = None
    headers: CIMultiDictProxy[str] | None = None
    body: bytes = b""
    error: str | None = None
    detail: str | None = None
    retry_after_s: float | None = None
    attempts: int = 1
    permanent: bool = False  # an error not worth retrying (TLS certificate)


@dataclass
class _Outcome:
    """The end of a redirect chain."""

    final_url: str
    exchange: _Exchange
    redirects: list[str] = field(default_factory=list)


async def _mark_sent(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestHeadersSentParams
) -> None:
    throttle = context.trace_request_ctx
    if isinstance(throttle, HostThrottle):
        throttle.mark_sent()


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Fetcher:
    """Async context manager owning one aiohttp.ClientSession and the per-host throttles.

    ``sleep`` and ``clock`` pace the throttles and backoff, ``rng`` draws the jitter, ``now`` stamps
    ``fetched_at`` and dates Retry-After; ``resolver`` is the inner DNS resolver (default: aiohttp's
    ``ThreadedResolver``), always wrapped by ``SafeResolver``.
    """

    def __init__(
        self,
        policy: FetchPolicy,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        now: Callable[[], datetime] = _utc_now,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.policy = policy
        self._allow = AllowList.from_strings(policy.allow_networks)
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._now = now
        self._inner_resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self._global: asyncio.Semaphore | None = None
        self._throttles: dict[str, HostThrottle] = {}
        self._robots = RobotsCache(self._load_robots)
        self._workers: set[asyncio.Task[None]] = set()  # of fetch_many streams not closed yet

    async def __aenter__(self) -> Fetcher:
        inner = self._inner_resolver or aiohttp.ThreadedResolver()
        connector = aiohttp.TCPConnector(
            resolver=SafeResolver(self._allow, inner, hint=ALLOW_HINT),
            limit=0,  # the throttles and the global semaphore bound concurrency
            limit_per_host=0,
            ttl_dns_cache=300,
        )
        tracing = aiohttp.TraceConfig()
        tracing.on_request_headers_sent.append(_mark_sent)
        self._session = aiohttp.ClientSession(
            connector=connector,
            trace_configs=[tracing],
            timeout=aiohttp.ClientTimeout(total=None, connect=self.policy.connect_timeout_s),
            headers={"User-Agent": self.policy.user_agent, "Accept-Encoding": "gzip, deflate"},
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,  # a proxy from the environment would bypass the resolver's checks
            auto_decompress=True,
        )
        self._global = asyncio.Semaphore(self.policy.global_concurrency)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in list(self._workers):  # a fetch_many stream abandoned without aclose()
            task.cancel()
        if self._workers:
            await asyncio.gather(*self._workers, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ public

    async def fetch(self, request: FetchRequest) -> FetchResult:
        """Fetch one URL; every failure comes back as a result with ``error`` set."""
        started = self._clock()
        fetched_at = self._now()
        outcome = await self._follow(
            request.url,
            accept=ACCEPT_HEADERS.get(request.kind, ACCEPT_HEADERS["page"]),
            conditional=(_safe_header(request.etag), _safe_header(request.last_modified)),
            max_bytes=self.policy.max_bytes,
            truncate=False,
            check_robots=self.policy.respect_robots,
        )
        result = self._result(request, outcome, started=started, fetched_at=fetched_at)
        logger.debug(
            "fetched",
            extra={
                "url": request.url,
                "status": result.status,
                "error": result.error,
                "attempts": result.attempts,
                "elapsed_s": round(result.elapsed_s, 3),
            },
        )
        return result

    async def fetch_many(self, requests: Iterable[FetchRequest]) -> AsyncIterator[FetchResult]:
        """Fetch every request, yielding results as they complete.

        The input is read lazily, at most ``PENDING_WINDOW`` ahead of what has been yielded. Requests wait in
        one queue per host; each host has at most ``per_host_concurrency`` worker tasks, which exist only
        while the host has queued requests, so a slow host never holds up the others. Close the iterator
        (``contextlib.aclosing``) when stopping early: that cancels the work in flight.
        """
        source = iter(requests)
        exhausted = False
        pending = 0  # taken from the input, not yet yielded
        queues: dict[str, deque[FetchRequest]] = {}
        workers: dict[str, int] = {}
        tasks: set[asyncio.Task[None]] = set()
        done: asyncio.Queue[FetchResult | BaseException] = asyncio.Queue(
            maxsize=max(1, self.policy.global_concurrency)
        )

        async def work(key: str) -> None:
            queue = queues[key]
            try:
                while queue:
                    request = queue.popleft()
                    try:
                        result: FetchResult | BaseException = await self.fetch(request)
                    except Exception as exc:  # a bug: handed to the consumer, which re-raises it
                        result = exc
                    await done.put(result)
            finally:
                workers[key] -= 1
                if workers[key] == 0:
                    del workers[key]
                    if not queue:
                        del queues[key]

        def take() -> None:
            nonlocal exhausted, pending
            while not exhausted and pending < PENDING_WINDOW:
                try:
                    request = next(source)
                except StopIteration:
                    exhausted = True
                    return
                pending += 1
                key = _request_key(request.url)
                queues.setdefault(key, deque()).append(request)
                if workers.get(key, 0) < self.policy.per_host_concurrency:
                    workers[key] = workers.get(key, 0) + 1
                    task = asyncio.create_task(work(key), name=f"fetch {key}")
                    tasks.add(task)
                    self._workers.add(task)
                    task.add_done_callback(tasks.discard)
                    task.add_done_callback(self._workers.discard)

        try:
            while True:
                take()
                if exhausted and pending == 0:
                    return
                item = await done.get()
                pending -= 1
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for task in list(tasks):
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    def host_stats(self) -> dict[str, dict[str, float]]:
        """Per host key: requests started, current delay, base delay and backoffs so far."""
        return {key: throttle.stats() for key, throttle in self._throttles.items()}

    def robots_rules(self) -> dict[str, RobotsRules]:
        """The robots.txt rules loaded so far, by robots.txt URL."""
        return self._robots.cached()

    # ------------------------------------------------------------------ redirects, robots

    async def _follow(
        self,
        url: str,
        *,
        accept: str,
        conditional: tuple[str | None, str | None],
        max_bytes: int,
        truncate: bool,
        check_robots: bool,
    ) -> _Outcome:
        redirects: list[str] = []
        seen: set[str] = set()
        current = url
        last_status: int | None = None  # of the redirect that led here: a refused hop keeps it
        for hop in range(self.policy.max_redirects + 1):
            try:
                check_url(current, self._allow, hint=ALLOW_HINT)
                target = URL(current.strip())
            except BlockedURL as exc:
                refused = _Exchange(status=last_status, error=exc.code, detail=str(exc), attempts=0)
                return _Outcome(current, refused, redirects)
            seen.add(str(target.with_fragment(None)))
            if check_robots:
                refusal = await self._robots_refusal(target)
                if refusal is not None:
                    refusal.status = last_status
                    return _Outcome(current, refusal, redirects)
            exchange = await self._request(
                target, accept=accept, conditional=conditional, max_bytes=max_bytes, truncate=truncate
            )
            if exchange.error is not None or exchange.status not in REDIRECT_STATUSES:
                return _Outcome(current, exchange, redirects)
            location = exchange.headers.get("Location") if exchange.headers is not None else None
            if not location:
                exchange.error = "http_error"
                exchange.detail = f"{current} answered HTTP {exchange.status} without a Location header"
                return _Outcome(current, exchange, redirects)
            try:
                following = str(target.join(URL(location.strip())).with_fragment(None))
            except (ValueError, TypeError) as exc:
                exchange.error = "invalid_url"
                exchange.detail = f"{current} redirects to an invalid URL {location!r} ({exc})"
                return _Outcome(current, exchange, redirects)
            if following in seen:
                exchange.error = "redirect_loop"
                exchange.detail = (
                    f"redirect loop: {current} sends back to {following}, already visited in "
                    f"{' -> '.join([url, *redirects])}; the site is misconfigured"
                )
                return _Outcome(current, exchange, redirects)
            if hop == self.policy.max_redirects:
                exchange.error = "too_many_redirects"
                exchange.detail = (
                    f"more than {self.policy.max_redirects} redirects from {url} (next: {following}); "
                    "fetch the final URL directly or raise max_redirects"
                )
                return _Outcome(current, exchange, redirects)
            redirects.append(following)
            current = following
            last_status = exchange.status
        raise AssertionError("unreachable: the loop returns on its last hop")  # pragma: no cover

    async def _robots_refusal(self, target: URL) -> _Exchange | None:
        rules = await self._robots.rules_for(target)
        delay = rules.crawl_delay(self.policy.user_agent)
        if delay is not None:
            self._throttle(target).raise_base_delay(delay)
        if rules.host_error is not None:
            return _Exchange(
                error=rules.host_error, detail=f"cannot fetch {target}: {rules.reason}", attempts=0
            )
        if rules.disallow_all:
            return _Exchange(
                error="robots_unavailable",
                detail=(
                    f"robots.txt at {rules.url} is {rules.reason}; RFC 9309 says to treat the site as fully "
                    "disallowed: retry in a later run"
                ),
                attempts=0,
            )
        if not rules.can_fetch(str(target), self.policy.user_agent):
            return _Exchange(
                error="robots_disallowed",
                detail=(
                    f"robots.txt at {rules.url} disallows {target} for "
                    f"{product_token(self.policy.user_agent)}; the URL is skipped (drop it from the source)"
                ),
                attempts=0,
            )
        return None

    async def _load_robots(self, url: str) -> RobotsFile:
        outcome = await self._follow(
            url,
            accept=ACCEPT_HEADERS["robots"],
            conditional=(None, None),
            max_bytes=min(self.policy.max_bytes, ROBOTS_MAX_BYTES),
            truncate=True,
            check_robots=False,
        )
        exchange = outcome.exchange
        return RobotsFile(
            url=url,
            status=exchange.status,
            body=exchange.body,
            error=exchange.error,
            detail=exchange.detail,
            redirects=tuple(outcome.redirects),
        )

    # ------------------------------------------------------------------ one URL, with retries

    def _throttle(self, url: URL) -> HostThrottle:
        key = host_key(str(url))
        throttle = self._throttles.get(key)
        if throttle is None:
            assert self._global is not None, "use the Fetcher as an async context manager"
            throttle = HostThrottle(
                concurrency=self.policy.per_host_concurrency,
                delay_s=self.policy.per_host_delay_s,
                backoff_floor_s=self.policy.backoff_base_s,
                global_slots=self._global,
                clock=self._clock,
                sleep=self._sleep,
            )
            self._throttles[key] = throttle
        return throttle

    async def _request(
        self,
        url: URL,
        *,
        accept: str,
        conditional: tuple[str | None, str | None],
        max_bytes: int,
        truncate: bool,
    ) -> _Exchange:
        throttle = self._throttle(url)
        headers = {"Accept": accept}
        etag, last_modified = conditional
        if etag is not None:
            headers["If-None-Match"] = etag
        if last_modified is not None:
            headers["If-Modified-Since"] = last_modified
        attempt = 0
        while True:
            attempt += 1
            async with throttle.slot():
                exchange = await self._exchange(
                    url, throttle=throttle, headers=headers, max_bytes=max_bytes, truncate=truncate
                )
            exchange.attempts = attempt
            status = exchange.status
            wait: float | None = None
            if status in SLOW_DOWN_STATUSES:
                throttle.slow_down()
                headers_in = exchange.headers
                wait = parse_retry_after(
                    headers_in.get("Retry-After") if headers_in is not None else None, now=self._now()
                )
                exchange.retry_after_s = wait
                if wait is not None and wait > self.policy.max_retry_after_s:
                    return _too_long_to_wait(url, exchange, wait, self.policy.max_retry_after_s)
            elif exchange.error is None and status is not None and status < 400:
                throttle.recover()
            transient = (exchange.error in TRANSIENT_ERRORS and not exchange.permanent) or (
                exchange.error is None and status in TRANSIENT_STATUSES
            )
            if not transient or attempt > self.policy.max_retries:
                return self._final(url, exchange)
            if wait is None:
                wait = backoff_delay(
                    attempt - 1,
                    base_s=self.policy.backoff_base_s,
                    max_s=self.policy.backoff_max_s,
                    rng=self._rng,
                )
            logger.info(
                "retrying",
                extra={
                    "url": str(url),
                    "attempt": attempt,
                    "status": status,
                    "error": exchange.error,
                    "wait_s": round(wait, 3),
                },
            )
            throttle.defer(wait)

    def _final(self, url: URL, exchange: _Exchange) -> _Exchange:
        """Name the failure of a last attempt that ended in an error status."""
        status = exchange.status
        if exchange.error is not None or status is None or status < 400:
            if exchange.error is not None and exchange.attempts > 1 and exchange.detail is not None:
                exchange.detail = f"{exchange.detail} (after {exchange.attempts} attempts)"
            return exchange
        tries = f" after {exchange.attempts} attempts" if exchange.attempts > 1 else ""
        if status == 429:
            exchange.error = "rate_limited"
            exchange.detail = f"{url} kept answering HTTP 429 Too Many Requests{tries}; fetch it again later"
        elif status in TRANSIENT_STATUSES:
            exchange.error = "http_error"
            exchange.detail = (
                f"{url} answered HTTP {_reason(status)}{tries}; the site may be down, retry later"
            )
        else:
            exchange.error = "http_error"
            exchange.detail = (
                f"{url} answered HTTP {_reason(status)}; check the URL or drop it from the source"
            )
        return exchange

    async def _exchange(
        self, url: URL, *, throttle: HostThrottle, headers: dict[str, str], max_bytes: int, truncate: bool
    ) -> _Exchange:
        """One GET, redirects not followed; the body is read only for 2xx answers."""
        session = self._session
        assert session is not None, "use the Fetcher as an async context manager"
        try:
            async with asyncio.timeout(self.policy.total_timeout_s):
                async with session.get(
                    url, headers=headers, allow_redirects=False, trace_request_ctx=throttle
                ) as response:
                    exchange = _Exchange(status=response.status, headers=response.headers)
                    if not 200 <= response.status < 300:
                        return exchange
                    declared = response.content_length
                    if declared is not None and declared > max_bytes and not truncate:
                        response.close()
                        exchange.error = "too_large"
                        exchange.detail = (
                            f"{url} declares {declared} bytes (Content-Length), over the {max_bytes}-byte "
                            "cap; raise max_bytes if such bodies are expected"
                        )
                        return exchange
                    body, complete = await _read_capped(response, max_bytes)
                    if not complete:
                        response.close()
                        if not truncate:
                            exchange.error = "too_large"
                            exchange.detail = (
                                f"{url} sent more than the {max_bytes}-byte cap (after decompression); "
                                "raise max_bytes if such bodies are expected"
                            )
                            return exchange
                    exchange.body = body
                    return exchange
        except TimeoutError:
            return _Exchange(
                error="timeout",
                detail=(
                    f"no complete response from {url} within {self.policy.total_timeout_s:g} s "
                    f"(connect limit {self.policy.connect_timeout_s:g} s); the site may be slow or down: "
                    "retry later or raise the timeouts"
                ),
            )
        except aiohttp.InvalidURL as exc:
            return _Exchange(
                error="invalid_url", detail=f"aiohttp refused the URL {url} ({exc}); fix or drop it"
            )
        except aiohttp.ClientConnectorError as exc:
            cause = exc.os_error
            if isinstance(cause, BlockedAddress):
                return _Exchange(error="blocked_address", detail=f"refused {url} at connect time: {cause}")
            if isinstance(exc, aiohttp.ClientConnectorDNSError):
                return _Exchange(
                    error="dns_error",
                    detail=f"the host name of {url} did not resolve ({cause}); check the URL",
                )
            return _Exchange(
                error="connection_error",
                detail=f"could not connect to {url} ({type(exc).__name__}: {exc}); retry later",
                permanent=isinstance(exc, aiohttp.ClientSSLError),
            )
        except (aiohttp.ClientError, OSError) as exc:
            return _Exchange(
                error="connection_error",
                detail=f"the connection to {url} failed ({type(exc).__name__}: {exc}); retry later",
            )

    # ------------------------------------------------------------------ building results

    def _result(
        self, request: FetchRequest, outcome: _Outcome, *, started: float, fetched_at: datetime
    ) -> FetchResult:
        exchange = outcome.exchange
        headers = exchange.headers
        media_type, header_charset = parse_content_type(
            headers.get("Content-Type") if headers is not None else None
        )
        body, text, charset = b"", None, None
        error, detail = self._check_body(request, outcome, media_type)
        if error is None and exchange.status != 304:
            body = exchange.body
            if request.kind == "sitemap" and (media_type in GZIP_TYPES or body[:2] == b"\x1f\x8b"):
                try:
                    body = gunzip_capped(body, self.policy.max_bytes)
                except BodyTooLarge:
                    error, detail = (
                        "too_large",
                        (
                            f"the gzip sitemap {outcome.final_url} decompresses to more than the "
                            f"{self.policy.max_bytes}-byte cap; raise max_bytes or split the sitemap"
                        ),
                    )
                except ValueError as exc:
                    error, detail = (
                        "decode_error",
                        f"the gzip sitemap {outcome.final_url} is unreadable: {exc}",
                    )
            if error is None:
                text, charset = decode_body(body, header_charset)
                if text is None:
                    error, detail = (
                        "decode_error",
                        (
                            f"the body of {outcome.final_url} ({len(body)} bytes, {media_type}) declares no "
                            "charset and is not text in any detectable encoding; it is skipped"
                        ),
                    )
            if error is not None:
                body = b""
        return FetchResult(
            url=request.url,
            final_url=outcome.final_url,
            status=exchange.status,
            body=body,
            text=text,
            content_type=media_type,
            charset=charset,
            etag=headers.get("ETag") if headers is not None else None,
            last_modified=headers.get("Last-Modified") if headers is not None else None,
            redirects=tuple(outcome.redirects),
            attempts=exchange.attempts,
            elapsed_s=self._clock() - started,
            fetched_at=fetched_at,
            error=error,
            error_detail=detail,
            retry_after_s=exchange.retry_after_s,
        )

    @staticmethod
    def _check_body(
        request: FetchRequest, outcome: _Outcome, media_type: str | None
    ) -> tuple[str | None, str | None]:
        """The error of an exchange whose status is final; content type checked for 2xx answers."""
        exchange = outcome.exchange
        status = exchange.status
        if exchange.error is not None:
            return exchange.error, exchange.detail
        if status == 304:
            return None, None
        if status is None or not 200 <= status < 300:
            shown = "no status" if status is None else _reason(status)
            return "http_error", (
                f"{outcome.final_url} answered HTTP {shown}; check the URL or drop it from the source"
            )
        if not accepts(request.kind, media_type, exchange.body):
            expected = ", ".join(sorted(ACCEPTED_TYPES.get(request.kind, frozenset())))
            return "bad_content_type", (
                f"{outcome.final_url} is {media_type or 'of no declared type'}, not a {request.kind} "
                f"(expected {expected}); drop it from the source or register it as the right kind"
            )
        return None, None


def _too_long_to_wait(url: URL, exchange: _Exchange, wait: float, limit: float) -> _Exchange:
    exchange.error = "rate_limited"
    exchange.detail = (
        f"{url} answered HTTP {exchange.status} with Retry-After {wait:.0f} s, above the {limit:.0f} s "
        "max_retry_after_s; fetch it again in a later run"
    )
    logger.info("rate limited", extra={"url": str(url), "retry_after_s": wait})
    return exchange


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> tuple[bytes, bool]:
    """The decoded body up to ``max_bytes``; ``complete`` is False when more was on its way."""
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        if size + len(chunk) > max_bytes:
            parts.append(chunk[: max_bytes - size])
            return b"".join(parts), False
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts), True


def _request_key(url: str) -> str:
    """Grouping key of ``fetch_many``: the host key, or a shared key for URLs that do not parse."""
    try:
        return host_key(str(URL(url.strip())))
    except (ValueError, TypeError):
        return "invalid"
