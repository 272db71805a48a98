"""Where CMS webhooks may POST: public addresses only, unless private targets are allowed.

A webhook URL is chosen by an admin, and the scheduler POSTs to it from inside the cluster; without a
check it could reach internal services (the database's host, cloud metadata at 169.254.169.254, the
Ray dashboard). So by default a target must be a global address:

- at creation, ``refusal`` rejects a URL whose host is a non-global IP literal or a ``localhost`` name,
  or whose name resolves only to non-global addresses;
- at delivery, ``PublicResolver`` drops non-global addresses from every name resolution (so a name that
  later resolves to a private address is refused too), and ``literal_refusal`` checks IP literals, which
  aiohttp connects to without asking the resolver.

``PULSE_CMS__WEBHOOK_PRIVATE_TARGETS=true`` allows private targets (a subscriber on the same network).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

HINT = "set PULSE_CMS__WEBHOOK_PRIVATE_TARGETS=true to allow subscribers on private networks"


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_public(address: str) -> bool:
    """Whether ``address`` (an IP) is globally routable: not loopback, private, link-local, reserved..."""
    ip = _ip(address)
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def literal_refusal(url: str) -> str | None:
    """Why ``url`` may not be a target without a lookup (an IP literal or a localhost name), or None."""
    host = (urlsplit(url).hostname or "").lower()
    if not host:
        return f"{url!r} has no host"
    if host == "localhost" or host.endswith(".localhost"):
        return f"{host} is this machine; {HINT}"
    if _ip(host) is not None and not is_public(host):
        return f"{host} is not a public address; {HINT}"
    return None


async def refusal(url: str) -> str | None:
    """Why ``url`` may not be a webhook target, or None. A name that cannot be resolved now is accepted
    (delivery resolves it again and refuses private addresses then)."""
    host = urlsplit(url).hostname or ""
    literal = literal_refusal(url)
    if literal is not None or _ip(host) is not None:
        return literal
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return None
    addresses = {str(info[4][0]) for info in infos}
    if addresses and not any(is_public(a) for a in addresses):
        return f"{host} resolves only to non-public addresses ({', '.join(sorted(addresses))}); {HINT}"
    return None


class PublicResolver(AbstractResolver):
    """aiohttp resolver that keeps only public addresses; a name with none left is an ``OSError``."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        public = [r for r in results if is_public(str(r["host"]))]
        if not public:
            found = ", ".join(sorted({str(r["host"]) for r in results}))
            raise OSError(f"webhook target {host} resolves only to non-public addresses ({found}); {HINT}")
        return public

    async def close(self) -> None:
        await self._inner.close()
