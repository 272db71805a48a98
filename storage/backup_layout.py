"""What a Pulse backup is on disk or in a bucket: its layout, its manifest, copying files into and out of
it with their SHA-256, and retention. ``storage.backups`` takes backups, ``storage.restores`` restores them.

Layout: ``pulse backup DEST`` writes one folder per backup, ``DEST/pulse-<UTC stamp>/`` (a local path or
any ``pyarrow.fs`` URI, e.g. ``s3://bucket/backups?endpoint_override=host:port&scheme=http``)::

    pulse-20261207T041501.123Z/
        database.dump     pg_dump -Fc of the whole database (schema + data, alembic_version included)
        storage/...       the storage URI's files, at their paths: vectors/, raw/, snapshots/
        manifest.json     written last: a folder without it is an unfinished backup

``manifest.json`` holds the format version, ``created_at``, the Pulse version, the alembic revision, the
server and pg_dump versions, every file with its size and SHA-256 (computed while copying), and the
consistency point.

Retention (``prune_backups``): keeps the newest ``keep`` complete backups in a folder of backups and
deletes the older ones, and unfinished folders older than the oldest kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.fs as pafs

from storage.errors import RestoreError
from storage.index_snapshots import SNAPSHOT_DIR
from storage.vector_files import resolve_filesystem

logger = logging.getLogger(__name__)

#: Version of the backup layout (``manifest.json``'s ``format_version``).
FORMAT_VERSION = 1
#: The file that marks a backup complete, written last.
MANIFEST_FILE = "manifest.json"
#: The pg_dump archive (custom format).
DUMP_FILE = "database.dump"
#: Folder of the storage URI's files inside a backup.
STORAGE_DIR = "storage"
#: Name prefix of a backup folder: ``pulse-<UTC stamp>``.
BACKUP_PREFIX = "pulse-"
#: Folders of the storage URI that a backup holds (and a restore requires empty).
STORAGE_FOLDERS = ("vectors", "raw", SNAPSHOT_DIR)
#: Bytes read and written at a time while copying.
COPY_CHUNK = 8 * 1024 * 1024

Progress = Callable[[str, int], None]
"""Called with a relative path and its size after each file is copied (for a progress bar)."""


@dataclass(frozen=True)
class BackupFile:
    path: str  # relative to the storage root (or the backup folder for the dump)
    size: int
    sha256: str


@dataclass(frozen=True)
class ConsistencyPoint:
    """What the dump saw: the exported snapshot and the manifests' high-water marks at that point."""

    snapshot_id: str
    taken_at: str  # the transaction's timestamp on the server (ISO 8601)
    vector_files: int
    vector_files_max_id: int
    document_deletions_max_id: int
    actor_snapshots: dict[str, str] = field(default_factory=dict)  # name -> stamp, read before the point
    actor_snapshots_dropped: list[str] = field(default_factory=list)  # pruned while copying


@dataclass(frozen=True)
class BackupManifest:
    format_version: int
    created_at: str
    pulse_version: str
    alembic_revision: str
    server_version: str
    server_version_num: int
    pg_dump_version: str
    dump: BackupFile
    files: tuple[BackupFile, ...]
    consistency: ConsistencyPoint

    @property
    def pg_dump_major(self) -> int:
        return int(self.pg_dump_version.split(".")[0])

    @property
    def total_bytes(self) -> int:
        return self.dump.size + sum(f.size for f in self.files)

    def to_json(self) -> str:
        body = asdict(self)
        body["files"] = [asdict(f) for f in self.files]
        return json.dumps(body, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, source: str) -> BackupManifest:
        try:
            body = json.loads(text)
            version = int(body["format_version"])
            if version != FORMAT_VERSION:
                raise RestoreError(
                    source,
                    f"backup format {version} is not {FORMAT_VERSION}: restore it with the Pulse "
                    f"version that wrote it ({body.get('pulse_version', 'unknown')})",
                )
            return cls(
                format_version=version,
                created_at=str(body["created_at"]),
                pulse_version=str(body["pulse_version"]),
                alembic_revision=str(body["alembic_revision"]),
                server_version=str(body["server_version"]),
                server_version_num=int(body["server_version_num"]),
                pg_dump_version=str(body["pg_dump_version"]),
                dump=BackupFile(**body["dump"]),
                files=tuple(BackupFile(**f) for f in body["files"]),
                consistency=ConsistencyPoint(**body["consistency"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise RestoreError(
                source, f"{MANIFEST_FILE} is unreadable ({exc}); is this a Pulse backup?"
            ) from exc


# ------------------------------------------------------------------------------------------ file helpers
def join_path(root: str, relative: str) -> str:
    return f"{root}/{relative}" if root else relative


def copy_file(src_fs: pafs.FileSystem, src: str, dst_fs: pafs.FileSystem, dst: str) -> tuple[int, str]:
    """Copy one file (any filesystems), hashing what passes; ``(size, sha256)``. The copy goes under a
    temporary name and is renamed into place, so a crash never leaves a half file at ``dst``."""
    digest = hashlib.sha256()
    size = 0
    parent = dst.rsplit("/", 1)[0]
    dst_fs.create_dir(parent, recursive=True)
    tmp = f"{dst}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with src_fs.open_input_stream(src) as source, dst_fs.open_output_stream(tmp) as sink:
            while chunk := source.read(COPY_CHUNK):
                digest.update(chunk)
                sink.write(chunk)
                size += len(chunk)
        dst_fs.move(tmp, dst)
    except BaseException:
        if dst_fs.get_file_info(tmp).type != pafs.FileType.NotFound:
            dst_fs.delete_file(tmp)
        raise
    return size, digest.hexdigest()


def hash_file(fs: pafs.FileSystem, path: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with fs.open_input_stream(path) as source:
        while chunk := source.read(COPY_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def write_text(fs: pafs.FileSystem, path: str, text: str) -> None:
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open_output_stream(tmp) as sink:
        sink.write(text.encode())
    fs.move(tmp, path)


def read_text(fs: pafs.FileSystem, path: str) -> str:
    with fs.open_input_stream(path) as source:
        return bytes(source.read()).decode()


def list_files(fs: pafs.FileSystem, folder: str) -> list[str]:
    """Full paths of the files under ``folder`` (none when it does not exist), temporaries left out."""
    selector = pafs.FileSelector(folder, recursive=True, allow_not_found=True)
    return sorted(
        i.path for i in fs.get_file_info(selector) if i.type == pafs.FileType.File and ".tmp-" not in i.path
    )


def is_local(fs: pafs.FileSystem) -> bool:
    return isinstance(fs, pafs.LocalFileSystem)


def child_uri(uri: str, name: str) -> str:
    """The URI (or path) of ``name`` inside the folder ``uri``, its query (endpoint...) kept."""
    if "://" not in uri:
        return str(Path(uri).expanduser() / name)
    base, _, query = uri.partition("?")
    return f"{base.rstrip('/')}/{name}" + (f"?{query}" if query else "")


def display_uri(uri: str) -> str:
    """The URI with secrets in its query (``secret_key``, ``session_token``) masked, safe to print."""
    base, sep, query = uri.partition("?")
    if not sep:
        return uri
    parts = [
        f"{k}=***" if k in ("secret_key", "session_token") else f"{k}={v}" if eq else k
        for k, eq, v in (item.partition("=") for item in query.split("&"))
    ]
    return f"{base}?{'&'.join(parts)}"


def backup_stamp(now: datetime) -> str:
    """The folder name of a backup taken at ``now`` (sorts by time)."""
    return f"{BACKUP_PREFIX}{now.astimezone(UTC):%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z"


# ------------------------------------------------------------------------------------------------ reading
def read_manifest(source: str) -> BackupManifest:
    fs, root = resolve_filesystem(source)
    path = join_path(root, MANIFEST_FILE)
    if fs.get_file_info(path).type != pafs.FileType.File:
        raise RestoreError(
            source,
            f"no {MANIFEST_FILE} there: give one backup folder (DEST/pulse-<stamp>), and a finished one",
        )
    return BackupManifest.from_json(read_text(fs, path), source=source)


# ------------------------------------------------------------------------------------------- retention
def list_backups(dest: str) -> list[tuple[str, bool]]:
    """``(folder name, complete)`` of every backup folder in ``dest``, oldest first."""
    fs, root = resolve_filesystem(dest)
    selector = pafs.FileSelector(root, allow_not_found=True)
    names = sorted(
        i.base_name
        for i in fs.get_file_info(selector)
        if i.type == pafs.FileType.Directory and i.base_name.startswith(BACKUP_PREFIX)
    )
    return [
        (n, fs.get_file_info(join_path(root, f"{n}/{MANIFEST_FILE}")).type == pafs.FileType.File)
        for n in names
    ]


def prune_backups(dest: str, *, keep: int) -> list[str]:
    """Delete the complete backups in ``dest`` beyond the newest ``keep``, and unfinished ones older than
    the oldest kept (a newer unfinished one may be a backup in progress); the names deleted."""
    if keep < 1:
        raise ValueError("keep must be at least 1 (the backup just taken)")
    fs, root = resolve_filesystem(dest)
    found = list_backups(dest)
    complete = [n for n, done in found if done]
    kept = complete[-keep:]
    if not kept:
        return []
    oldest_kept = kept[0]
    doomed = [n for n, done in found if n < oldest_kept or (done and n not in kept)]
    for n in doomed:
        fs.delete_dir(join_path(root, n))
        logger.info("removed backup %s (retention: keep %d)", n, keep)
    return doomed
