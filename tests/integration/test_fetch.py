"""The fetcher against a real local web site (tests/support/web_site.py): no Ray, no database.

Only 127.0.0.1 is allow-listed unless a test says otherwise, so 169.254.169.254 and 10.0.0.1 stay blocked.
Timing assertions read the request-start times the site recorded, not wall-clock ratios.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from jobs.collect.fetch import ERROR_CODES, Fetcher, FetchPolicy, FetchRequest, FetchResult
from tests.support.web_site import ETAG, LAST_MODIFIED, LATIN1_TEXT, LocalSite

pytestmark = pytest.mark.integration

#: Allowed shortfall of a gap measured by the site between two request arrivals. The fetcher spaces the
#: moments the requests leave; the site, a thread of this process, notes them when it gets to run, which a
#: garbage collection or GIL hand-over can delay by some milliseconds for one request and not the next.
JITTER_S = 0.03


def make_policy(**overrides: Any) -> FetchPolicy:
    values: dict[str, Any] = {
        "per_host_delay_s": 0.0,
        "allow_networks": ("127.0.0.1",),
        "connect_timeout_s": 2.0,
        "total_timeout_s": 5.0,
        "max_bytes": 1_000_000,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
    }
    values.update(overrides)
    return FetchPolicy(**values)


def fetch(
    url: str,
    *,
    kind: str = "page",
    policy: FetchPolicy | None = None,
    resolver: AbstractResolver | None = None,
    **request: Any,
) -> FetchResult:
    async def run() -> FetchResult:
        async with Fetcher(policy or make_policy(), resolver=resolver) as fetcher:
            return await fetcher.fetch(FetchRequest(url, kind=kind, **request))  # type: ignore[arg-type]

    return asyncio.run(run())


def fetch_all(requests: list[FetchRequest], policy: FetchPolicy) -> tuple[list[FetchResult], dict[str, Any]]:
    async def run() -> tuple[list[FetchResult], dict[str, Any]]:
        async with Fetcher(policy) as fetcher:
            results = [r async for r in fetcher.fetch_many(requests)]
            return results, fetcher.host_stats()

    return asyncio.run(run())


class MapResolver(AbstractResolver):
    """Resolves chosen test names to loopback addresses; other names fail like NXDOMAIN."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        address = self.names[host]
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        pass


@pytest.fixture
def site(local_site: LocalSite) -> LocalSite:
    local_site.reset()
    return local_site


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every address a socket of this process tried to connect to."""
    seen: list[Any] = []
    real = socket.socket.connect

    def spy(self: socket.socket, address: Any) -> None:
        seen.append(address)
        real(self, address)

    monkeypatch.setattr(socket.socket, "connect", spy)
    yield seen


def paths(site: LocalSite) -> list[str]:
    return [r.path for r in site.requests]


# --------------------------------------------------------------------------- the good cases


def test_page_feed_and_sitemaps_are_fetched_and_decoded(site: LocalSite) -> None:
    page = fetch(site.url("/news/cnn_article.html"))
    assert page.ok and page.status == 200 and page.error is None
    assert page.content_type == "text/html" and page.charset == "utf-8"
    assert page.text is not None and page.text == page.body.decode("utf-8")
    assert page.fetched_at.tzinfo is not None and page.attempts == 1 and page.redirects == ()

    for name, media in (
        ("feed2.rss", "application/rss+xml"),
        ("feed1.atom", "application/atom+xml"),
        ("json_feed.json", "application/feed+json"),
    ):
        feed = fetch(site.url(f"/feeds/{name}"), kind="feed")
        assert feed.ok, feed.error_detail
        assert feed.content_type == media

    index = fetch(site.url("/sitemap_index.xml"), kind="sitemap")
    assert index.ok and index.text is not None and "<sitemapindex" in index.text
    gz = fetch(site.url("/sitemap.xml.gz"), kind="sitemap")
    plain = fetch(site.url("/sitemap.xml"), kind="sitemap")
    assert gz.ok and gz.content_type == "application/gzip"
    assert gz.body == plain.body and gz.text is not None and gz.text.startswith("<?xml")
    listing = fetch(site.url("/sitemap.txt"), kind="sitemap")
    assert listing.ok and listing.text is not None and "/news/" in listing.text


def test_headers_sent(site: LocalSite) -> None:
    policy = make_policy(user_agent="PulseBot/9.9 (+https://example.invalid/bot)")
    fetch(site.url("/feeds/feed2.rss"), kind="feed", policy=policy)
    (request,) = site.requests_for("/feeds/feed2.rss")
    assert request.headers["User-Agent"] == "PulseBot/9.9 (+https://example.invalid/bot)"
    assert request.headers["Accept"].startswith("application/rss+xml")
    assert "gzip" in request.headers["Accept-Encoding"]
    assert site.requests_for("/robots.txt")[0].headers["User-Agent"].startswith("PulseBot/9.9")


def test_latin1_page_decodes_to_the_right_letters(site: LocalSite) -> None:
    result = fetch(site.url("/latin1.html"))
    assert result.ok and result.content_type == "text/html"
    assert result.charset == "iso8859-1"
    assert result.text is not None and LATIN1_TEXT in result.text
    assert "Crème brûlée" in result.text and "Ångström" in result.text


def test_eval_pages_without_header_charset_decode(site: LocalSite) -> None:
    result = fetch(site.url("/eval/7mind.de.grenzen.html"))
    assert result.ok and result.text is not None and result.charset is not None
    assert "\ufffd" not in result.text


def test_site_latency_and_file_names_that_need_quoting(site: LocalSite) -> None:
    name = "Dezubekizacja \u2013 reaktywacja. Czyli daty mają znaczenie - Dziennik.pl.html"
    site.latency_s = 0.1
    try:
        result = fetch(site.url("/eval/" + quote(name)))
    finally:
        site.latency_s = 0.0
    assert result.ok and result.text is not None and "Dezubekizacja" in result.text
    assert result.elapsed_s >= 0.2  # robots.txt and the page, 0.1 s each
    assert [r.path for r in site.requests] == ["/robots.txt", f"/eval/{name}"]


def test_conditional_get_answers_304(site: LocalSite) -> None:
    first = fetch(site.url("/etag/page.html"))
    assert first.ok and first.etag == ETAG and first.last_modified == LAST_MODIFIED
    by_etag = fetch(site.url("/etag/page.html"), etag=first.etag)
    by_date = fetch(site.url("/etag/page.html"), last_modified=first.last_modified)
    for result in (by_etag, by_date):
        assert result.status == 304 and result.not_modified
        assert result.error is None and not result.ok and result.body == b"" and result.attempts == 1
    sent = site.requests_for("/etag/page.html")
    assert sent[1].headers["If-None-Match"] == ETAG
    assert sent[2].headers["If-Modified-Since"] == LAST_MODIFIED
    changed = fetch(site.url("/etag/page.html"), etag='"an-old-version"')
    assert changed.ok and changed.body


def test_redirect_chain_within_the_limit(site: LocalSite) -> None:
    result = fetch(site.url("/redirect-chain/5"))
    assert result.ok
    assert result.final_url == site.url("/redirect-chain/0")
    assert result.redirects == tuple(site.url(f"/redirect-chain/{n}") for n in (4, 3, 2, 1, 0))


def test_malformed_bodies_are_returned_for_the_parser(site: LocalSite) -> None:
    xml = fetch(site.url("/malformed.xml"), kind="feed")
    assert xml.ok and xml.text is not None and xml.text.endswith("<descr")
    broken = fetch(site.url("/malformed.html"))
    assert broken.ok and broken.charset == "utf-8"
    assert broken.text is not None and "\ufffd" in broken.text and "Unclosed paragraph" in broken.text


# --------------------------------------------------------------------------- hostile routes


@pytest.mark.parametrize(
    ("path", "kind", "error"),
    [
        ("/loop/a", "page", "redirect_loop"),
        ("/redirect-chain/6", "page", "too_many_redirects"),
        ("/huge", "page", "too_large"),
        ("/huge-declared", "page", "too_large"),
        ("/gzip-bomb", "page", "too_large"),
        ("/image.png", "page", "bad_content_type"),
        ("/page-as-json", "page", "bad_content_type"),
        ("/news/cnn_article.html", "feed", "bad_content_type"),
        ("/feeds/feed2.rss", "page", "bad_content_type"),
        ("/news/cnn_article.html", "sitemap", "bad_content_type"),
        ("/redirect-file", "page", "blocked_scheme"),
        ("/private/secret.html", "page", "robots_disallowed"),
        ("/ratelimited-long", "page", "rate_limited"),
        ("/status/404", "page", "http_error"),
        ("/status/410", "page", "http_error"),
    ],
)
def test_hostile_routes_give_their_error(site: LocalSite, path: str, kind: str, error: str) -> None:
    result = fetch(site.url(path), kind=kind)
    assert result.error == error, result.error_detail
    assert result.error in ERROR_CODES
    assert not result.ok and result.body == b"" and result.text is None
    assert result.error_detail


def test_bad_content_type_names_the_type(site: LocalSite) -> None:
    result = fetch(site.url("/image.png"))
    assert result.content_type == "image/png"
    assert result.error_detail is not None and "image/png" in result.error_detail


@pytest.mark.parametrize(
    ("path", "target"),
    [("/redirect-metadata", "169.254.169.254"), ("/redirect-internal", "10.0.0.1")],
)
def test_redirects_to_internal_addresses_are_refused_before_connecting(
    site: LocalSite, connects: list[Any], path: str, target: str
) -> None:
    result = fetch(site.url(path))
    assert result.error == "blocked_address"
    assert result.status == 302 and result.final_url.startswith(f"http://{target}/")
    assert result.error_detail is not None and target in result.error_detail
    assert all(address[0] == "127.0.0.1" for address in connects)  # never a socket towards the target
    assert paths(site) == ["/robots.txt", path]


def test_404_is_not_retried(site: LocalSite) -> None:
    result = fetch(site.url("/status/404"), policy=make_policy(max_retries=3))
    assert result.error == "http_error" and result.status == 404 and result.attempts == 1
    assert result.error_detail is not None and "404" in result.error_detail
    assert len(site.requests_for("/status/404")) == 1


def test_500_is_retried_then_reported(site: LocalSite) -> None:
    result = fetch(site.url("/status/500"), policy=make_policy(max_retries=2))
    assert result.error == "http_error" and result.status == 500 and result.attempts == 3
    assert len(site.requests_for("/status/500")) == 3


def test_flaky_succeeds_after_retries(site: LocalSite) -> None:
    result = fetch(site.url("/flaky"), policy=make_policy(max_retries=2))
    assert result.ok and result.attempts == 3
    assert len(site.requests_for("/flaky")) == 3


def test_flaky_without_enough_retries_fails_with_the_last_status(site: LocalSite) -> None:
    result = fetch(site.url("/flaky"), policy=make_policy(max_retries=1))
    assert result.error == "http_error" and result.status == 503 and result.attempts == 2


def test_retry_after_one_second_is_waited_for(site: LocalSite) -> None:
    result = fetch(site.url("/ratelimited"))
    assert result.ok and result.attempts == 2
    first, second = site.requests_for("/ratelimited")
    assert second.at - first.at >= 1.0 - JITTER_S
    assert result.elapsed_s >= 1.0 - JITTER_S


def test_retry_after_above_the_limit_is_not_waited_for(site: LocalSite) -> None:
    started = time.monotonic()
    result = fetch(site.url("/ratelimited-long"), policy=make_policy(max_retry_after_s=60))
    assert time.monotonic() - started < 3.0
    assert result.error == "rate_limited" and result.status == 429
    assert result.retry_after_s == 3600.0 and result.attempts == 1
    assert len(site.requests_for("/ratelimited-long")) == 1


def test_slow_response_times_out(site: LocalSite) -> None:
    started = time.monotonic()
    result = fetch(site.url("/slow?seconds=5"), policy=make_policy(total_timeout_s=0.3, max_retries=1))
    assert time.monotonic() - started < 2.5
    assert result.error == "timeout" and result.status is None and result.attempts == 2


def test_huge_body_stops_early(site: LocalSite) -> None:
    result = fetch(site.url("/huge"), policy=make_policy(max_bytes=200_000))
    assert result.error == "too_large" and result.status == 200 and result.body == b""
    assert result.error_detail is not None and "200000" in result.error_detail


# --------------------------------------------------------------------------- robots.txt


def test_robots_disallow_makes_no_request(site: LocalSite) -> None:
    result = fetch(site.url("/private/secret.html"))
    assert result.error == "robots_disallowed" and result.attempts == 0
    assert paths(site) == ["/robots.txt"]
    ignored = fetch(site.url("/private/secret.html"), policy=make_policy(respect_robots=False))
    assert ignored.ok


def test_robots_is_fetched_once_per_host(site: LocalSite) -> None:
    urls = [site.url(f"/redirect-chain/{n}") for n in range(3)] + [site.url("/news/cnn_article.html")]
    results, _ = fetch_all([FetchRequest(u) for u in urls], make_policy(per_host_concurrency=2))
    assert all(r.ok for r in results)
    assert len(site.requests_for("/robots.txt")) == 1


def test_robots_5xx_disallows_4xx_allows_and_crawl_delay_slows(site: LocalSite) -> None:
    port = site.base_url.rsplit(":", 1)[1]
    names = {f"robots-{kind}.test": "127.0.0.1" for kind in ("down", "missing", "slow")}
    resolver = MapResolver(names)
    policy = make_policy(max_retries=0)
    down = fetch(f"http://robots-down.test:{port}/news/cnn_article.html", policy=policy, resolver=resolver)
    assert down.error == "robots_unavailable" and down.error_detail is not None and "503" in down.error_detail
    missing = fetch(
        f"http://robots-missing.test:{port}/private/secret.html", policy=policy, resolver=resolver
    )
    assert missing.ok  # no robots.txt: everything allowed
    assert "/news/cnn_article.html" not in paths(site)

    async def slow_host() -> dict[str, dict[str, float]]:
        async with Fetcher(policy, resolver=resolver) as fetcher:
            for path in ("/news/cnn_article.html", "/news/foxnews.com1.html"):
                assert (await fetcher.fetch(FetchRequest(f"http://robots-slow.test:{port}{path}"))).ok
            return fetcher.host_stats()

    site.reset()
    stats = asyncio.run(slow_host())
    assert stats[f"http://robots-slow.test:{port}"]["delay_s"] == pytest.approx(0.3)
    starts = [r.at for r in site.requests]
    assert site.requests[0].path == "/robots.txt"
    assert starts[2] - starts[1] >= 0.3 - JITTER_S


# --------------------------------------------------------------------------- names resolved at connect time


def test_localhost_is_refused_unless_allowed(site: LocalSite, connects: list[Any]) -> None:
    port = site.base_url.rsplit(":", 1)[1]
    url = f"http://localhost:{port}/news/cnn_article.html"
    for respect_robots in (True, False):
        refused = fetch(url, policy=make_policy(allow_networks=(), respect_robots=respect_robots))
        assert refused.error == "blocked_address", refused.error_detail
        assert refused.error_detail is not None and "localhost" in refused.error_detail
    assert connects == [] and site.requests == []
    allowed = fetch(url, policy=make_policy(allow_networks=("localhost",)))
    assert allowed.ok


def test_names_resolving_inside_are_refused_at_connect_time(site: LocalSite) -> None:
    port = site.base_url.rsplit(":", 1)[1]
    resolver = MapResolver({"news.test": "127.0.0.1"})
    refused = fetch(f"http://news.test:{port}/", policy=make_policy(allow_networks=()), resolver=resolver)
    assert refused.error == "blocked_address" and resolver.asked == ["news.test"]
    assert site.requests == []
    fine = fetch(f"http://news.test:{port}/", resolver=resolver)  # 127.0.0.1 is allow-listed
    assert fine.ok
    unknown = fetch(f"http://nowhere.test:{port}/", resolver=resolver, policy=make_policy(max_retries=2))
    assert unknown.error == "dns_error", unknown.error_detail
    assert resolver.asked.count("nowhere.test") == 1  # not retried; the page itself was never tried
    direct = fetch(
        f"http://nowhere.test:{port}/",
        resolver=resolver,
        policy=make_policy(max_retries=2, respect_robots=False),
    )
    assert direct.error == "dns_error" and direct.attempts == 1


def test_nothing_listens_is_a_connection_error(site: LocalSite) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    result = fetch(f"http://127.0.0.1:{free_port}/", policy=make_policy(respect_robots=False, max_retries=1))
    assert result.error == "connection_error" and result.attempts == 2


# --------------------------------------------------------------------------- politeness and fetch_many


def test_one_host_is_paced_many_hosts_are_not(site: LocalSite) -> None:
    delay = 0.2
    names = [
        "cnn_article.html",
        "foxnews.com1.html",
        "reuters.com1.html",
        "reuters.com2.html",
        "reuters.com3.html",
    ]
    policy = make_policy(per_host_delay_s=delay, allow_networks=("127.0.0.0/8",))

    results, stats = fetch_all([FetchRequest(site.url(f"/news/{n}")) for n in names], policy)
    assert all(r.ok for r in results) and len(results) == 5
    starts = [r.at for r in site.requests]  # robots.txt, then the 5 pages, one host
    assert len(starts) == 6
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= delay - JITTER_S, gaps
    assert starts[-1] - starts[1] >= 4 * delay - JITTER_S
    assert stats[site.base_url]["requests"] == 6.0

    hosts = site.start_hosts(5)  # 127.0.0.2 .. 127.0.0.6
    site.reset()
    results, stats = fetch_all(
        [FetchRequest(f"{h}/news/{n}") for h, n in zip(hosts, names, strict=True)], policy
    )
    assert all(r.ok for r in results) and len(stats) == 5
    by_host: dict[str, list[float]] = {}
    for request in site.requests:
        by_host.setdefault(request.host, []).append(request.at)
    assert sorted(by_host) == [f"127.0.0.{i}" for i in range(2, 7)]
    for host_starts in by_host.values():  # robots.txt then the page, paced per host
        assert len(host_starts) == 2 and host_starts[1] - host_starts[0] >= delay - JITTER_S
    page_starts = [r.at for r in site.requests if r.path.startswith("/news/")]
    assert max(page_starts) - min(page_starts) < delay  # the hosts did not wait for each other


def test_fetch_many_yields_every_result_once(site: LocalSite) -> None:
    hosts = [site.base_url, *site.start_hosts(2)]
    requests = [FetchRequest(f"{h}/redirect-chain/{n}") for h in hosts for n in range(3)]
    requests += [FetchRequest("not a url"), FetchRequest(f"{hosts[0]}/status/404")]
    results, stats = fetch_all(requests, make_policy(allow_networks=("127.0.0.0/8",), global_concurrency=2))
    assert sorted(r.url for r in results) == sorted(r.url for r in requests)
    by_url = {r.url: r for r in results}
    assert by_url["not a url"].error == "invalid_url"
    assert by_url[f"{hosts[0]}/status/404"].error == "http_error"
    assert sum(r.ok for r in results) == 9
    assert set(stats) == set(hosts)


def test_fetch_many_can_stop_early(site: LocalSite) -> None:
    async def run() -> list[FetchResult]:
        requests = (FetchRequest(site.url(f"/slow?seconds=0.05&i={i}")) for i in range(50))
        taken: list[FetchResult] = []
        async with Fetcher(make_policy(per_host_concurrency=4)) as fetcher:
            stream = fetcher.fetch_many(requests)
            async with contextlib.aclosing(stream):  # type: ignore[type-var]
                async for result in stream:
                    taken.append(result)
                    if len(taken) == 3:
                        break
        return taken

    taken = asyncio.run(run())
    assert len(taken) == 3 and all(r.ok for r in taken)
    assert len(site.requests_for("/slow")) < 20  # closing the stream cancelled the work in flight


def test_fetcher_exit_cancels_an_abandoned_stream(site: LocalSite) -> None:
    async def run() -> FetchResult:
        async with Fetcher(make_policy(per_host_concurrency=4)) as fetcher:
            stream = fetcher.fetch_many(
                FetchRequest(site.url(f"/slow?seconds=0.05&i={i}")) for i in range(50)
            )
            return await anext(stream)

    assert asyncio.run(run()).ok
    assert len(site.requests_for("/slow")) < 20
