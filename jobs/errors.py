"""Errors raised by jobs.

Hierarchy::

    JobError
    ├── ModelNotFound        the embedding model name or folder cannot be resolved (nothing downloaded)
    ├── InputFileError       an ingest file cannot be read at all (bad records are quarantined instead)
    ├── SourceSpecError      a source given to `pulse sources add` is invalid
    └── CollectBusy          another collect run holds the collect lock
"""

from __future__ import annotations


class JobError(Exception):
    """Base class of every job error."""


class ModelNotFound(JobError):
    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        super().__init__(
            f"embedding model {name!r} not found: {reason}. Set PULSE_MODEL__NAME to a local model folder, "
            "or to 'sentence-transformers/all-MiniLM-L6-v2' for the packaged default."
        )


class InputFileError(JobError):
    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(f"cannot read {path}: {reason}")


class SourceSpecError(JobError):
    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        super().__init__(f"source {name!r}: {reason}")


class CollectBusy(JobError):
    def __init__(self) -> None:
        super().__init__(
            "another collect run is in progress on this database; wait for it to finish "
            "(`pulse sources list` shows when each source was last collected)"
        )
