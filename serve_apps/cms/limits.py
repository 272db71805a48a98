"""Limits on what callers send: request rates, body sizes, and the HTML allowed in item bodies.

- ``RateLimits``: a moving window per principal (``user:3``, ``key:7``) and per client IP for anonymous
  callers, with the ``limits`` library in memory. Each replica counts on its own, so the effective limit
  is the configured one times the number of replicas; a shared store (Redis) would make it global.
- ``BodySizeLimit``: ASGI middleware that answers 413 in Pulse's error shape when a request declares a
  ``Content-Length`` over the limit, or streams (chunked) more than the limit.
- ``sanitize_html`` keeps the formatting an editor needs (``nh3``); ``html_to_text`` is a body's text for
  full-text search.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import re
import time
from dataclasses import dataclass
from functools import cache
from html.parser import HTMLParser

import nh3
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cluster.ground.constants import DEFAULT_TRUSTED_PROXIES
from serve_apps.errors import error_body

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- rates


@dataclass(frozen=True)
class RetryAfter:
    """A refused request: wait ``seconds`` (at least 1) before the next one in ``bucket`` is allowed."""

    seconds: int
    limit: str  # "120 per 1 minute"
    bucket: str  # "user:3", "key:7", "ip:203.0.113.9"

    @property
    def message(self) -> str:
        return f"rate limit of {self.limit} reached for {self.bucket}; retry in {self.seconds} s"

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.seconds)}


class RateLimits:
    """Moving-window limits: ``per_key`` for authenticated principals, ``per_ip`` for anonymous callers.

    Limits are written as the ``limits`` library parses them: ``"120/minute"``, ``"10 per second"``.
    """

    def __init__(self, per_key: str = "120/minute", per_ip: str = "60/minute") -> None:
        self.per_key: RateLimitItem = parse(per_key)
        self.per_ip: RateLimitItem = parse(per_ip)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, principal_label: str | None, ip: str | None) -> RetryAfter | None:
        """Count one request; ``None`` if it is within the limit, else how long to wait.

        ``principal_label`` is ``Principal.label``; ``None`` or ``"anonymous"`` counts against the IP
        (a missing IP shares the bucket ``ip:unknown``).
        """
        if principal_label is not None and principal_label != "anonymous":
            item, bucket = self.per_key, principal_label
        else:
            item, bucket = self.per_ip, f"ip:{ip or 'unknown'}"
        if self._limiter.hit(item, "pulse-cms", bucket):
            return None
        stats = self._limiter.get_window_stats(item, "pulse-cms", bucket)
        seconds = max(1, math.ceil(stats.reset_time - time.time()))
        return RetryAfter(seconds=seconds, limit=str(item), bucket=bucket)


class ClientAddress:
    """The caller's address: the peer, or, when the peer is a trusted proxy, the nearest untrusted hop of
    ``X-Forwarded-For`` (read right to left, as each proxy appends the address it saw). Serve's HAProxy
    ingress connects to the replica itself and adds no header, so behind it the caller is only known when
    a proxy in front (a load balancer, a Kubernetes ingress) sets X-Forwarded-For."""

    def __init__(self, trusted: tuple[str, ...] | list[str] = DEFAULT_TRUSTED_PROXIES) -> None:
        try:
            self._networks = tuple(ipaddress.ip_network(n, strict=False) for n in trusted)
        except ValueError as exc:
            raise ValueError(f"trusted_proxies: {exc} (expected addresses or CIDR networks)") from exc

    def trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in n for n in self._networks)

    def resolve(self, peer: str | None, forwarded_for: str | None) -> str | None:
        if peer is None or not forwarded_for or not self.trusted(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.trusted(hop):
                return hop if _is_address(hop) else peer
        return hops[0] if hops and _is_address(hops[0]) else peer


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------------------- body size


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # malformed: the streamed count still applies
    return None


class BodySizeLimit:
    """ASGI middleware: 413 ``payload_too_large`` for bodies over ``max_bytes``.

    A declared ``Content-Length`` over the limit is refused before the app runs. A streamed body is
    counted as the app reads it: once over the limit, the 413 goes out (if the app has not started its
    own response), the app sees ``http.disconnect``, and what it sends afterwards is dropped.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send, detail: str) -> None:
        body = json.dumps(
            error_body("payload_too_large", f"{detail}; the limit is {self.max_bytes} bytes")
        ).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode("ascii")),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, f"the request body is {declared} bytes")
            return

        received = 0
        started = refused = overflowed = False

        async def counting_receive() -> Message:
            nonlocal received, refused, overflowed
            if overflowed:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    overflowed = True
                    if not started:
                        await self._refuse(send, f"the request body exceeds {self.max_bytes} bytes")
                        refused = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 is out; the app's own answer has nowhere to go
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not refused:
                raise
            logger.debug("app failed after a 413 for an oversized body", exc_info=True)


# ---------------------------------------------------------------------------------------------- HTML

#: Tags kept in item bodies; any other tag is removed and its text kept (script and style lose it too).
ALLOWED_TAGS = frozenset(
    {
        "p",
        "h2",
        "h3",
        "h4",
        "ul",
        "ol",
        "li",
        "a",
        "strong",
        "em",
        "blockquote",
        "img",
        "figure",
        "figcaption",
        "code",
        "pre",
        "br",
    }
)
#: Attributes kept per tag (``rel="noopener noreferrer"`` is set on every link); ``lang`` anywhere.
ALLOWED_ATTRIBUTES = {"a": {"href"}, "img": {"src", "alt"}, "*": {"lang"}}
#: Text direction, for mixed Arabic and English: only these values survive.
DIR_VALUES = {"rtl", "ltr", "auto"}
#: URL schemes allowed in href and src (relative URLs are kept too); ``javascript:`` and ``data:`` go.
URL_SCHEMES = frozenset({"http", "https", "mailto"})

_BLOCK_TAGS = frozenset(
    {
        *("p", "div", "br", "hr", "li", "ul", "ol", "dl", "dt", "dd", "blockquote", "pre", "figure"),
        *("figcaption", "table", "tr", "td", "th", "thead", "tbody", "section", "article", "header"),
        *("footer", "aside", "nav", "main", "h1", "h2", "h3", "h4", "h5", "h6", "img"),
    }
)
_SKIPPED_TAGS = frozenset({"script", "style", "template", "noscript"})
_WS = re.compile(r"\s+")


@cache
def _cleaner() -> nh3.Cleaner:
    block_tags = ALLOWED_TAGS - {"a", "strong", "em", "code", "br", "img"}
    return nh3.Cleaner(
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        tag_attribute_values={tag: {"dir": set(DIR_VALUES)} for tag in block_tags},
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


def sanitize_html(html: str) -> str:
    """The HTML with only ``ALLOWED_TAGS`` and their allowed attributes: no scripts, styles, event
    handlers or ``javascript:`` URLs. Text, Arabic included, is kept as it is."""
    return _cleaner().clean(html)


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The text of an HTML fragment for full-text search: tags gone (block tags become spaces, so words
    in adjacent paragraphs stay apart), script and style content dropped, entities unescaped,
    whitespace collapsed."""
    collector = _TextCollector()
    collector.feed(html)
    collector.close()
    return _WS.sub(" ", "".join(collector.parts)).strip()
