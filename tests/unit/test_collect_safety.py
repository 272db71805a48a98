"""The fetching layer's pure rules: URL and address guard, Retry-After, content types, charsets, robots.txt
mapping and the host throttle on an injected clock. No sockets, no sleeping. The backoff between retries is
tested with the retry policy (tests/unit/test_fetch_retry.py)."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import socket
from datetime import UTC, datetime, timedelta

import pytest

from cluster.ground.address_guard import AllowList, SafeResolver, check_url
from cluster.ground.errors import BlockedAddress, BlockedURL, InvalidAllowList
from jobs.collect.content import BodyTooLarge, accepts, decode_body, gunzip_capped, parse_content_type
from jobs.collect.errors import InvalidFetchPolicy
from jobs.collect.fetch import FetchPolicy
from jobs.collect.robots import RobotsCache, RobotsFile, product_token, robots_url, rules_from_file
from jobs.collect.throttle import HostThrottle, parse_retry_after

NOTHING = AllowList()
#: What a caller tells the user to do about a refusal; every refusal message ends with it.
HINT = "set THE_SETTING to allow it"

# --------------------------------------------------------------------------- check_url


@pytest.mark.parametrize(
    "host",
    [
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "224.0.0.1",
        "100.64.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "[::1]",
        "[fe80::1]",
        "[::ffff:10.0.0.1]",
        "[::ffff:127.0.0.1]",
        "[fc00::1]",
        "[ff02::1]",
        "[::]",
        "[64:ff9b::a00:1]",  # NAT64 of 10.0.0.1
        "[2002:a00:1::1]",  # 6to4 of 10.0.0.1
    ],
)
def test_internal_ip_literals_are_blocked(host: str) -> None:
    with pytest.raises(BlockedURL) as caught:
        check_url(f"http://{host}/x", NOTHING, hint=HINT)
    assert caught.value.code == "blocked_address"
    assert caught.value.url == f"http://{host}/x"
    assert str(caught.value).endswith(HINT)  # the caller's advice, not another caller's


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "127.1", "0177.0.0.1", "10.1"])
def test_legacy_numeric_spellings_of_internal_addresses_are_blocked(host: str) -> None:
    with pytest.raises(BlockedURL) as caught:
        check_url(f"http://{host}/", NOTHING, hint=HINT)
    assert caught.value.code == "blocked_address"


def test_legacy_numeric_spelling_of_a_public_address_is_invalid() -> None:
    with pytest.raises(BlockedURL) as caught:
        check_url("http://134744072/", NOTHING, hint=HINT)  # 8.8.8.8
    assert caught.value.code == "invalid_url"
    assert "8.8.8.8" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://8.8.8.8/",
        "https://1.1.1.1:8443/path?q=1",
        "http://[2606:4700:4700::1111]/",
        "https://example.com/news/a.html",
        "HTTPS://Example.COM./",
        "http://bücher.example/",
        "http://user:pass@example.com/",
        "http://cafe.face/",  # hex letters, but a name
    ],
)
def test_public_addresses_and_names_pass(url: str) -> None:
    check_url(url, NOTHING, hint=HINT)


def test_userinfo_does_not_hide_the_real_host() -> None:
    with pytest.raises(BlockedURL) as caught:
        check_url("http://example.com@10.0.0.1/", NOTHING, hint=HINT)
    assert caught.value.code == "blocked_address"


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/x",
        "javascript:alert(1)",
        "data:text/html,<p>hi</p>",
        "gopher://x/",
    ],
)
def test_other_schemes_are_blocked(url: str) -> None:
    with pytest.raises(BlockedURL) as caught:
        check_url(url, NOTHING, hint=HINT)
    assert caught.value.code == "blocked_scheme"


@pytest.mark.parametrize(
    "url", ["", "example.com/page", "/relative/path", "http:///nohost", "http://x:99999/"]
)
def test_invalid_urls(url: str) -> None:
    with pytest.raises(BlockedURL) as caught:
        check_url(url, NOTHING, hint=HINT)
    assert caught.value.code == "invalid_url"


def test_allow_list_by_cidr_and_by_address() -> None:
    allow = AllowList.from_strings(("127.0.0.0/8", "10.1.2.3"))
    check_url("http://127.0.0.5:8080/", allow, hint=HINT)
    check_url("http://10.1.2.3/", allow, hint=HINT)
    check_url("http://[::ffff:127.0.0.1]/", allow, hint=HINT)
    with pytest.raises(BlockedURL):
        check_url("http://10.1.2.4/", allow, hint=HINT)
    with pytest.raises(BlockedURL):
        check_url("http://169.254.169.254/", allow, hint=HINT)


def test_allow_list_by_host_name() -> None:
    allow = AllowList.from_strings(("Example.Internal",))
    check_url("http://example.internal/", allow, hint=HINT)
    check_url("http://EXAMPLE.internal./", allow, hint=HINT)
    assert allow.allows_host("example.internal")
    assert not allow.allows_host("other.internal")


@pytest.mark.parametrize("entry", ["", "not a host", "10.0.0.0/99", "a/b"])
def test_bad_allow_list_entries_are_refused(entry: str) -> None:
    with pytest.raises(InvalidAllowList):
        AllowList.from_strings((entry,))


# --------------------------------------------------------------------------- resolver


class FakeResolver:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []
        self.closed = False

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):  # type: ignore[no-untyped-def]
        self.asked.append(host)
        return [
            {"hostname": host, "host": a, "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}
            for a in self.answers[host]
        ]

    async def close(self) -> None:
        self.closed = True


def test_resolver_refuses_names_that_resolve_inside() -> None:
    inner = FakeResolver({"internal.example": ["10.0.0.7"], "both.example": ["10.0.0.8", "93.184.215.14"]})
    resolver = SafeResolver(NOTHING, inner, hint=HINT)  # type: ignore[arg-type]

    async def run() -> None:
        with pytest.raises(BlockedAddress) as caught:
            await resolver.resolve("internal.example", 80)
        assert isinstance(caught.value, OSError)
        assert caught.value.addresses == ("10.0.0.7",)
        assert "10.0.0.7 is a private address" in str(caught.value) and str(caught.value).endswith(HINT)
        kept = await resolver.resolve("both.example", 80)
        assert [r["host"] for r in kept] == ["93.184.215.14"]
        await resolver.close()

    asyncio.run(run())
    assert inner.closed


def test_resolver_lets_allowed_names_and_networks_through() -> None:
    inner = FakeResolver({"site.test": ["127.0.0.2"], "intranet.example": ["10.0.0.9"]})
    resolver = SafeResolver(AllowList.from_strings(("127.0.0.0/8", "intranet.example")), inner, hint=HINT)  # type: ignore[arg-type]

    async def run() -> None:
        assert [r["host"] for r in await resolver.resolve("site.test")] == ["127.0.0.2"]
        assert [r["host"] for r in await resolver.resolve("intranet.example")] == ["10.0.0.9"]

    asyncio.run(run())


# --------------------------------------------------------------------------- Retry-After


NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", 1.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("Sat, 01 Mar 2025 12:00:30 GMT", 30.0),
        ("Sat, 01 Mar 2025 11:00:00 GMT", 0.0),  # in the past: go now
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
    ],
)
def test_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_retry_after_http_date_uses_the_injected_clock() -> None:
    later = NOW + timedelta(seconds=20)
    assert parse_retry_after("Sat, 01 Mar 2025 12:00:30 GMT", now=later) == 10.0


# --------------------------------------------------------------------------- content types and charsets


def test_parse_content_type() -> None:
    assert parse_content_type('Text/HTML; charset="ISO-8859-1"') == ("text/html", "ISO-8859-1")
    assert parse_content_type("application/rss+xml") == ("application/rss+xml", None)
    assert parse_content_type(None) == (None, None)
    assert parse_content_type("  ") == (None, None)


@pytest.mark.parametrize(
    ("kind", "media", "ok"),
    [
        ("page", "text/html", True),
        ("page", "application/xhtml+xml", True),
        ("page", "application/json", False),
        ("page", "image/png", False),
        ("feed", "application/rss+xml", True),
        ("feed", "application/atom+xml", True),
        ("feed", "application/feed+json", True),
        ("feed", "application/json", True),
        ("feed", "text/xml", True),
        ("feed", "text/html", False),
        ("sitemap", "application/xml", True),
        ("sitemap", "application/gzip", True),
        ("sitemap", "application/x-gzip", True),
        ("sitemap", "text/plain", True),
        ("sitemap", "text/html", False),
    ],
)
def test_accepted_types_per_kind(kind: str, media: str, ok: bool) -> None:
    assert accepts(kind, media, b"") is ok


def test_missing_content_type_is_sniffed() -> None:
    assert accepts("page", None, b"  <!DOCTYPE html><html><body>x</body></html>")
    assert not accepts("page", None, b"\x89PNG\r\n")
    assert accepts("feed", None, b'<?xml version="1.0"?><rss/>')


def test_decode_prefers_the_header_then_the_document() -> None:
    latin = "<html><head><meta charset=iso-8859-1></head><body>Crème brûlée</body></html>".encode("latin-1")
    assert decode_body(latin, None) == (latin.decode("latin-1"), "iso8859-1")
    utf8 = "<p>Crème</p>".encode()
    assert decode_body(utf8, "utf-8") == ("<p>Crème</p>", "utf-8")
    xml = '<?xml version="1.0" encoding="ISO-8859-1"?><rss>é</rss>'.encode("latin-1")
    assert decode_body(xml, None)[0] == '<?xml version="1.0" encoding="ISO-8859-1"?><rss>é</rss>'
    assert decode_body(b"\xef\xbb\xbfhello", "latin-1") == ("hello", "utf-8-sig")  # BOM wins


def test_decode_without_declaration_detects_and_keeps_garbage_replaced() -> None:
    assert decode_body("plain ünïcode".encode(), None) == ("plain ünïcode", "utf-8")
    text, charset = decode_body(b"<p>bad \xff bytes</p>", "utf-8")
    assert charset == "utf-8" and text is not None and "\ufffd" in text
    assert decode_body(b"", None) == ("", None)
    assert decode_body(b"x", "no-such-charset") == ("x", "utf-8")


def test_gunzip_respects_the_cap() -> None:
    data = gzip.compress(b"a" * 10_000)
    assert gunzip_capped(data, 10_000) == b"a" * 10_000
    with pytest.raises(BodyTooLarge):
        gunzip_capped(data, 9_999)
    with pytest.raises(ValueError):
        gunzip_capped(b"\x1f\x8bnot gzip", 100)
    with pytest.raises(ValueError):
        gunzip_capped(data[:20], 100_000)


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(InvalidFetchPolicy):
        FetchPolicy(per_host_concurrency=0)
    with pytest.raises(InvalidFetchPolicy):
        FetchPolicy(total_timeout_s=0)
    assert FetchPolicy().per_host_concurrency == 1


# --------------------------------------------------------------------------- robots.txt


UA = "PulseBot/0.1 (+https://github.com/pulse-platform/pulse; bot@pulse.invalid)"


def test_product_token_and_robots_url() -> None:
    assert product_token(UA) == "PulseBot"
    assert robots_url("https://Example.com:8443/a/b?c=d#e") == "https://example.com:8443/robots.txt"
    assert robots_url("http://example.com/x") == "http://example.com/robots.txt"


def test_robots_rules_follow_rfc_9309() -> None:
    body = b"User-agent: *\nDisallow: /private/\n\nUser-agent: PulseBot\nDisallow: /nobots/\nCrawl-delay: 5\n"
    parsed = rules_from_file(RobotsFile("http://h/robots.txt", 200, body))
    assert parsed.can_fetch("http://h/private/x", UA)  # our own group replaces the * group
    assert not parsed.can_fetch("http://h/nobots/x", UA)
    assert parsed.crawl_delay(UA) == 5.0
    generic = rules_from_file(RobotsFile("http://h/robots.txt", 200, b"User-agent: *\nDisallow: /private/\n"))
    assert not generic.can_fetch("http://h/private/x", UA)
    for status in (401, 403, 404, 410):
        assert rules_from_file(RobotsFile("u", status)).allow_all
    for status in (429, 500, 503):
        assert rules_from_file(RobotsFile("u", status)).disallow_all
    assert rules_from_file(RobotsFile("u", None, error="timeout", detail="slow")).disallow_all
    assert rules_from_file(RobotsFile("u", 302, error="too_many_redirects")).allow_all
    refused = rules_from_file(RobotsFile("u", None, error="blocked_address"))
    assert refused.disallow_all and refused.host_error == "blocked_address"
    assert rules_from_file(RobotsFile("u", None, error="dns_error")).host_error == "dns_error"
    assert rules_from_file(RobotsFile("u", None, error="timeout")).host_error is None
    redirected = rules_from_file(
        RobotsFile("u", 302, error="blocked_address", redirects=("http://10.0.0.1/",))
    )
    assert redirected.disallow_all and redirected.host_error is None
    assert rules_from_file(RobotsFile("u", 404, error="http_error", detail="HTTP 404")).allow_all


def test_robots_cache_loads_each_host_once_even_concurrently() -> None:
    loads: list[str] = []

    async def load(url: str) -> RobotsFile:
        loads.append(url)
        await asyncio.sleep(0)
        return RobotsFile(url, 200, b"User-agent: *\nDisallow: /no\n")

    async def run() -> None:
        cache = RobotsCache(load)
        rules = await asyncio.gather(*(cache.rules_for(f"http://a.example/p{i}") for i in range(10)))
        assert all(r is rules[0] for r in rules)
        await cache.rules_for("http://b.example/")
        assert not (await cache.rules_for("http://a.example/no")).can_fetch("http://a.example/no", UA)

    asyncio.run(run())
    assert loads == ["http://a.example/robots.txt", "http://b.example/robots.txt"]


# --------------------------------------------------------------------------- throttle on a fake clock


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_throttle_spaces_request_starts_and_backs_off() -> None:
    fake = FakeTime()

    async def run() -> list[float]:
        throttle = HostThrottle(
            concurrency=1,
            delay_s=1.0,
            backoff_floor_s=0.5,
            global_slots=asyncio.Semaphore(4),
            clock=fake.clock,
            sleep=fake.sleep,
        )
        starts: list[float] = []

        async def one() -> None:
            async with throttle.slot():
                starts.append(fake.now)

        await asyncio.gather(*(one() for _ in range(3)))
        throttle.slow_down()
        assert throttle.delay_s == 2.0
        await one()
        throttle.recover()
        assert throttle.delay_s == 1.5
        throttle.defer(10.0)
        await one()
        throttle.raise_base_delay(120.0)  # Crawl-delay is capped
        assert throttle.base_delay_s == 60.0
        stats = throttle.stats()
        assert stats["requests"] == 5.0 and stats["backoffs"] == 1.0
        return starts

    starts = asyncio.run(run())
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps == [1.0, 1.0, 2.0, 10.0]


@pytest.mark.parametrize("url", ["http://localhost/", "http://LOCALHOST.:8080/x", "http://api.localhost/"])
def test_localhost_names_are_loopback_unless_allowed(url: str) -> None:
    with pytest.raises(BlockedURL) as caught:
        check_url(url, NOTHING, hint=HINT)
    assert caught.value.code == "blocked_address" and "loopback name" in str(caught.value)
    check_url(url, AllowList.from_strings(("localhost", "api.localhost")), hint=HINT)
