"""The pure result builder (jobs.collect.results) and the fetch error codes: answers in, a FetchResult or
an error code out. No network."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from protego import Protego
from yarl import URL

from jobs.collect.errors import FetchErrorCode
from jobs.collect.fetch import ERROR_CODES
from jobs.collect.fetch_types import Exchange, FetchKind, FetchRequest, FetchResult, Outcome
from jobs.collect.results import build_result, reason, robots_refusal, settle
from jobs.collect.robots import RobotsRules

URL_A = "http://news.test/a"
AT = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
UA = "PulseBot/0.1 (+https://example.invalid)"


def headers(**values: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in values.items()}))


def answer(
    status: int | None = 200,
    body: bytes = b"",
    *,
    kind: FetchKind = "page",
    redirects: tuple[str, ...] = (),
    **exchange: Any,
) -> tuple[FetchRequest, Outcome]:
    """A request for ``URL_A`` and the end of its redirect chain: one answer with ``exchange``'s fields."""
    final = redirects[-1] if redirects else URL_A
    return FetchRequest(URL_A, kind=kind), Outcome(
        final, Exchange(status=status, body=body, **exchange), redirects
    )


def build(request: FetchRequest, outcome: Outcome, max_bytes: int = 1_000_000) -> FetchResult:
    return build_result(request, outcome, max_bytes=max_bytes, elapsed_s=0.25, fetched_at=AT)


# --------------------------------------------------------------------------- the codes


def test_error_code_values_never_change() -> None:
    """Stored in crawl_urls.error and the raw log, shown to users: a renamed value breaks both."""
    assert {code.value for code in FetchErrorCode} == {
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
        "file_error",
    }
    assert set(ERROR_CODES) == set(FetchErrorCode)
    assert FetchErrorCode.TIMEOUT == "timeout" and f"{FetchErrorCode.TIMEOUT}" == "timeout"


# --------------------------------------------------------------------------- build_result


def test_a_page_is_decoded_with_its_header_charset() -> None:
    body = "<html><body><p>Crème brûlée</p></body></html>".encode("latin-1")
    request, outcome = answer(
        200,
        body,
        headers=headers(Content_Type="text/html; charset=ISO-8859-1", ETag='"v1"', Last_Modified="yesterday"),
        attempts=2,
        retry_after_s=1.0,
    )
    result = build(request, outcome)
    assert result.ok and result.error is None and result.error_detail is None
    assert result.content_type == "text/html" and result.charset == "iso8859-1"
    assert result.text is not None and "Crème brûlée" in result.text and result.body == body
    assert result.etag == '"v1"' and result.last_modified == "yesterday"
    assert result.attempts == 2 and result.retry_after_s == 1.0
    assert result.elapsed_s == 0.25 and result.fetched_at == AT and result.url == URL_A


def test_not_modified_keeps_no_body() -> None:
    result = build(*answer(304, b"ignored"))
    assert result.not_modified and not result.ok and result.error is None
    assert result.body == b"" and result.text is None


@pytest.mark.parametrize("status", [404, 410, 500, None])
def test_a_final_status_that_is_not_2xx_is_an_http_error(status: int | None) -> None:
    result = build(*answer(status, b"<html>oops</html>", headers=headers(Content_Type="text/html")))
    assert result.error == FetchErrorCode.HTTP_ERROR and result.body == b"" and result.text is None
    assert result.error_detail is not None and "drop it from the source" in result.error_detail
    assert (reason(status) if status else "no status") in result.error_detail


@pytest.mark.parametrize(
    ("kind", "content_type", "body"),
    [
        ("page", "image/png", b"\x89PNG\r\n"),
        ("page", "application/json", b'{"a": 1}'),
        ("feed", "text/html", b"<html><body>a page</body></html>"),
        ("sitemap", "text/html", b"<html><body>a page</body></html>"),
    ],
)
def test_a_type_the_kind_does_not_accept_is_refused(kind: FetchKind, content_type: str, body: bytes) -> None:
    result = build(*answer(200, body, kind=kind, headers=headers(Content_Type=content_type)))
    assert result.error == FetchErrorCode.BAD_CONTENT_TYPE and result.body == b""
    assert result.content_type == content_type
    assert (
        result.error_detail is not None
        and content_type in result.error_detail
        and kind in result.error_detail
    )


def test_gzip_sitemaps_are_unpacked_under_the_cap() -> None:
    xml = b'<?xml version="1.0"?><urlset><url><loc>http://news.test/a</loc></url></urlset>'
    packed = gzip.compress(xml)
    result = build(*answer(200, packed, kind="sitemap", headers=headers(Content_Type="application/gzip")))
    assert result.ok and result.body == xml and result.text is not None and result.text.startswith("<?xml")

    bomb = gzip.compress(b"<" + b" " * 10_000 + b">")
    too_big = build(
        *answer(200, bomb, kind="sitemap", headers=headers(Content_Type="application/gzip")), 1000
    )
    assert too_big.error == FetchErrorCode.TOO_LARGE and too_big.body == b""
    assert too_big.error_detail is not None and "1000-byte" in too_big.error_detail

    broken = build(
        *answer(200, b"\x1f\x8bnot gzip", kind="sitemap", headers=headers(Content_Type="text/xml"))
    )
    assert broken.error == FetchErrorCode.DECODE_ERROR and broken.body == b""


def test_a_body_in_no_detectable_charset_is_a_decode_error() -> None:
    body = bytes(range(256)) * 8
    result = build(*answer(200, body, kind="sitemap", headers=headers(Content_Type="text/plain")))
    assert result.error == FetchErrorCode.DECODE_ERROR and result.body == b"" and result.text is None


def test_an_exchange_error_and_the_redirects_are_kept() -> None:
    hops = ("http://news.test/b", "http://news.test/c")
    request, outcome = answer(
        302, redirects=hops, error=FetchErrorCode.REDIRECT_LOOP, detail="loop", attempts=1
    )
    result = build(request, outcome)
    assert result.error == FetchErrorCode.REDIRECT_LOOP and result.error_detail == "loop"
    assert result.redirects == hops and result.final_url == hops[-1] and result.status == 302


# --------------------------------------------------------------------------- settle


def test_settle_names_the_last_status() -> None:
    url = URL(URL_A)
    limited = settle(url, Exchange(status=429, attempts=3), max_retry_after_s=60)
    assert limited.error == FetchErrorCode.RATE_LIMITED
    assert limited.detail is not None and "after 3 attempts" in limited.detail
    down = settle(url, Exchange(status=503, attempts=3), max_retry_after_s=60)
    assert down.error == FetchErrorCode.HTTP_ERROR and down.detail is not None
    assert "503 Service Unavailable after 3 attempts" in down.detail and "retry later" in down.detail
    gone = settle(url, Exchange(status=404), max_retry_after_s=60)
    assert (
        gone.error == FetchErrorCode.HTTP_ERROR and gone.detail is not None and "404 Not Found" in gone.detail
    )
    for fine in (200, 301, 304):
        assert settle(url, Exchange(status=fine), max_retry_after_s=60) == Exchange(status=fine)


def test_settle_refuses_to_wait_for_a_long_retry_after() -> None:
    settled = settle(URL_A, Exchange(status=429, retry_after_s=3600.0), max_retry_after_s=60)
    assert settled.error == FetchErrorCode.RATE_LIMITED and settled.retry_after_s == 3600.0
    assert settled.detail is not None and "Retry-After 3600 s" in settled.detail
    waited = settle(URL_A, Exchange(status=200, retry_after_s=30.0), max_retry_after_s=60)
    assert waited.error is None


def test_settle_counts_the_attempts_of_an_error() -> None:
    timeout = Exchange(error=FetchErrorCode.TIMEOUT, detail="slow", attempts=3)
    assert settle(URL_A, timeout, max_retry_after_s=60).detail == "slow (after 3 attempts)"
    once = Exchange(error=FetchErrorCode.TIMEOUT, detail="slow", attempts=1)
    assert settle(URL_A, once, max_retry_after_s=60) == once


# --------------------------------------------------------------------------- robots_refusal


def test_robots_refusals() -> None:
    target = URL("http://news.test/private/x")
    parser = Protego.parse("User-agent: *\nDisallow: /private/\n")
    parsed = RobotsRules(url="http://news.test/robots.txt", reason="parsed (HTTP 200)", parser=parser)
    refused = robots_refusal(parsed, target, UA)
    assert refused is not None and refused.error == FetchErrorCode.ROBOTS_DISALLOWED and refused.attempts == 0
    assert refused.detail is not None and "PulseBot" in refused.detail
    assert robots_refusal(parsed, URL("http://news.test/news/y"), UA) is None

    down = RobotsRules(url="http://news.test/robots.txt", reason="unreachable (HTTP 503)", disallow_all=True)
    unavailable = robots_refusal(down, target, UA)
    assert unavailable is not None and unavailable.error == FetchErrorCode.ROBOTS_UNAVAILABLE

    nowhere = RobotsRules(
        url="http://news.test/robots.txt",
        reason="unreachable (no such host)",
        disallow_all=True,
        host_error=FetchErrorCode.DNS_ERROR,
    )
    host = robots_refusal(nowhere, target, UA)
    assert host is not None and host.error == FetchErrorCode.DNS_ERROR and host.attempts == 0
