"""Errors raised by the storage layer.

Hierarchy::

    StorageError
    ├── DatabaseUnavailable      the server cannot be reached (carries the masked URL)
    ├── ModelNotRegistered       no embedding model row for an id
    ├── VectorFileError          a vector Parquet file is missing or has the wrong schema
    ├── DocumentFileError        a Parquet file of documents (embedding input) is missing or malformed
    ├── SchemaOutdated           the database is not at the head migration
    ├── SourceExists             `pulse sources add` with a name already taken
    ├── SourceNotFound           no source of that name
    └── SnapshotError            an index snapshot cannot be read (the index rebuilds from vector files)
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every storage error."""


class DatabaseUnavailable(StorageError):
    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot connect to PostgreSQL at {url}: {reason}")


class ModelNotRegistered(StorageError):
    def __init__(self, model_id: int) -> None:
        self.model_id = model_id
        super().__init__(f"embedding model id {model_id} is not registered; run `pulse embed` first")


class VectorFileError(StorageError):
    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"vector file {path}: {reason}. The database's manifest and PULSE_STORAGE__URI disagree: "
            "point PULSE_STORAGE__URI at the storage the vectors were written to, "
            "or re-embed with `pulse embed --full`"
        )


class SchemaOutdated(StorageError):
    def __init__(self, url: str, current: str | None, head: str | None) -> None:
        self.url = url
        self.current = current
        self.head = head
        super().__init__(
            f"the database at {url} is at schema revision {current or 'none'}, Pulse needs {head}; "
            "run `pulse migrate`"
        )


class SourceExists(StorageError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"a source named {name!r} already exists; pick another name or `pulse sources remove {name}`"
        )


class SourceNotFound(StorageError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no source named {name!r}; `pulse sources list` shows the sources")


class DocumentFileError(StorageError):
    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"document file {path}: {reason}. The embedding job reads Parquet with the columns "
            "id, content_hash, title, text (ids and hashes as in PostgreSQL's documents table)"
        )


class SnapshotError(StorageError):
    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(
            f"index snapshot {name!r} cannot be read ({reason}); the index rebuilds from the vector files "
            "instead, and writes a fresh snapshot"
        )
