"""Errors raised by the collect job.

Fetch failures themselves are not raised: ``Fetcher.fetch`` returns a ``FetchResult`` whose ``error`` is one
of ``jobs.collect.fetch.ERROR_CODES``. These exceptions reject a bad configuration or a concurrent run.
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

from jobs.errors import JobError


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
