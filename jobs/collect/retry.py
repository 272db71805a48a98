"""Retries of one URL, with tenacity: which answers get another attempt, how long before it, when to stop.

* Retried: timeouts and connection errors (not a refused TLS certificate), HTTP 429, 500, 502, 503 and
  504; at most ``max_retries`` times (``max_retries + 1`` attempts).
* The wait: the server's Retry-After when a 429/503 carried one, else exponential backoff with full
  jitter, ``uniform(0, min(backoff_max_s, backoff_base_s * 2 ** retry))`` (AWS "Full Jitter", tenacity's
  ``wait_random_exponential``, drawn here from an injected ``random.Random`` so tests are reproducible).
* A Retry-After above ``max_retry_after_s`` is not waited for: the loop stops at once and the result
  builder names it "rate_limited".

The retry loop does not sleep itself: ``pause(seconds)`` is the caller's, and the fetcher's defers the
host's next request start (``HostThrottle.defer``), so the wait is also a wait for every other request to
that host. No I/O here.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_base, wait_exponential

from jobs.collect.errors import FetchErrorCode
from jobs.collect.fetch_types import Exchange, FetchPolicy
from jobs.collect.transport import RawResponse

logger = logging.getLogger(__name__)

#: Statuses worth another attempt.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Statuses that slow the host down (its delay doubles) and may carry Retry-After.
SLOW_DOWN_STATUSES = frozenset({429, 503})
#: Error codes of one attempt worth another attempt.
TRANSIENT_ERRORS = frozenset({FetchErrorCode.TIMEOUT, FetchErrorCode.CONNECTION_ERROR})


@dataclass(frozen=True)
class Attempt:
    """One try: the transport's answer and the Retry-After it carried, in seconds (429/503 only)."""

    response: RawResponse
    retry_after_s: float | None = None


def worth_retrying(response: RawResponse) -> bool:
    if response.error is not None:
        return response.error in TRANSIENT_ERRORS and not response.permanent
    return response.status in TRANSIENT_STATUSES


class WaitFullJitter(wait_exponential):
    """tenacity's ``wait_random_exponential`` drawing from ``rng``: tenacity's own draws from the
    ``random`` module, which a test could only make reproducible by seeding the global state."""

    def __init__(self, *, base_s: float, max_s: float, rng: random.Random) -> None:
        super().__init__(multiplier=base_s, max=max_s)
        self.rng = rng

    def __call__(self, retry_state: RetryCallState) -> float:
        return self.rng.uniform(0.0, super().__call__(retry_state))


def _last(retry_state: RetryCallState) -> Attempt:
    assert retry_state.outcome is not None
    attempt: Attempt = retry_state.outcome.result()
    return attempt


class WaitRetryAfter(wait_base):
    """The Retry-After of the last answer when it carried one, else ``otherwise``."""

    def __init__(self, otherwise: wait_base) -> None:
        self.otherwise = otherwise

    def __call__(self, retry_state: RetryCallState) -> float:
        asked = _last(retry_state).retry_after_s
        return asked if asked is not None else self.otherwise(retry_state)


class StopRetryAfterAbove(stop_base):
    """Stop when the last answer asked to wait longer than ``limit_s``."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s

    def __call__(self, retry_state: RetryCallState) -> bool:
        asked = _last(retry_state).retry_after_s
        return asked is not None and asked > self.limit_s


class RetryPolicy:
    """The retry rules of a ``FetchPolicy``; ``run`` drives one URL's attempts."""

    def __init__(
        self,
        *,
        max_retries: int,
        backoff_base_s: float,
        backoff_max_s: float,
        max_retry_after_s: float,
        rng: random.Random | None = None,
    ) -> None:
        self.max_retries = max_retries
        self.max_retry_after_s = max_retry_after_s
        self.backoff = WaitFullJitter(base_s=backoff_base_s, max_s=backoff_max_s, rng=rng or random.Random())

    @classmethod
    def of(cls, policy: FetchPolicy, *, rng: random.Random | None = None) -> RetryPolicy:
        return cls(
            max_retries=policy.max_retries,
            backoff_base_s=policy.backoff_base_s,
            backoff_max_s=policy.backoff_max_s,
            max_retry_after_s=policy.max_retry_after_s,
            rng=rng,
        )

    async def run(
        self,
        attempt: Callable[[], Awaitable[Attempt]],
        *,
        pause: Callable[[float], Awaitable[None]],
        url: str = "",
    ) -> Exchange:
        """Call ``attempt`` until its answer is final, calling ``pause`` before each retry; the last
        answer comes back as an ``Exchange`` counting the attempts. Exceptions of ``attempt`` propagate."""
        tries = 0

        async def counted() -> Attempt:
            nonlocal tries
            tries += 1
            return await attempt()

        def log_retry(retry_state: RetryCallState) -> None:
            response = _last(retry_state).response
            logger.info(
                "retrying",
                extra={
                    "url": url,
                    "attempt": retry_state.attempt_number,
                    "status": response.status,
                    "error": response.error,
                    "wait_s": round(retry_state.upcoming_sleep, 3),
                },
            )

        retrying = AsyncRetrying(
            sleep=pause,
            retry=retry_if_result(lambda tried: worth_retrying(tried.response)),
            wait=WaitRetryAfter(self.backoff),
            stop=stop_after_attempt(self.max_retries + 1) | StopRetryAfterAbove(self.max_retry_after_s),
            before_sleep=log_retry,
            retry_error_callback=_last,  # out of attempts: the last answer is the result
        )
        last: Attempt = await retrying(counted)
        response = last.response
        return Exchange(
            status=response.status,
            headers=response.headers,
            body=response.body,
            error=response.error,
            detail=response.detail,
            retry_after_s=last.retry_after_s,
            attempts=tries,
        )
