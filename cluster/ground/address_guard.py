"""What Pulse may connect to on a user's behalf: a URL guard and a resolver that refuse internal
addresses (SSRF). The collector fetches URLs from feeds and pages; the CMS scheduler POSTs webhooks to URLs
an admin typed. Both use this one guard, so both refuse the same addresses.

It lives in ``cluster/`` because ``actors`` and ``jobs`` must stay independent of each other and both
need it; it knows addresses, not the business of either caller. Each caller passes the ``hint`` its
errors end with: which setting lets a refused address through.

Two checks, because neither alone is enough:

* ``check_url`` runs before every request and every redirect hop. It refuses non-http(s) schemes,
  malformed URLs, ``localhost`` names (RFC 6761: always loopback) and IP-literal hosts in private,
  loopback, link-local, multicast, reserved, unspecified or shared ranges (IPv6 and IPv4-mapped IPv6
  included). aiohttp never asks the resolver about IP literals, so
  this is the only guard for them.
* ``SafeResolver`` wraps aiohttp's resolver and drops every refused address a host name resolves to, so
  ``internal.example -> 10.0.0.7`` fails at connect time (``BlockedAddress``) and DNS rebinding cannot
  slip in between a check and the connection: the connection uses exactly the addresses returned here.

``AllowList`` lets chosen networks or exact host names through (an intranet), or one service only: a
``host:port`` entry (``127.0.0.1:8080``, ``[::1]:8080``, ``wiki.internal:8443``) allows that port and no
other, so allowing a test site on 127.0.0.1 does not open the database, the Ray dashboard or any other
service on the same machine.
URLs are parsed with yarl, the parser aiohttp itself uses, so the guard and the client agree on the host.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from cluster.ground.errors import BlockedAddress, BlockedURL, InvalidAllowList

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Schemes Pulse connects to.
ALLOWED_SCHEMES = frozenset({"http", "https"})
#: RFC 6598 carrier-grade NAT space; not "private" to Python before 3.13 but never a public web server.
SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
#: RFC 6052 NAT64 prefix: the last 32 bits are an IPv4 address.
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")

# ``host:port`` and ``[v6]:port`` allow-list entries.
_ENDPOINT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+)):(?P<port>[0-9]{1,5})$")
# Legacy numeric IPv4 spellings (2130706433, 0x7f.1, 127.1) that socket APIs still accept.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$", re.IGNORECASE)


def _normalize_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


@dataclass(frozen=True)
class AllowList:
    """Networks, exact host names and single ``host:port`` endpoints that may be reached although their
    addresses are not public. ``AllowList()`` allows nothing: public addresses only.

    ``endpoints`` holds ``(host, port)`` pairs, the host an address in its canonical spelling or a
    normalised name: only that port of that host is allowed."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = field(default_factory=frozenset)
    endpoints: frozenset[tuple[str, int]] = field(default_factory=frozenset)

    @classmethod
    def from_strings(cls, entries: Iterable[str]) -> AllowList:
        """``("127.0.0.0/8", "10.1.2.3", "example.internal", "127.0.0.1:8080", "[::1]:8080")``: CIDRs or
        single addresses, ``host:port`` endpoints, else host names."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        endpoints: set[tuple[str, int]] = set()
        for raw in entries:
            entry = raw.strip()
            if not entry:
                raise InvalidAllowList(raw, "empty entry")
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            endpoint = _ENDPOINT.match(entry)
            if endpoint is not None:
                endpoints.add(_endpoint(raw, endpoint))
                continue
            if "/" in entry or not re.fullmatch(r"[A-Za-z0-9._-]+\.?", entry):
                raise InvalidAllowList(raw, "not a network, a host name or a host:port")
            hosts.add(_normalize_host(entry))
        return cls(networks=tuple(networks), hosts=frozenset(hosts), endpoints=frozenset(endpoints))

    def allows_host(self, host: str, port: int | None = None) -> bool:
        """Whether the name ``host`` is allowed (on ``port``, when the entry names one)."""
        name = _normalize_host(host)
        return name in self.hosts or (port is not None and (name, port) in self.endpoints)

    def allows_address(self, address: IPAddress, port: int | None = None) -> bool:
        """Whether ``address`` is in an allowed network, or is an allowed endpoint's address on ``port``."""
        candidates = [address, *_embedded_ipv4(address)]
        if any(candidate in network for candidate in candidates for network in self.networks):
            return True
        return port is not None and any((str(candidate), port) in self.endpoints for candidate in candidates)


def _endpoint(raw: str, match: re.Match[str]) -> tuple[str, int]:
    port = int(match.group("port"))
    if not 0 < port < 65536:
        raise InvalidAllowList(raw, f"port {port} is out of range (1-65535)")
    host = match.group("v6") or match.group("host")
    address = parse_ip_host(host)
    if match.group("v6") is not None and not isinstance(address, ipaddress.IPv6Address):
        raise InvalidAllowList(raw, "the part in brackets is not an IPv6 address")
    return (str(address) if address is not None else _normalize_host(host)), port


def _embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses carried inside an IPv6 one (mapped, 6to4, Teredo, NAT64)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in NAT64_PREFIX:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def blocked_reason(address: IPAddress) -> str | None:
    """Why ``address`` must not be connected to (ignoring any allow list), or None when it is public."""
    for candidate in (address, *_embedded_ipv4(address)):
        label = _address_class(candidate)
        if label is not None:
            shown = str(candidate) if candidate == address else f"{candidate} (inside {address})"
            return f"{shown} is a {label} address"
    return None


def _address_class(address: IPAddress) -> str | None:
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified:
        return "unspecified"
    if isinstance(address, ipaddress.IPv4Address) and address in SHARED_ADDRESS_SPACE:
        return "shared (carrier-grade NAT)"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "non-global"
    return None


def address_refusal(address: IPAddress, allow: AllowList, port: int | None = None) -> str | None:
    """Why a connection to ``address`` (on ``port``) is refused under ``allow``; None when it may be used."""
    reason = blocked_reason(address)
    if reason is None or allow.allows_address(address, port):
        return None
    if port is not None and any(host == str(address) for host, _ in allow.endpoints):
        return f"{reason} allowed on other ports only, not {port}"
    return reason


def parse_ip_host(host: str) -> IPAddress | None:
    """The address an IP-literal host names (IPv6 zone ids kept), None for a host name."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        return None


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address a legacy numeric spelling such as ``2130706433`` or ``127.1`` means to socket APIs."""
    if not _NUMERIC_HOST.match(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
    except (OSError, ValueError):
        return None


def check_url(url: str | URL, allow: AllowList, *, hint: str) -> None:
    """Raise ``BlockedURL`` unless ``url`` is an absolute http(s) URL and its IP-literal host is public.

    Host names are not resolved here (this stays pure); ``SafeResolver`` checks their addresses at connect
    time. ``BlockedURL.code`` is "invalid_url", "blocked_scheme" or "blocked_address".
    """
    shown = str(url)
    try:
        parsed = url if isinstance(url, URL) else URL(url.strip())
        scheme = parsed.scheme.lower()
        raw_host = parsed.raw_host
        host = parsed.host
        _ = parsed.port  # a malformed port raises here
    except (ValueError, TypeError) as exc:
        raise BlockedURL("invalid_url", shown, f"not a valid URL ({exc}); fix or drop it") from exc
    if not scheme:
        raise BlockedURL("invalid_url", shown, "not an absolute URL (no scheme); resolve it against its page")
    if scheme not in ALLOWED_SCHEMES:
        raise BlockedURL("blocked_scheme", shown, f"the {scheme!r} scheme is never used, only http and https")
    if not raw_host or not host:
        raise BlockedURL("invalid_url", shown, "the URL has no host")
    port = parsed.port  # the scheme's default when the URL names none
    if allow.allows_host(raw_host, port) or allow.allows_host(host, port):
        return
    name = _normalize_host(host)
    if name == "localhost" or name.endswith(".localhost"):
        raise BlockedURL("blocked_address", shown, f"{host} is a loopback name (RFC 6761); {hint}")
    address = parse_ip_host(host)
    if address is None:
        legacy = _legacy_ipv4(host)
        if legacy is None:
            return  # a host name: its addresses are checked at connect time
        reason = address_refusal(legacy, allow, port)
        if reason is not None:
            raise BlockedURL("blocked_address", shown, f"{host} means {reason}; {hint}")
        raise BlockedURL(
            "invalid_url", shown, f"{host} is a legacy numeric IPv4 spelling; write it as {legacy}"
        )
    reason = address_refusal(address, allow, port)
    if reason is not None:
        raise BlockedURL("blocked_address", shown, f"{reason}; {hint}")


class SafeResolver(AbstractResolver):
    """An aiohttp resolver that drops refused addresses; raises ``BlockedAddress`` (an ``OSError``, so
    aiohttp reports it as a connection error) when none is left. ``hint`` ends its message."""

    def __init__(self, allow: AllowList, inner: AbstractResolver, *, hint: str) -> None:
        self._allow = allow
        self._inner = inner
        self._hint = hint

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self._allow.allows_host(host, port or None):
            return results
        kept: list[ResolveResult] = []
        refused: list[tuple[str, str]] = []
        for result in results:
            address = parse_ip_host(result["host"])
            reason = (
                "not an IP address"
                if address is None
                else address_refusal(address, self._allow, port or None)
            )
            if reason is None:
                kept.append(result)
            else:
                refused.append((result["host"], reason))
        if refused:
            logger.warning(
                "refused resolved addresses", extra={"host": host, "refused": [a for a, _ in refused]}
            )
        if not kept:
            addresses = tuple(address for address, _ in refused)
            reason = refused[0][1] if refused else "no address"
            raise BlockedAddress(host, addresses, reason, hint=self._hint)
        return kept

    async def close(self) -> None:
        await self._inner.close()
