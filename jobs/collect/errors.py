"""Errors raised by the collect job.

Fetch failures themselves are not raised: ``Fetcher.fetch`` returns a ``FetchResult`` whose ``error`` is one
of ``jobs.collect.fetch.ERROR_CODES``. These exceptions cross the seams inside that layer (the URL guard,
the resolver) or reject a bad configuration.

Hierarchy::

    JobError (jobs.errors)
    └── CollectError
        ├── BlockedURL          a URL refused before any connection: scheme, address or malformed (``code``)
        ├── BlockedAddress      (also an OSError) every address a host name resolved to is refused;
        │                       raised by the resolver at connect time, mapped to "blocked_address"
        ├── InvalidAllowList    (also a ValueError) an allow_networks entry is neither a CIDR nor a host name
        ├── InvalidFetchPolicy  (also a ValueError) a FetchPolicy value is out of range
        ├── SourceSpecError     a source given to `pulse sources add` is invalid
        └── CollectBusy         another collect run holds the collect lock
"""

from __future__ import annotations

from jobs.errors import JobError


class CollectError(JobError):
    """Base class of the collect job's errors."""


class BlockedURL(CollectError):
    """``code`` is "blocked_scheme", "blocked_address" or "invalid_url" (a fetch error code)."""

    def __init__(self, code: str, url: str, reason: str) -> None:
        self.code = code
        self.url = url
        self.reason = reason
        super().__init__(f"refused {url!r}: {reason}")


class BlockedAddress(CollectError, OSError):
    """A host name resolved only to refused addresses (private, loopback, link-local, ...)."""

    def __init__(self, host: str, addresses: tuple[str, ...], reason: str) -> None:
        self.host = host
        self.addresses = addresses
        self.reason = reason
        super().__init__(
            f"host {host!r} resolves only to refused addresses ({', '.join(addresses) or 'none'}): {reason}; "
            "add the host name or its network to allow_networks if it is meant to be collected"
        )


class InvalidAllowList(CollectError, ValueError):
    def __init__(self, entry: str, reason: str) -> None:
        self.entry = entry
        super().__init__(
            f"allow_networks entry {entry!r}: {reason}; "
            "use a CIDR such as '127.0.0.0/8' or an exact host name"
        )


class InvalidFetchPolicy(CollectError, ValueError):
    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"fetch policy {field}={value!r}: {reason}")


class SourceSpecError(CollectError):
    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        super().__init__(f"source {name!r}: {reason}")


class CollectBusy(CollectError):
    def __init__(self) -> None:
        super().__init__(
            "another collect run is in progress on this database; wait for it to finish "
            "(`pulse sources list` shows when each source was last collected)"
        )
