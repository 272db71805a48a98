"""Errors raised by the storage layer.

Hierarchy::

    StorageError
    ├── DatabaseUnavailable      the server cannot be reached (carries the masked URL)
    ├── DatabaseLost             the server went away (stopped, restarted) while a command ran
    ├── ModelNotRegistered       no embedding model row for an id
    ├── VectorFileError          a vector Parquet file is missing or has the wrong schema
    ├── DocumentFileError        a Parquet file of documents (embedding input) is missing or malformed
    ├── SchemaOutdated           the database is not at the head migration
    ├── SourceExists             `pulse sources add` with a name already taken
    ├── SourceNotFound           no source of that name
    ├── SnapshotError            an index snapshot cannot be read (the index rebuilds from vector files)
    ├── BackupError              a backup cannot be taken or written (names the backup and the reason)
    ├── RestoreError             a backup cannot be restored: missing, damaged, from an unknown revision
    │   └── RestoreTargetNotEmpty  the target database or storage holds data (pass --force to replace)
    ├── PgToolMissing            no pg_dump / pg_restore of the server's major version or newer
    ├── ScheduleNotFound         no schedule of that name (`pulse schedules`)
    ├── ScheduleDisabled         run-now of a schedule its settings disable (a backup with no destination)
    └── CmsError                 CMS content problems the API maps to 4xx
        ├── CmsNotFound          no item / revision / user with that id (404)
        ├── StaleVersion         an If-Match version that is not the current one (412)
        ├── CmsConflict          a unique value already taken, e.g. a slug or an email (409)
        ├── InvalidTransition    a workflow move the item's status does not allow (409)
        ├── LastAdmin            demoting, deactivating or deleting the last active admin (409)
        ├── UnknownReference     a category or tag slug that does not exist (422)
        └── InvalidWebhook       a webhook URL that is not http(s), a bad event filter or secret (422)
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every storage error."""


class DatabaseUnavailable(StorageError):
    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot connect to PostgreSQL at {url}: {reason}")


class DatabaseLost(StorageError):
    """PostgreSQL stopped answering in the middle of a command (``database_lost`` recognises it)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"PostgreSQL stopped answering during the command ({reason}): what was committed before is kept; "
            "run the command again once the server answers (its writes are idempotent)"
        )


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


class ScheduleNotFound(StorageError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no schedule named {name!r}; `pulse schedules list` shows the schedules")


class ScheduleDisabled(StorageError):
    def __init__(self, name: str, note: str | None) -> None:
        self.name = name
        self.note = note
        super().__init__(f"schedule {name!r} is disabled by the settings: {note or 'see its settings'}")


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


class BackupError(StorageError):
    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(f"backup {location}: {reason}")


class RestoreError(StorageError):
    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"restore from {source}: {reason}")


class RestoreTargetNotEmpty(RestoreError):
    def __init__(self, source: str, target: str, what: str) -> None:
        self.target = target
        self.what = what
        super().__init__(
            source,
            f"{target} is not empty ({what}). Restore into an empty database and storage, or pass --force "
            "to replace what is there (stop the platform first: `pulse down`)",
        )


class PgToolMissing(StorageError):
    def __init__(self, tool: str, needed_major: int, found: list[str]) -> None:
        self.tool = tool
        self.needed_major = needed_major
        self.found = found
        super().__init__(
            f"{tool} {needed_major} or newer is needed (the PostgreSQL server or dump is version "
            f"{needed_major}); found: {', '.join(found) or 'none'}. Install postgresql-client-{needed_major} "
            "(or a newer one), or pass --pg-bin with the folder holding it"
        )


class CmsError(StorageError):
    """Base class of CMS content errors."""


class CmsNotFound(CmsError):
    def __init__(self, kind: str, ident: object) -> None:
        self.kind = kind
        self.ident = ident
        super().__init__(f"no {kind} {ident}")


class StaleVersion(CmsError):
    def __init__(self, item_id: int, expected: int, current: int) -> None:
        self.item_id = item_id
        self.expected = expected
        self.current = current
        super().__init__(
            f"item {item_id} is at version {current}, not {expected}: someone saved it meanwhile; "
            "GET it again (new ETag), merge your change and retry"
        )


class CmsConflict(CmsError):
    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field} {value!r}: {reason}")


class InvalidTransition(CmsError):
    def __init__(self, item_id: int, current: str, target: str, allowed: list[str]) -> None:
        self.item_id = item_id
        self.current = current
        self.target = target
        super().__init__(
            f"item {item_id} is {current}; it cannot move to {target} "
            f"(from {current}: {', '.join(allowed) or 'nothing'})"
        )


class LastAdmin(CmsError):
    def __init__(self, user_id: int, change: str) -> None:
        self.user_id = user_id
        self.change = change
        super().__init__(
            f"user {user_id} is the last active admin; {change} would leave no one able to administer "
            "the CMS. Make another user an active admin first (or, with shell access, "
            "`pulse cms admin --email ADDRESS`)"
        )


class UnknownReference(CmsError):
    def __init__(self, field: str, values: list[str]) -> None:
        self.field = field
        self.values = values
        super().__init__(f"{field}: unknown {', '.join(repr(v) for v in values)}; create them first")


class InvalidWebhook(CmsError):
    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"webhook {field} {value!r}: {reason}")
