"""Taking a backup of a platform's durable state (PostgreSQL + the storage URI), consistent at one point.

The layout and the manifest are ``storage.backup_layout``'s; restoring is ``storage.restores``.

Consistency. The database and the files are taken at one point, the way readers already follow writers
(ARCHITECTURE.md: a writer renames its Parquet file into place, then commits its manifest row):

1. the current stamp of every actor snapshot (``snapshots/<name>/CURRENT``) is read first;
2. a ``REPEATABLE READ, READ ONLY`` transaction calls ``pg_export_snapshot()``: that is the point;
3. ``pg_dump --snapshot=<id>`` dumps exactly what that transaction sees, while it stays open;
4. the vector files copied are exactly those the point's ``vector_files`` rows name. Files are immutable
   once named (uuid names, written under a temporary name then renamed, never rewritten) and nothing
   deletes them (only snapshot pruning deletes anything under the storage URI), so a named file that is
   missing means the storage is damaged: the backup fails saying which. Files written after the point
   (and orphans of crashed jobs) are not named, and not copied;
5. actor snapshots (index shards, trend clusterers, the profile book) are caches: an actor rebuilds by
   catch-up from its snapshot's watermark, or from zero. Those made current before the point (step 1)
   reflect only rows committed before it, so each is at or behind the dump and is copied, which makes a
   restored platform start fast (a catch-up from the snapshot's watermark, as after a crash). A snapshot
   written after step 1 is left out. ``SnapshotStore`` prunes old stamps (it keeps 2): a stamp pruned
   while being copied is dropped from the backup (logged, listed in the manifest), never half-copied;
6. raw fetch records (``raw/``) are an archive no row names: the ones present after the point are copied,
   so the backup may hold fetches whose documents were committed after it (re-extracting is idempotent by
   canonical URL).

A backup is therefore safe while the platform runs (`pulse up`): pg_dump takes only ACCESS SHARE locks
(a migration waits for it) and nothing is stopped.
"""

from __future__ import annotations

import importlib.metadata
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pyarrow.fs as pafs
from psycopg import IsolationLevel

from storage.backup_layout import (
    DUMP_FILE,
    FORMAT_VERSION,
    MANIFEST_FILE,
    STORAGE_DIR,
    BackupFile,
    BackupManifest,
    ConsistencyPoint,
    Progress,
    backup_stamp,
    child_uri,
    copy_file,
    display_uri,
    hash_file,
    is_local,
    join_path,
    list_files,
    prune_backups,
    read_text,
    write_text,
)
from storage.database import libpq_conninfo, mask_url
from storage.errors import BackupError
from storage.index_snapshots import CURRENT_FILE, SNAPSHOT_DIR
from storage.pg_tools import PgCommandFailed, PgTool, choose_tool, find_tools, run_tool, server_major
from storage.vector_files import resolve_filesystem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackupResult:
    location: str  # the backup folder (path or URI)
    manifest: BackupManifest
    seconds: float
    pruned: tuple[str, ...] = ()

    def line(self) -> str:
        files = len(self.manifest.files) + 1
        pruned = f"; removed {len(self.pruned)} older backup(s)" if self.pruned else ""
        return (
            f"backup {display_uri(self.location)}: {files} files, {self.manifest.total_bytes:,} bytes "
            f"in {self.seconds:.1f} s{pruned}"
        )


# ------------------------------------------------------------------------------------------------ backup
def _current_snapshots(fs: pafs.FileSystem, root: str) -> dict[str, str]:
    """``name -> stamp`` of every actor snapshot that has a current stamp now."""
    folder = join_path(root, SNAPSHOT_DIR)
    found: dict[str, str] = {}
    selector = pafs.FileSelector(folder, allow_not_found=True)
    for info in fs.get_file_info(selector):
        if info.type != pafs.FileType.Directory:
            continue
        try:
            found[info.base_name] = read_text(fs, f"{info.path}/{CURRENT_FILE}").strip()
        except (FileNotFoundError, OSError):
            continue  # no snapshot made current yet
    return found


@dataclass(frozen=True)
class _Point:
    snapshot_id: str
    taken_at: str
    server_version: str
    server_version_num: int
    revision: str
    vector_files: list[tuple[int, str]]
    deletions_max_id: int


@contextmanager
def _exported_snapshot(url: str) -> Iterator[_Point]:
    """Open the consistency point (see the module docstring) and hold it while the block runs."""
    with psycopg.connect(libpq_conninfo(url), connect_timeout=10) as conn:
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            snapshot_id = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
            taken_at, version, version_num = conn.execute(  # type: ignore[misc]
                "SELECT transaction_timestamp(), current_setting('server_version'), "
                "current_setting('server_version_num')::int"
            ).fetchone()
            try:
                revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            except psycopg.errors.UndefinedTable:
                raise BackupError(
                    mask_url(url), "the database has no Pulse schema; run `pulse migrate`"
                ) from None
            if revision is None:
                raise BackupError(mask_url(url), "the database has no alembic revision; run `pulse migrate`")
            files = conn.execute("SELECT id, path FROM vector_files ORDER BY id").fetchall()
            deletions = conn.execute("SELECT coalesce(max(id), 0) FROM document_deletions").fetchone()
            yield _Point(
                snapshot_id=str(snapshot_id),
                taken_at=taken_at.astimezone(UTC).isoformat(),
                server_version=str(version),
                server_version_num=int(version_num),
                revision=str(revision[0]),
                vector_files=[(int(i), str(p)) for i, p in files],
                deletions_max_id=int(deletions[0]) if deletions else 0,
            )


def pulse_version() -> str:
    try:
        return importlib.metadata.version("pulse-platform")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def backup(
    *,
    database_url: str,
    storage_uri: str,
    dest: str,
    keep: int | None = None,
    pg_bin: Path | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> BackupResult:
    """Back up the database and the storage URI into ``dest/pulse-<stamp>/``; then keep the newest
    ``keep`` backups in ``dest`` (``None``: keep all). See the module docstring for the consistency."""
    started = time.perf_counter()
    dest_fs, dest_root = resolve_filesystem(dest)
    name = backup_stamp(now or datetime.now(UTC))
    folder = join_path(dest_root, name)
    location = child_uri(dest, name)
    if dest_fs.get_file_info(folder).type != pafs.FileType.NotFound:
        raise BackupError(location, "the folder exists already; try again in a moment")
    src_fs, src_root = resolve_filesystem(storage_uri)
    snapshots = _current_snapshots(src_fs, src_root)  # before the point: see the module docstring
    dest_fs.create_dir(folder, recursive=True)
    try:
        with _exported_snapshot(database_url) as point:
            tool = choose_tool(
                find_tools("pg_dump", extra_dir=pg_bin),
                name="pg_dump",
                at_least=server_major(point.server_version_num),
            )
            dump = _dump(
                tool=tool, point=point, url=database_url, dest_fs=dest_fs, folder=folder, location=location
            )
            if progress:
                progress(DUMP_FILE, dump.size)
        files: list[BackupFile] = []
        for file_id, relative in point.vector_files:
            try:
                files.append(_copy_in(src_fs, src_root, dest_fs, folder, relative, progress))
            except FileNotFoundError as exc:
                raise BackupError(
                    location,
                    f"vector file {relative} (manifest row {file_id}) is missing from the storage URI "
                    f"{storage_uri}: the storage is damaged or is not this database's (nothing was changed)",
                ) from exc
        prefix = len(src_root) + 1 if src_root else 0
        for full in list_files(src_fs, join_path(src_root, "raw")):
            try:
                files.append(_copy_in(src_fs, src_root, dest_fs, folder, full[prefix:], progress))
            except FileNotFoundError:
                logger.warning("raw file %s vanished while being copied; left out", full[prefix:])
        kept, dropped = _copy_snapshots(src_fs, src_root, dest_fs, folder, snapshots, progress)
        files.extend(kept)
        manifest = BackupManifest(
            format_version=FORMAT_VERSION,
            created_at=datetime.now(UTC).isoformat(),
            pulse_version=pulse_version(),
            alembic_revision=point.revision,
            server_version=point.server_version,
            server_version_num=point.server_version_num,
            pg_dump_version=tool.version,
            dump=dump,
            files=tuple(files),
            consistency=ConsistencyPoint(
                snapshot_id=point.snapshot_id,
                taken_at=point.taken_at,
                vector_files=len(point.vector_files),
                vector_files_max_id=max((i for i, _ in point.vector_files), default=0),
                document_deletions_max_id=point.deletions_max_id,
                actor_snapshots={k: v for k, v in snapshots.items() if k not in dropped},
                actor_snapshots_dropped=sorted(dropped),
            ),
        )
        write_text(dest_fs, f"{folder}/{MANIFEST_FILE}", manifest.to_json())
    except BaseException:
        # No half backup is left behind (retention would also remove one, once a newer backup is kept).
        dest_fs.delete_dir(folder)
        raise
    pruned = prune_backups(dest, keep=keep) if keep is not None else ()
    return BackupResult(
        location=location, manifest=manifest, seconds=time.perf_counter() - started, pruned=tuple(pruned)
    )


def _dump(
    *, tool: PgTool, point: _Point, url: str, dest_fs: pafs.FileSystem, folder: str, location: str
) -> BackupFile:
    """pg_dump at the point into the backup (through a local temporary file when the backup is remote)."""
    with tempfile.TemporaryDirectory(prefix="pulse-dump-") as tmp:
        local = f"{folder}/{DUMP_FILE}" if is_local(dest_fs) else str(Path(tmp) / DUMP_FILE)
        try:
            run_tool(tool, ["--format=custom", f"--snapshot={point.snapshot_id}", f"--file={local}"], url=url)
        except PgCommandFailed as exc:
            raise BackupError(location, f"pg_dump failed: {exc}") from exc
        if is_local(dest_fs):
            size, digest = hash_file(dest_fs, local)
        else:
            size, digest = copy_file(pafs.LocalFileSystem(), local, dest_fs, f"{folder}/{DUMP_FILE}")
    return BackupFile(path=DUMP_FILE, size=size, sha256=digest)


def _copy_in(
    src_fs: pafs.FileSystem,
    src_root: str,
    dest_fs: pafs.FileSystem,
    folder: str,
    relative: str,
    progress: Progress | None,
) -> BackupFile:
    size, digest = copy_file(
        src_fs, join_path(src_root, relative), dest_fs, f"{folder}/{STORAGE_DIR}/{relative}"
    )
    if progress:
        progress(relative, size)
    return BackupFile(path=relative, size=size, sha256=digest)


def _copy_snapshots(
    src_fs: pafs.FileSystem,
    src_root: str,
    dest_fs: pafs.FileSystem,
    folder: str,
    snapshots: dict[str, str],
    progress: Progress | None,
) -> tuple[list[BackupFile], set[str]]:
    """Copy each snapshot's stamp read before the point, with a CURRENT naming it; drop (and clean up)
    one whose files vanish meanwhile (pruned by a newer snapshot)."""
    kept: list[BackupFile] = []
    dropped: set[str] = set()
    prefix = len(src_root) + 1 if src_root else 0
    for name, stamp in sorted(snapshots.items()):
        stamp_dir = f"{SNAPSHOT_DIR}/{name}/{stamp}"
        copied: list[BackupFile] = []
        try:
            sources = list_files(src_fs, join_path(src_root, stamp_dir))
            if not sources:
                raise FileNotFoundError(stamp_dir)
            for full in sources:
                copied.append(_copy_in(src_fs, src_root, dest_fs, folder, full[prefix:], progress))
        except OSError as exc:
            if not isinstance(exc, FileNotFoundError) and list_files(src_fs, join_path(src_root, stamp_dir)):
                raise  # not a pruned snapshot: a real read or write failure
            logger.warning(
                "snapshot %s/%s was replaced while being copied; left out (rebuilt by catch-up)", name, stamp
            )
            dropped.add(name)
            dest_fs.delete_dir_contents(f"{folder}/{STORAGE_DIR}/{SNAPSHOT_DIR}/{name}", missing_dir_ok=True)
            continue
        current = f"{SNAPSHOT_DIR}/{name}/{CURRENT_FILE}"
        write_text(dest_fs, f"{folder}/{STORAGE_DIR}/{current}", stamp)
        size, digest = hash_file(dest_fs, f"{folder}/{STORAGE_DIR}/{current}")
        kept.extend([*copied, BackupFile(path=current, size=size, sha256=digest)])
    return kept, dropped
