"""Errors raised by ``cluster`` modules that callers catch by type.

Hierarchy::

    AddressGuardError        cluster.ground.address_guard refused a connection target
    ├── BlockedURL           a URL refused before any connection: scheme, address or malformed (``code``)
    ├── BlockedAddress       (also an OSError) every address a host name resolved to is refused; raised by
    │                        ``SafeResolver`` at connect time, so aiohttp reports it as a connection error
    └── InvalidAllowList     (also a ValueError) an allow-list entry is neither a CIDR nor a host name
"""

from __future__ import annotations


class AddressGuardError(Exception):
    """Base class of the address guard's errors."""


class BlockedURL(AddressGuardError):
    """``code`` is "blocked_scheme", "blocked_address" or "invalid_url" (a fetch error code)."""

    def __init__(self, code: str, url: str, reason: str) -> None:
        self.code = code
        self.url = url
        self.reason = reason
        super().__init__(f"refused {url!r}: {reason}")


class BlockedAddress(AddressGuardError, OSError):
    """A host name resolved only to refused addresses (private, loopback, link-local, ...)."""

    def __init__(self, host: str, addresses: tuple[str, ...], reason: str, *, hint: str) -> None:
        self.host = host
        self.addresses = addresses
        self.reason = reason
        super().__init__(
            f"host {host!r} resolves only to refused addresses ({', '.join(addresses) or 'none'}): {reason}; "
            f"{hint}"
        )


class InvalidAllowList(AddressGuardError, ValueError):
    def __init__(self, entry: str, reason: str) -> None:
        self.entry = entry
        super().__init__(
            f"allow-list entry {entry!r}: {reason}; use a CIDR such as '127.0.0.0/8', an exact host name "
            "or a host:port such as '127.0.0.1:8080'"
        )
