"""The fetcher's seam to the network: one GET, redirects not followed, as httpx's ``BaseTransport``.

``Transport.send`` is the only call the fetcher makes to the network. It never raises for a network or
HTTP problem: a failure is a ``RawResponse`` whose ``error`` says what went wrong. The production transport
is ``jobs.collect.aiohttp_transport.AiohttpTransport`` (the only aiohttp code of the collector); a test
passes its own class with a ``send`` method to ``Fetcher(transport=...)``, as with httpx's ``MockTransport``.
No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from jobs.collect.errors import FetchErrorCode
from jobs.collect.fetch_types import NO_HEADERS


@dataclass(frozen=True)
class TransportRequest:
    """One GET. The transport adds its own User-Agent and Accept-Encoding to ``headers``."""

    url: URL
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Body cap after decompression; a longer body is "too_large" unless ``truncate``.
    max_bytes: int = 10 * 1024 * 1024
    #: Keep the first ``max_bytes`` of a longer body instead of failing (robots.txt).
    truncate: bool = False
    #: Called when the request's headers have left (the host throttle counts its gap from there).
    on_sent: Callable[[], None] | None = None


@dataclass(frozen=True)
class RawResponse:
    """The answer to one GET, or the error that stood in its way.

    The body is read for 2xx answers only (other statuses carry none). ``headers`` are case-insensitive;
    a plain mapping (a test's dict) is converted. ``permanent`` marks an error not worth retrying (a TLS
    certificate refused).
    """

    status: int | None = None
    headers: CIMultiDictProxy[str] = field(default_factory=lambda: NO_HEADERS)
    body: bytes = b""
    error: FetchErrorCode | None = None
    detail: str | None = None
    permanent: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.headers, CIMultiDictProxy):
            object.__setattr__(self, "headers", CIMultiDictProxy(CIMultiDict(self.headers)))


class Transport(Protocol):
    """Sends one GET (redirects not followed) and reads at most ``request.max_bytes`` of a 2xx body."""

    async def send(self, request: TransportRequest) -> RawResponse: ...
