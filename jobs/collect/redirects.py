"""The redirect walk: one URL and every redirect hop, each checked before anything is sent to it.

For the URL and then each Location followed (at most ``max_redirects``; a URL seen twice is a loop):

1. ``check_url``: http(s) only, no internal IP literals (``cluster.ground.address_guard``);
2. the robots.txt check, when the caller gives one (the fetcher's: ``jobs.collect.results.robots_refusal``
   on its cached rules);
3. the request itself (the caller's: throttled, retried and settled).

A refusal on a hop keeps the status of the redirect that led there. No I/O of its own: both checks that
need the network are the caller's coroutines.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from yarl import URL

from cluster.ground.address_guard import AllowList, check_url
from cluster.ground.errors import BlockedURL
from jobs.collect.errors import FetchErrorCode
from jobs.collect.fetch_types import ALLOW_HINT, Exchange, Outcome

#: Statuses followed as redirects (with a Location header).
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

#: Sends one request to a checked URL: what came of it after retries.
Send = Callable[[URL], Awaitable[Exchange]]
#: The robots.txt refusal of a URL, or None when it may be fetched.
RobotsCheck = Callable[[URL], Awaitable[Exchange | None]]


async def follow(
    url: str, *, send: Send, allow: AllowList, max_redirects: int, robots: RobotsCheck | None = None
) -> Outcome:
    """Follow ``url``'s redirects by hand; every failure ends the walk with the exchange that names it."""
    redirects: list[str] = []
    seen: set[str] = set()
    current = url
    last_status: int | None = None  # of the redirect that led here: a refused hop keeps it
    for hop in range(max_redirects + 1):
        try:
            check_url(current, allow, hint=ALLOW_HINT)
            target = URL(current.strip())
        except BlockedURL as exc:
            refused = Exchange(
                status=last_status, error=FetchErrorCode(exc.code), detail=str(exc), attempts=0
            )
            return Outcome(current, refused, tuple(redirects))
        seen.add(str(target.with_fragment(None)))
        if robots is not None:
            refusal = await robots(target)
            if refusal is not None:
                return Outcome(current, replace(refusal, status=last_status), tuple(redirects))
        exchange = await send(target)
        if exchange.error is not None or exchange.status not in REDIRECT_STATUSES:
            return Outcome(current, exchange, tuple(redirects))
        following = _next_hop(current, target, exchange)
        if isinstance(following, Exchange):
            return Outcome(current, following, tuple(redirects))
        if following in seen:
            looped = exchange.failed(
                FetchErrorCode.REDIRECT_LOOP,
                f"redirect loop: {current} sends back to {following}, already visited in "
                f"{' -> '.join([url, *redirects])}; the site is misconfigured",
            )
            return Outcome(current, looped, tuple(redirects))
        if hop == max_redirects:
            too_many = exchange.failed(
                FetchErrorCode.TOO_MANY_REDIRECTS,
                f"more than {max_redirects} redirects from {url} (next: {following}); "
                "fetch the final URL directly or raise max_redirects",
            )
            return Outcome(current, too_many, tuple(redirects))
        redirects.append(following)
        current = following
        last_status = exchange.status
    raise AssertionError("unreachable: the loop returns on its last hop")  # pragma: no cover


def _next_hop(current: str, target: URL, exchange: Exchange) -> str | Exchange:
    """The absolute URL a redirect of ``current`` points to (fragment dropped), or the exchange naming why
    it points nowhere."""
    location = exchange.headers.get("Location")
    if not location:
        return exchange.failed(
            FetchErrorCode.HTTP_ERROR, f"{current} answered HTTP {exchange.status} without a Location header"
        )
    try:
        return str(target.join(URL(location.strip())).with_fragment(None))
    except (ValueError, TypeError) as exc:
        return exchange.failed(
            FetchErrorCode.INVALID_URL, f"{current} redirects to an invalid URL {location!r} ({exc})"
        )
