"""robots.txt rules per host, fetched once and kept for the fetcher's lifetime (RFC 9309, parsed by protego).

The cache does no I/O itself: it is given a ``load(robots_url) -> RobotsFile`` coroutine, which the fetcher
implements with its own safe path (same session, same address checks, same throttle and byte cap). How a
response becomes rules is the pure ``rules_from_file``:

* 2xx: parse the body (the first ``ROBOTS_MAX_BYTES`` at least, as RFC 9309 2.5 asks);
* 4xx other than 429, or a redirect chain that is too long or loops: "unavailable", everything allowed;
* 429, 5xx, network errors, refused addresses: "unreachable", everything disallowed for this run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from protego import Protego
from yarl import URL

from jobs.collect.errors import FetchErrorCode

logger = logging.getLogger(__name__)

#: How much of a robots.txt is read and parsed (RFC 9309 asks for at least 500 KiB).
ROBOTS_MAX_BYTES = 512 * 1024
#: Fetch error codes after which robots.txt counts as unavailable (allow all), RFC 9309 2.3.1.2.
UNAVAILABLE_ERRORS = frozenset({FetchErrorCode.TOO_MANY_REDIRECTS, FetchErrorCode.REDIRECT_LOOP})
#: Fetch error codes that still come with a final status, which decides (HTTP 404 is "unavailable").
STATUS_ERRORS = frozenset({None, FetchErrorCode.HTTP_ERROR, FetchErrorCode.RATE_LIMITED})
#: Fetch error codes that say the host itself cannot be fetched from.
HOST_ERRORS = frozenset({FetchErrorCode.BLOCKED_ADDRESS, FetchErrorCode.DNS_ERROR})


@dataclass(frozen=True)
class RobotsFile:
    """What fetching a robots.txt gave: a final status and body, or a fetch error code."""

    url: str
    status: int | None
    body: bytes = b""
    error: FetchErrorCode | None = None
    detail: str | None = None
    redirects: tuple[str, ...] = ()


@dataclass(frozen=True)
class RobotsRules:
    """The rules of one host. Exactly one of ``allow_all``, ``disallow_all`` or ``parser`` applies."""

    url: str
    reason: str
    allow_all: bool = False
    disallow_all: bool = False
    parser: Protego | None = None
    #: Set when robots.txt failed for a reason that fails every URL of the host ("blocked_address",
    #: "dns_error") on its own URL, not after a redirect: callers report that instead of robots trouble.
    host_error: FetchErrorCode | None = None

    def can_fetch(self, url: str, user_agent: str) -> bool:
        if self.disallow_all:
            return False
        if self.parser is None:
            return True
        return bool(self.parser.can_fetch(url, product_token(user_agent)))

    def crawl_delay(self, user_agent: str) -> float | None:
        if self.parser is None:
            return None
        delay = self.parser.crawl_delay(product_token(user_agent))
        return None if delay is None else float(delay)


def product_token(user_agent: str) -> str:
    """``"PulseBot/0.1 (+https://...)"`` -> ``"PulseBot"``: what robots.txt groups are matched against."""
    first = user_agent.strip().split(maxsplit=1)[0] if user_agent.strip() else user_agent
    return first.split("/", 1)[0] or user_agent


def robots_url(url: str | URL) -> str:
    """The robots.txt URL governing ``url`` (same scheme, host and port)."""
    parsed = url if isinstance(url, URL) else URL(url)
    return str(parsed.origin().with_path("/robots.txt"))


def rules_from_file(file: RobotsFile) -> RobotsRules:
    status = file.status
    answered = status is not None and file.error in STATUS_ERRORS
    if answered and status is not None and 200 <= status < 300:
        text = file.body.decode("utf-8", errors="replace").lstrip("\ufeff")
        return RobotsRules(url=file.url, reason=f"parsed (HTTP {status})", parser=Protego.parse(text))
    if answered and status is not None and 400 <= status < 500 and status != 429:
        return RobotsRules(url=file.url, reason=f"unavailable (HTTP {status})", allow_all=True)
    if file.error in UNAVAILABLE_ERRORS:
        return RobotsRules(url=file.url, reason=f"unavailable ({file.error})", allow_all=True)
    if answered:
        why = f"HTTP {status}"
    elif file.error is not None:
        why = file.detail or file.error
    else:
        why = "no response"
    host_error = file.error if file.error in HOST_ERRORS and not file.redirects else None
    return RobotsRules(url=file.url, reason=f"unreachable ({why})", disallow_all=True, host_error=host_error)


class RobotsCache:
    """Rules per robots.txt URL, loaded once each; concurrent callers for one host share the load."""

    def __init__(self, load: Callable[[str], Awaitable[RobotsFile]]) -> None:
        self._load = load
        self._rules: dict[str, RobotsRules] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def rules_for(self, url: str | URL) -> RobotsRules:
        key = robots_url(url)
        cached = self._rules.get(key)
        if cached is not None:
            return cached
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._rules.get(key)
            if cached is not None:
                return cached
            rules = rules_from_file(await self._load(key))
            self._rules[key] = rules
            self._locks.pop(key, None)
        if rules.disallow_all:
            logger.warning("robots.txt unreachable", extra={"robots_url": key, "reason": rules.reason})
        else:
            logger.debug("robots.txt loaded", extra={"robots_url": key, "reason": rules.reason})
        return rules

    def cached(self) -> dict[str, RobotsRules]:
        return dict(self._rules)
