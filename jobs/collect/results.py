"""How a fetch's answers become a ``FetchResult`` and its error code. Pure: no I/O, no clock.

* ``settle``: the last attempt of one URL, named (429 -> "rate_limited", other error statuses ->
  "http_error", a Retry-After too long to wait for -> "rate_limited");
* ``robots_refusal``: robots.txt rules that refuse a URL, as an exchange that never reached the network;
* ``build_result``: the end of a redirect chain -> ``FetchResult``: the content type checked against the
  request's kind, a gzip sitemap unpacked under the cap, the text decoded from the header's charset or
  a detected one (``jobs.collect.content``).

Every error detail says what failed and what to do next.
"""

from __future__ import annotations

import logging
from datetime import datetime
from http import HTTPStatus

from yarl import URL

from jobs.collect.content import (
    ACCEPTED_TYPES,
    GZIP_TYPES,
    BodyTooLarge,
    accepts,
    decode_body,
    gunzip_capped,
    parse_content_type,
)
from jobs.collect.errors import FetchErrorCode
from jobs.collect.fetch_types import Exchange, FetchRequest, FetchResult, Outcome
from jobs.collect.retry import TRANSIENT_STATUSES
from jobs.collect.robots import RobotsRules, product_token

logger = logging.getLogger(__name__)


def reason(status: int) -> str:
    """``404`` -> ``"404 Not Found"``; an unregistered status stays a number."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def settle(url: URL | str, exchange: Exchange, *, max_retry_after_s: float) -> Exchange:
    """Name the failure of a URL's last attempt; an answer below 400 without an error stays as it is."""
    status = exchange.status
    wait = exchange.retry_after_s
    if exchange.error is None and wait is not None and wait > max_retry_after_s:
        logger.info("rate limited", extra={"url": str(url), "retry_after_s": wait})
        return exchange.failed(
            FetchErrorCode.RATE_LIMITED,
            f"{url} answered HTTP {status} with Retry-After {wait:.0f} s, above the "
            f"{max_retry_after_s:.0f} s max_retry_after_s; fetch it again in a later run",
        )
    if exchange.error is not None:
        if exchange.attempts > 1 and exchange.detail is not None:
            return exchange.failed(exchange.error, f"{exchange.detail} (after {exchange.attempts} attempts)")
        return exchange
    if status is None or status < 400:
        return exchange
    tries = f" after {exchange.attempts} attempts" if exchange.attempts > 1 else ""
    if status == 429:
        return exchange.failed(
            FetchErrorCode.RATE_LIMITED,
            f"{url} kept answering HTTP 429 Too Many Requests{tries}; fetch it again later",
        )
    if status in TRANSIENT_STATUSES:
        return exchange.failed(
            FetchErrorCode.HTTP_ERROR,
            f"{url} answered HTTP {reason(status)}{tries}; the site may be down, retry later",
        )
    return exchange.failed(
        FetchErrorCode.HTTP_ERROR,
        f"{url} answered HTTP {reason(status)}; check the URL or drop it from the source",
    )


def robots_refusal(rules: RobotsRules, target: URL, user_agent: str) -> Exchange | None:
    """The refusal of ``target`` by its host's robots.txt rules, or None when it may be fetched."""
    if rules.host_error is not None:
        return Exchange(error=rules.host_error, detail=f"cannot fetch {target}: {rules.reason}", attempts=0)
    if rules.disallow_all:
        return Exchange(
            error=FetchErrorCode.ROBOTS_UNAVAILABLE,
            detail=(
                f"robots.txt at {rules.url} is {rules.reason}; RFC 9309 says to treat the site as fully "
                "disallowed: retry in a later run"
            ),
            attempts=0,
        )
    if not rules.can_fetch(str(target), user_agent):
        return Exchange(
            error=FetchErrorCode.ROBOTS_DISALLOWED,
            detail=(
                f"robots.txt at {rules.url} disallows {target} for {product_token(user_agent)}; "
                "the URL is skipped (drop it from the source)"
            ),
            attempts=0,
        )
    return None


def build_result(
    request: FetchRequest, outcome: Outcome, *, max_bytes: int, elapsed_s: float, fetched_at: datetime
) -> FetchResult:
    """The result of a fetch whose redirect chain ended in ``outcome``; the body is kept only on success."""
    exchange = outcome.exchange
    headers = exchange.headers
    media_type, header_charset = parse_content_type(headers.get("Content-Type"))
    body, text, charset = b"", None, None
    error, detail = check_answer(request, outcome, media_type)
    if error is None and exchange.status != 304:
        body = exchange.body
        if request.kind == "sitemap" and (media_type in GZIP_TYPES or body[:2] == b"\x1f\x8b"):
            try:
                body = gunzip_capped(body, max_bytes)
            except BodyTooLarge:
                error = FetchErrorCode.TOO_LARGE
                detail = (
                    f"the gzip sitemap {outcome.final_url} decompresses to more than the {max_bytes}-byte "
                    "cap; raise max_bytes or split the sitemap"
                )
            except ValueError as exc:
                error = FetchErrorCode.DECODE_ERROR
                detail = f"the gzip sitemap {outcome.final_url} is unreadable: {exc}"
        if error is None:
            text, charset = decode_body(body, header_charset)
            if text is None:
                error = FetchErrorCode.DECODE_ERROR
                detail = (
                    f"the body of {outcome.final_url} ({len(body)} bytes, {media_type}) declares no "
                    "charset and is not text in any detectable encoding; it is skipped"
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
        etag=headers.get("ETag"),
        last_modified=headers.get("Last-Modified"),
        redirects=outcome.redirects,
        attempts=exchange.attempts,
        elapsed_s=elapsed_s,
        fetched_at=fetched_at,
        error=error,
        error_detail=detail,
        retry_after_s=exchange.retry_after_s,
    )


def check_answer(
    request: FetchRequest, outcome: Outcome, media_type: str | None
) -> tuple[FetchErrorCode | None, str | None]:
    """The error of a chain's final answer: its own, a status that is not 2xx or 304, or (for 2xx) a
    content type the request's kind does not accept."""
    exchange = outcome.exchange
    status = exchange.status
    if exchange.error is not None:
        return exchange.error, exchange.detail
    if status == 304:
        return None, None
    if status is None or not 200 <= status < 300:
        shown = "no status" if status is None else reason(status)
        return FetchErrorCode.HTTP_ERROR, (
            f"{outcome.final_url} answered HTTP {shown}; check the URL or drop it from the source"
        )
    if not accepts(request.kind, media_type, exchange.body):
        expected = ", ".join(sorted(ACCEPTED_TYPES.get(request.kind, frozenset())))
        return FetchErrorCode.BAD_CONTENT_TYPE, (
            f"{outcome.final_url} is {media_type or 'of no declared type'}, not a {request.kind} "
            f"(expected {expected}); drop it from the source or register it as the right kind"
        )
    return None, None
