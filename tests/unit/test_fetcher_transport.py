"""The Fetcher over a fake transport (the one-method seam of jobs.collect.transport, as httpx's
MockTransport): robots.txt, redirects, the address guard per hop, retries and pacing on a fake clock.
No sockets, no sleeping. The same behaviour against a real local site: tests/integration/test_fetch.py."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from yarl import URL

from jobs.collect.errors import FetchErrorCode
from jobs.collect.fetch import Fetcher, FetchPolicy, FetchRequest, FetchResult
from jobs.collect.robots import ROBOTS_MAX_BYTES
from jobs.collect.transport import RawResponse, Transport, TransportRequest

SITE = "http://news.test"
HOST = "http://news.test:80"  # the throttle key of SITE
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HTML = {"Content-Type": "text/html; charset=utf-8"}
PAGE = b"<html><head><title>A page</title></head><body><p>Some news.</p></body></html>"
ROBOTS = b"User-agent: *\nDisallow: /private/\nCrawl-delay: 2\n"


class FakeTransport:
    """A ``Transport`` answering from ``handler``; keeps every request and when (fake time) it was sent."""

    def __init__(
        self, handler: Callable[[TransportRequest], RawResponse], clock: Callable[[], float]
    ) -> None:
        self.handler = handler
        self.clock = clock
        self.sent: list[tuple[float, TransportRequest]] = []

    async def send(self, request: TransportRequest) -> RawResponse:
        if request.on_sent is not None:
            request.on_sent()
        self.sent.append((self.clock(), request))
        return self.handler(request)

    def paths(self) -> list[str]:
        return [request.url.path for _, request in self.sent]


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def site(request: TransportRequest, calls: dict[str, int]) -> RawResponse:
    """The fake site: a page, robots.txt, redirects, a loop, flaky and rate-limited routes, an ETag."""
    path = request.url.path
    calls[path] = calls.get(path, 0) + 1
    seen = calls[path]
    if path == "/robots.txt":
        return RawResponse(200, {"Content-Type": "text/plain"}, ROBOTS)
    if path in ("/page", "/private/page"):
        return RawResponse(200, HTML, PAGE)
    if path == "/moved":
        return RawResponse(301, {"Location": "/page#top"})
    if path == "/to-metadata":
        return RawResponse(302, {"Location": "http://169.254.169.254/latest/meta-data/"})
    if path in ("/loop-a", "/loop-b"):
        return RawResponse(302, {"Location": "/loop-b" if path == "/loop-a" else "/loop-a"})
    if path == "/flaky":
        return RawResponse(503) if seen <= 2 else RawResponse(200, HTML, PAGE)
    if path == "/limited":
        return RawResponse(429, {"Retry-After": "5"}) if seen == 1 else RawResponse(200, HTML, PAGE)
    if path == "/slow":
        return RawResponse(error=FetchErrorCode.TIMEOUT, detail="no complete response")
    if path == "/etag":
        if request.headers.get("If-None-Match") == '"v1"':
            return RawResponse(304, {"ETag": '"v1"'})
        return RawResponse(200, {**HTML, "ETag": '"v1"'}, PAGE)
    return RawResponse(404)


def fetch_all(
    paths: list[str], **overrides: object
) -> tuple[dict[str, FetchResult], FakeTransport, dict[str, dict[str, float]]]:
    values: dict[str, object] = {"per_host_delay_s": 0.5, "backoff_base_s": 0.5, "max_retries": 2}
    values.update(overrides)
    policy = FetchPolicy(**values)  # type: ignore[arg-type]
    time = FakeTime()
    calls: dict[str, int] = {}
    transport = FakeTransport(lambda request: site(request, calls), time.clock)

    async def run() -> tuple[dict[str, FetchResult], dict[str, dict[str, float]]]:
        seam: Transport = transport
        fetcher = Fetcher(
            policy, transport=seam, sleep=time.sleep, clock=time.clock, rng=random.Random(0), now=lambda: NOW
        )
        async with fetcher:
            results = {path: await fetcher.fetch(FetchRequest(SITE + path)) for path in paths}
            return results, fetcher.host_stats()

    results, stats = asyncio.run(run())
    return results, transport, stats


def test_robots_first_then_the_page_with_its_headers() -> None:
    results, transport, stats = fetch_all(["/page"])
    page = results["/page"]
    assert page.ok and page.attempts == 1 and page.text is not None and "Some news." in page.text
    assert page.fetched_at == NOW and page.content_type == "text/html"
    (_, robots), (_, sent) = transport.sent
    assert robots.url == URL(SITE + "/robots.txt") and robots.truncate
    assert robots.max_bytes == ROBOTS_MAX_BYTES and robots.headers["Accept"].startswith("text/plain")
    assert sent.headers["Accept"].startswith("text/html") and not sent.truncate
    assert stats[HOST]["base_delay_s"] == 2.0  # robots.txt's Crawl-delay


def test_robots_disallow_and_ignoring_robots() -> None:
    results, transport, _ = fetch_all(["/private/page"])
    refused = results["/private/page"]
    assert refused.error == FetchErrorCode.ROBOTS_DISALLOWED and refused.attempts == 0
    assert transport.paths() == ["/robots.txt"]
    results, transport, _ = fetch_all(["/private/page"], respect_robots=False)
    assert results["/private/page"].ok and transport.paths() == ["/private/page"]


def test_redirects_are_followed_and_checked_per_hop() -> None:
    results, transport, _ = fetch_all(["/moved", "/to-metadata", "/loop-a"])
    moved = results["/moved"]
    assert moved.ok and moved.final_url == SITE + "/page" and moved.redirects == (SITE + "/page",)
    blocked = results["/to-metadata"]
    assert blocked.error == FetchErrorCode.BLOCKED_ADDRESS and blocked.status == 302
    assert blocked.final_url.startswith("http://169.254.169.254/") and blocked.attempts == 0
    assert all(request.url.host == "news.test" for _, request in transport.sent)  # never sent there
    loop = results["/loop-a"]
    assert loop.error == FetchErrorCode.REDIRECT_LOOP and loop.redirects == (SITE + "/loop-b",)


def test_too_many_redirects() -> None:
    results, _, _ = fetch_all(["/moved"], max_redirects=0)
    assert results["/moved"].error == FetchErrorCode.TOO_MANY_REDIRECTS


def test_transient_answers_are_retried_after_a_backoff() -> None:
    results, transport, stats = fetch_all(["/flaky", "/slow"], respect_robots=False)
    flaky = results["/flaky"]
    assert flaky.ok and flaky.attempts == 3 and transport.paths().count("/flaky") == 3
    assert stats[HOST]["backoffs"] == 2.0  # each 503 doubled the host's delay
    starts = [at for at, request in transport.sent if request.url.path == "/flaky"]
    assert starts[1] - starts[0] >= 1.0 and starts[2] - starts[1] >= 2.0  # the doubled delays at least
    slow = results["/slow"]
    assert slow.error == FetchErrorCode.TIMEOUT and slow.attempts == 3
    assert slow.error_detail == "no complete response (after 3 attempts)"


def test_retry_after_is_waited_for() -> None:
    results, transport, _ = fetch_all(["/limited"], respect_robots=False, per_host_delay_s=0.0)
    limited = results["/limited"]
    assert limited.ok and limited.attempts == 2 and limited.retry_after_s is None
    first, second = (at for at, _ in transport.sent)
    assert second - first == pytest.approx(5.0)


def test_retry_after_above_the_limit_is_rate_limited() -> None:
    results, transport, _ = fetch_all(["/limited"], respect_robots=False, max_retry_after_s=1.0)
    limited = results["/limited"]
    assert limited.error == FetchErrorCode.RATE_LIMITED and limited.status == 429
    assert limited.retry_after_s == 5.0 and limited.attempts == 1 and transport.paths() == ["/limited"]


def test_conditional_get() -> None:
    async def run() -> tuple[FetchResult, FetchResult]:
        time = FakeTime()
        transport = FakeTransport(lambda request: site(request, {}), time.clock)
        async with Fetcher(
            FetchPolicy(respect_robots=False), transport=transport, sleep=time.sleep
        ) as fetcher:
            fresh = await fetcher.fetch(FetchRequest(SITE + "/etag", etag='"v1"'))
            stale = await fetcher.fetch(FetchRequest(SITE + "/etag", etag='"v0"'))
        return fresh, stale

    fresh, stale = asyncio.run(run())
    assert fresh.not_modified and fresh.body == b"" and fresh.error is None and fresh.etag == '"v1"'
    assert stale.ok and stale.body == PAGE


def test_a_given_transport_takes_no_resolver() -> None:
    transport = FakeTransport(lambda request: RawResponse(404), lambda: 0.0)
    with pytest.raises(ValueError, match="resolver"):
        Fetcher(FetchPolicy(), transport=transport, resolver=object())  # type: ignore[arg-type]
