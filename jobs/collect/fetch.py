"""The polite fetcher: per-host throttles, robots.txt, SSRF guards, retries and byte caps over a transport.

``Fetcher.fetch`` never raises for network, HTTP or policy problems: each failure is a ``FetchResult`` whose
``error`` is a ``FetchErrorCode`` and whose ``error_detail`` says what failed and what to do.

``Fetcher`` wires the parts of one fetch, each in its own module, in the order they act:

1. the redirect walk (``jobs.collect.redirects``): for the URL and every redirect hop (at most
   ``max_redirects``; a URL seen twice is a loop), the address guard and then robots.txt of that host
   (fetched once through this same path, ``jobs.collect.robots``);
2. the host's throttle (``jobs.collect.throttle``): ``per_host_concurrency`` slots and ``per_host_delay_s``
   between request starts, raised by ``Crawl-delay``, doubled on 429/503, decaying back after successes;
   then a global slot;
3. the request, through a ``Transport`` (``jobs.collect.transport``; by default
   ``jobs.collect.aiohttp_transport``: redirects not followed, internal addresses refused at connect time,
   the body read after decompression and cut at ``max_bytes``);
4. retries (``jobs.collect.retry``, tenacity) on timeouts, connection errors, 429, 500, 502, 503 and 504,
   after full-jitter exponential backoff or the server's ``Retry-After``;
5. the result (``jobs.collect.results``, pure): the failure named, the content type checked against the
   request's kind, the text decoded (``jobs.collect.content``).

The public data (``FetchPolicy``, ``FetchRequest``, ``FetchResult``) lives in ``jobs.collect.fetch_types``
and is re-exported here.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING

from yarl import URL

from cluster.ground.address_guard import AllowList
from jobs.collect.aiohttp_transport import AiohttpTransport
from jobs.collect.errors import FetchErrorCode
from jobs.collect.fetch_types import (
    ACCEPT_HEADERS,
    ALLOW_HINT,
    ERROR_CODES,
    Exchange,
    FetchKind,
    FetchPolicy,
    FetchRequest,
    FetchResult,
    Outcome,
)
from jobs.collect.redirects import follow
from jobs.collect.results import build_result, robots_refusal, settle
from jobs.collect.retry import SLOW_DOWN_STATUSES, Attempt, RetryPolicy
from jobs.collect.robots import ROBOTS_MAX_BYTES, RobotsCache, RobotsFile, RobotsRules
from jobs.collect.throttle import HostThrottle, parse_retry_after
from jobs.collect.transport import RawResponse, Transport, TransportRequest
from jobs.urls import host_key

if TYPE_CHECKING:
    from aiohttp.abc import AbstractResolver

__all__ = [
    "ACCEPT_HEADERS",
    "ALLOW_HINT",
    "ERROR_CODES",
    "PENDING_WINDOW",
    "FetchErrorCode",
    "FetchKind",
    "FetchPolicy",
    "FetchRequest",
    "FetchResult",
    "Fetcher",
]

logger = logging.getLogger(__name__)

#: Requests ``fetch_many`` takes from its input ahead of completion (bounds memory on huge inputs).
PENDING_WINDOW = 4096


def _safe_header(value: str | None) -> str | None:
    if value is None or "\r" in value or "\n" in value or not value.strip():
        return None
    return value.strip()


def _request_headers(request: FetchRequest) -> dict[str, str]:
    """Accept for the request's kind, and the conditional GET headers when they are safe to send."""
    headers = {"Accept": ACCEPT_HEADERS.get(request.kind, ACCEPT_HEADERS["page"])}
    etag, last_modified = _safe_header(request.etag), _safe_header(request.last_modified)
    if etag is not None:
        headers["If-None-Match"] = etag
    if last_modified is not None:
        headers["If-Modified-Since"] = last_modified
    return headers


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Fetcher:
    """Async context manager owning the per-host throttles, the robots.txt cache and (unless one is given)
    the transport.

    ``transport`` replaces the default ``AiohttpTransport`` (a test's fake; its life is the caller's);
    ``resolver`` is the default transport's inner DNS resolver (default: aiohttp's ``ThreadedResolver``),
    always wrapped by ``SafeResolver``. ``sleep`` and ``clock`` pace the throttles and backoff, ``rng``
    draws the jitter, ``now`` stamps ``fetched_at`` and dates Retry-After.
    """

    def __init__(
        self,
        policy: FetchPolicy,
        *,
        transport: Transport | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        now: Callable[[], datetime] = _utc_now,
        resolver: AbstractResolver | None = None,
    ) -> None:
        if transport is not None and resolver is not None:
            raise ValueError("a resolver configures the default transport; give it to your transport instead")
        self.policy = policy
        self._allow = AllowList.from_strings(policy.allow_networks)
        self._retry = RetryPolicy.of(policy, rng=rng)
        self._sleep = sleep
        self._clock = clock
        self._now = now
        self._resolver = resolver
        self._transport = transport
        self._owned: AiohttpTransport | None = None
        self._global: asyncio.Semaphore | None = None
        self._throttles: dict[str, HostThrottle] = {}
        self._robots = RobotsCache(self._load_robots)
        self._workers: set[asyncio.Task[None]] = set()  # of fetch_many streams not closed yet

    async def __aenter__(self) -> Fetcher:
        if self._transport is None:
            owned = AiohttpTransport(
                user_agent=self.policy.user_agent,
                connect_timeout_s=self.policy.connect_timeout_s,
                total_timeout_s=self.policy.total_timeout_s,
                allow=self._allow,
                resolver=self._resolver,
            )
            self._transport = self._owned = await owned.__aenter__()
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
        if self._owned is not None:
            await self._owned.__aexit__(exc_type, exc, tb)
            self._owned = None
            self._transport = None

    # ------------------------------------------------------------------ public

    async def fetch(self, request: FetchRequest) -> FetchResult:
        """Fetch one URL; every failure comes back as a result with ``error`` set."""
        started = self._clock()
        fetched_at = self._now()
        outcome = await self._follow(
            request.url,
            headers=_request_headers(request),
            max_bytes=self.policy.max_bytes,
            truncate=False,
            check_robots=self.policy.respect_robots,
        )
        result = build_result(
            request,
            outcome,
            max_bytes=self.policy.max_bytes,
            elapsed_s=self._clock() - started,
            fetched_at=fetched_at,
        )
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
        headers: dict[str, str],
        max_bytes: int,
        truncate: bool,
        check_robots: bool,
    ) -> Outcome:
        async def send(target: URL) -> Exchange:
            throttle = self._throttle(target)
            request = TransportRequest(
                target, headers, max_bytes=max_bytes, truncate=truncate, on_sent=throttle.mark_sent
            )
            return await self._request(request, throttle)

        return await follow(
            url,
            send=send,
            allow=self._allow,
            max_redirects=self.policy.max_redirects,
            robots=self._robots_refusal if check_robots else None,
        )

    async def _robots_refusal(self, target: URL) -> Exchange | None:
        rules = await self._robots.rules_for(target)
        delay = rules.crawl_delay(self.policy.user_agent)
        if delay is not None:
            self._throttle(target).raise_base_delay(delay)
        return robots_refusal(rules, target, self.policy.user_agent)

    async def _load_robots(self, url: str) -> RobotsFile:
        outcome = await self._follow(
            url,
            headers={"Accept": ACCEPT_HEADERS["robots"]},
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
            redirects=outcome.redirects,
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

    async def _request(self, request: TransportRequest, throttle: HostThrottle) -> Exchange:
        """One URL: attempts through the transport in the host's slots, retried, the last one settled."""
        transport = self._transport
        assert transport is not None, "use the Fetcher as an async context manager"

        async def attempt() -> Attempt:
            async with throttle.slot():
                response = await transport.send(request)
            return self._feedback(throttle, response)

        async def pause(seconds: float) -> None:
            throttle.defer(seconds)  # the next attempt's slot starts no sooner

        exchange = await self._retry.run(attempt, pause=pause, url=str(request.url))
        return settle(request.url, exchange, max_retry_after_s=self.policy.max_retry_after_s)

    def _feedback(self, throttle: HostThrottle, response: RawResponse) -> Attempt:
        """Slow the host down on 429/503 (reading their Retry-After), let it recover on a success."""
        if response.status in SLOW_DOWN_STATUSES:
            throttle.slow_down()
            retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self._now())
            return Attempt(response, retry_after)
        if response.error is None and response.status is not None and response.status < 400:
            throttle.recover()
        return Attempt(response)


def _request_key(url: str) -> str:
    """Grouping key of ``fetch_many``: the host key, or a shared key for URLs that do not parse."""
    try:
        return host_key(str(URL(url.strip())))
    except (ValueError, TypeError):
        return "invalid"
