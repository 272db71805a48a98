"""The production ``Transport``: one aiohttp session, the address guard at connect time, capped bodies.

The only aiohttp code of the collector. ``AiohttpTransport`` is an async context manager owning one
``aiohttp.ClientSession``:

* its resolver is wrapped by ``SafeResolver``, so a name that resolves to an internal address is refused
  at connect time (``blocked_address``); no proxy from the environment, no cookies;
* each ``send`` is one GET, ``allow_redirects=False``, under ``total_timeout_s`` (connecting under
  ``connect_timeout_s``); the request's ``on_sent`` runs when its headers leave (a trace hook);
* a 2xx body is read in chunks after decompression and cut at ``max_bytes`` (``too_large`` unless the
  request asks to ``truncate``); a declared Content-Length over the cap is refused before reading;
* every aiohttp and socket error becomes a ``RawResponse`` with its fetch error code.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace, TracebackType

import aiohttp
from aiohttp.abc import AbstractResolver

from cluster.ground.address_guard import AllowList, SafeResolver
from cluster.ground.errors import BlockedAddress
from jobs.collect.errors import FetchErrorCode
from jobs.collect.fetch_types import ALLOW_HINT
from jobs.collect.transport import RawResponse, TransportRequest

#: Bytes asked of the decoded body stream at a time.
CHUNK_BYTES = 64 * 1024


async def _mark_sent(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestHeadersSentParams
) -> None:
    on_sent = context.trace_request_ctx
    if callable(on_sent):
        on_sent()


class AiohttpTransport:
    """``Transport`` over one aiohttp session; use it as an async context manager.

    ``resolver`` is the inner DNS resolver (default: aiohttp's ``ThreadedResolver``), always wrapped by
    ``SafeResolver`` with ``allow``.
    """

    def __init__(
        self,
        *,
        user_agent: str,
        connect_timeout_s: float,
        total_timeout_s: float,
        allow: AllowList,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._user_agent = user_agent
        self._connect_timeout_s = connect_timeout_s
        self._total_timeout_s = total_timeout_s
        self._allow = allow
        self._inner_resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AiohttpTransport:
        connector = aiohttp.TCPConnector(
            resolver=SafeResolver(
                self._allow, self._inner_resolver or aiohttp.ThreadedResolver(), hint=ALLOW_HINT
            ),
            limit=0,  # the fetcher's throttles and global semaphore bound concurrency
            limit_per_host=0,
            ttl_dns_cache=300,
        )
        tracing = aiohttp.TraceConfig()
        tracing.on_request_headers_sent.append(_mark_sent)
        self._session = aiohttp.ClientSession(
            connector=connector,
            trace_configs=[tracing],
            timeout=aiohttp.ClientTimeout(total=None, connect=self._connect_timeout_s),
            headers={"User-Agent": self._user_agent, "Accept-Encoding": "gzip, deflate"},
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,  # a proxy from the environment would bypass the resolver's checks
            auto_decompress=True,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, request: TransportRequest) -> RawResponse:
        session = self._session
        assert session is not None, "use the AiohttpTransport as an async context manager"
        url = request.url
        try:
            async with asyncio.timeout(self._total_timeout_s):
                async with session.get(
                    url,
                    headers=dict(request.headers),
                    allow_redirects=False,
                    trace_request_ctx=request.on_sent,
                ) as response:
                    return await _read(response, request)
        except TimeoutError:
            return RawResponse(
                error=FetchErrorCode.TIMEOUT,
                detail=(
                    f"no complete response from {url} within {self._total_timeout_s:g} s "
                    f"(connect limit {self._connect_timeout_s:g} s); the site may be slow or down: "
                    "retry later or raise the timeouts"
                ),
            )
        except aiohttp.InvalidURL as exc:
            return RawResponse(
                error=FetchErrorCode.INVALID_URL,
                detail=f"aiohttp refused the URL {url} ({exc}); fix or drop it",
            )
        except aiohttp.ClientConnectorError as exc:
            cause = exc.os_error
            if isinstance(cause, BlockedAddress):
                return RawResponse(
                    error=FetchErrorCode.BLOCKED_ADDRESS, detail=f"refused {url} at connect time: {cause}"
                )
            if isinstance(exc, aiohttp.ClientConnectorDNSError):
                return RawResponse(
                    error=FetchErrorCode.DNS_ERROR,
                    detail=f"the host name of {url} did not resolve ({cause}); check the URL",
                )
            return RawResponse(
                error=FetchErrorCode.CONNECTION_ERROR,
                detail=f"could not connect to {url} ({type(exc).__name__}: {exc}); retry later",
                permanent=isinstance(exc, aiohttp.ClientSSLError),
            )
        except (aiohttp.ClientError, OSError) as exc:
            return RawResponse(
                error=FetchErrorCode.CONNECTION_ERROR,
                detail=f"the connection to {url} failed ({type(exc).__name__}: {exc}); retry later",
            )


async def _read(response: aiohttp.ClientResponse, request: TransportRequest) -> RawResponse:
    """The status and headers, and for a 2xx answer the body up to the request's cap."""
    status, headers = response.status, response.headers
    if not 200 <= status < 300:
        return RawResponse(status=status, headers=headers)
    url, max_bytes = request.url, request.max_bytes
    declared = response.content_length
    if declared is not None and declared > max_bytes and not request.truncate:
        response.close()
        return RawResponse(
            status=status,
            headers=headers,
            error=FetchErrorCode.TOO_LARGE,
            detail=(
                f"{url} declares {declared} bytes (Content-Length), over the {max_bytes}-byte cap; "
                "raise max_bytes if such bodies are expected"
            ),
        )
    body, complete = await _read_capped(response, max_bytes)
    if not complete:
        response.close()
        if not request.truncate:
            return RawResponse(
                status=status,
                headers=headers,
                error=FetchErrorCode.TOO_LARGE,
                detail=(
                    f"{url} sent more than the {max_bytes}-byte cap (after decompression); "
                    "raise max_bytes if such bodies are expected"
                ),
            )
    return RawResponse(status=status, headers=headers, body=body)


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> tuple[bytes, bool]:
    """The decoded body up to ``max_bytes``; ``complete`` is False when more was on its way."""
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        if size + len(chunk) > max_bytes:
            parts.append(chunk[: max_bytes - size])
            return b"".join(parts), False
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts), True
