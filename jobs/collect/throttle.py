"""Per-host politeness: ``HostThrottle`` and the Retry-After rule (no network).

The backoff between retries is ``jobs.collect.retry`` (tenacity); it waits through ``HostThrottle.defer``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

#: Upper bound of a host's delay between request starts, whatever backoff or Crawl-delay ask for.
MAX_HOST_DELAY_S = 60.0


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class HostThrottle:
    """Politeness for one ``scheme://host:port``: concurrency slots and a minimum gap between starts."""

    def __init__(
        self,
        *,
        concurrency: int,
        delay_s: float,
        backoff_floor_s: float,
        global_slots: asyncio.Semaphore,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[object]],
    ) -> None:
        self.base_delay_s = delay_s
        self.delay_s = delay_s
        self.requests = 0
        self.backoffs = 0
        self._floor = backoff_floor_s
        self._slots = asyncio.Semaphore(concurrency)
        self._global = global_slots
        self._turn = asyncio.Lock()
        self._clock = clock
        self._sleep = sleep
        self._last_start: float | None = None
        self._not_before = float("-inf")

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a host slot and a global slot, starting no sooner than the host's delay allows.

        The start is marked again when the request's headers are sent (``mark_sent``, from a trace hook), so
        the gap the server sees between two requests is at least the delay even when connecting is slow.
        """
        async with self._slots:
            async with self._turn:
                while True:
                    now = self._clock()
                    start = self._not_before
                    if self._last_start is not None:
                        start = max(start, self._last_start + self.delay_s)
                    if start <= now:
                        break
                    await self._sleep(start - now)
                    if self._clock() <= now:  # a clock that does not move with sleep (tests)
                        break
                await self._global.acquire()
                self._last_start = max(self._clock(), start)
                self.requests += 1
            try:
                yield
            finally:
                self._global.release()

    def mark_sent(self) -> None:
        """The request's headers left now: count the gap from here, so connecting does not eat into it."""
        now = self._clock()
        if self._last_start is None or now > self._last_start:
            self._last_start = now

    def raise_base_delay(self, delay_s: float) -> None:
        """Crawl-delay: never go faster than ``delay_s`` (capped at ``MAX_HOST_DELAY_S``)."""
        delay_s = min(MAX_HOST_DELAY_S, delay_s)
        if delay_s > self.base_delay_s:
            self.base_delay_s = delay_s
            self.delay_s = max(self.delay_s, delay_s)

    def slow_down(self) -> None:
        """429/503: double the delay between starts."""
        self.backoffs += 1
        self.delay_s = min(MAX_HOST_DELAY_S, max(self.delay_s * 2, self._floor, self.base_delay_s))

    def recover(self) -> None:
        """A success: halve the distance back to the base delay."""
        if self.delay_s > self.base_delay_s:
            self.delay_s = max(self.base_delay_s, (self.delay_s + self.base_delay_s) / 2)

    def defer(self, seconds: float) -> None:
        """No request to this host before ``seconds`` from now (Retry-After, backoff)."""
        self._not_before = max(self._not_before, self._clock() + seconds)

    def stats(self) -> dict[str, float]:
        return {
            "requests": float(self.requests),
            "delay_s": self.delay_s,
            "base_delay_s": self.base_delay_s,
            "backoffs": float(self.backoffs),
        }
