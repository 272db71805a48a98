"""Where CMS webhooks may POST: public addresses only, unless private targets are allowed.

A webhook URL is chosen by an admin, and the scheduler POSTs to it from inside the cluster; without a
check it could reach internal services (the database's host, cloud metadata at 169.254.169.254, the
Ray dashboard). So by default a target must be a public address, by the same guard the collector uses
(``cluster.ground.address_guard`` with an empty allow list: loopback, private, link-local, shared,
reserved and multicast addresses are refused, IPv4 addresses carried inside IPv6 ones and legacy
numeric spellings such as ``2130706433`` included):

- at creation, ``refusal`` rejects a URL whose host is such an IP literal or a ``localhost`` name (the
  guard's ``check_url``), or whose name resolves only to such addresses;
- at delivery, ``public_resolver()`` drops refused addresses from every name resolution (so a name that
  later resolves to a private address is refused too), and ``literal_refusal`` checks IP literals, which
  aiohttp connects to without asking the resolver.

``PULSE_CMS__WEBHOOK_PRIVATE_TARGETS=true`` allows private targets (a subscriber on the same network).
"""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from yarl import URL

from cluster.ground.address_guard import AllowList, SafeResolver, check_url, parse_ip_host
from cluster.ground.errors import BlockedAddress, BlockedURL

HINT = "set PULSE_CMS__WEBHOOK_PRIVATE_TARGETS=true to allow subscribers on private networks"
#: No exceptions: public addresses only.
PUBLIC_ONLY = AllowList()


def literal_refusal(url: str) -> str | None:
    """Why ``url`` may not be a target without a lookup (a non-public IP literal, a ``localhost`` name,
    not http(s), malformed), or None."""
    try:
        check_url(url, PUBLIC_ONLY, hint=HINT)
    except BlockedURL as exc:
        return exc.reason
    return None


def public_resolver(inner: AbstractResolver | None = None) -> SafeResolver:
    """An aiohttp resolver that keeps only public addresses; a name with none left raises
    ``BlockedAddress`` (an ``OSError``)."""
    return SafeResolver(PUBLIC_ONLY, inner or DefaultResolver(), hint=HINT)


async def refusal(url: str) -> str | None:
    """Why ``url`` may not be a webhook target, or None. A name that cannot be resolved now is accepted
    (delivery resolves it again and refuses private addresses then)."""
    literal = literal_refusal(url)
    if literal is not None:
        return literal
    host = URL(url.strip()).host or ""
    if parse_ip_host(host) is not None:
        return None  # a public IP literal: nothing to resolve
    resolver = public_resolver()
    try:
        await resolver.resolve(host, 0, socket.AF_UNSPEC)
    except BlockedAddress as exc:
        return str(exc)
    except OSError:
        return None
    finally:
        await resolver.close()
    return None
