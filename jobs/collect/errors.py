"""Errors of the collect job: the fetch error codes, and the exceptions it raises.

Fetch failures themselves are not raised: ``Fetcher.fetch`` returns a ``FetchResult`` whose ``error`` is a
``FetchErrorCode``. The exceptions below reject a bad configuration or a concurrent run.
The URL guard's and the resolver's errors (``BlockedURL``, ``BlockedAddress``, ``InvalidAllowList``)
belong to the address guard, shared with the CMS webhooks: ``cluster.ground.errors``.

Hierarchy::

    JobError (jobs.errors)
    └── CollectError
        ├── InvalidFetchPolicy  (also a ValueError) a FetchPolicy value is out of range
        ├── SourceSpecError     a source given to `pulse sources add` is invalid
        └── CollectBusy         another collect run holds the collect lock
"""

from __future__ import annotations

from enum import StrEnum

from jobs.errors import JobError


class FetchErrorCode(StrEnum):
    """Why a fetch failed: ``FetchResult.error``. The values are stored (``crawl_urls.error``, the raw
    Parquet log) and shown to users (`pulse collect` summaries): never change one, only add."""

    #: Not http or https (``cluster.ground.address_guard``).
    BLOCKED_SCHEME = "blocked_scheme"
    #: An internal address, as a literal or as what a name resolved to at connect time.
    BLOCKED_ADDRESS = "blocked_address"
    ROBOTS_DISALLOWED = "robots_disallowed"
    #: robots.txt could not be fetched (5xx, 429, network): the host counts as disallowed for this run.
    ROBOTS_UNAVAILABLE = "robots_unavailable"
    #: The body (declared, read or decompressed) is over ``max_bytes``.
    TOO_LARGE = "too_large"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    REDIRECT_LOOP = "redirect_loop"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    DNS_ERROR = "dns_error"
    #: A final status that is not 2xx, 304 or a followed redirect (and not 429).
    HTTP_ERROR = "http_error"
    #: 429 after every retry, or a Retry-After above ``max_retry_after_s``.
    RATE_LIMITED = "rate_limited"
    BAD_CONTENT_TYPE = "bad_content_type"
    DECODE_ERROR = "decode_error"
    INVALID_URL = "invalid_url"
    #: A local file of a ``file`` source could not be read (set by the collect pipeline, not the fetcher).
    FILE_ERROR = "file_error"


class CollectError(JobError):
    """Base class of the collect job's errors."""


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
