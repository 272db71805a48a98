"""Restoring a backup (``storage.backup_layout``) into an empty database and storage URI.

Restore (``restore``) needs an empty target: a database with no tables (created when missing) and a
storage URI with no ``vectors/``, ``raw/`` or ``snapshots/`` files; ``force=True`` empties them first
(``DROP SCHEMA public CASCADE`` and deleting those folders), which is only safe with the platform down.
Files are copied first, each checked against its size and SHA-256, then the dump is restored with
``pg_restore --single-transaction --exit-on-error --no-owner --no-privileges``, then the schema is
migrated when the backup's revision is older than this Pulse's head (a revision this Pulse does not know
is refused: restore it with the Pulse that wrote it, or a newer one).
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pyarrow.fs as pafs
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy import make_url

from storage.backup_layout import (
    DUMP_FILE,
    STORAGE_DIR,
    STORAGE_FOLDERS,
    BackupFile,
    BackupManifest,
    Progress,
    copy_file,
    display_uri,
    hash_file,
    is_local,
    join_path,
    list_files,
    read_manifest,
)
from storage.database import ensure_database, libpq_conninfo, mask_url, normalize_url
from storage.errors import RestoreError, RestoreTargetNotEmpty
from storage.migrate import alembic_config, current_revision, head_revision, upgrade
from storage.pg_tools import PgCommandFailed, choose_tool, find_tools, run_tool, server_major
from storage.vector_files import resolve_filesystem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestoreResult:
    source: str
    manifest: BackupManifest
    seconds: float
    migrated_to: str | None  # the head revision, when the backup's was older

    def line(self) -> str:
        files = len(self.manifest.files) + 1
        migrated = f"; migrated to {self.migrated_to}" if self.migrated_to else ""
        return (
            f"restored {display_uri(self.source)}: {files} files, {self.manifest.total_bytes:,} bytes "
            f"in {self.seconds:.1f} s{migrated}"
        )


# ----------------------------------------------------------------------------------------------- restore
def _database_tables(url: str) -> int:
    with psycopg.connect(libpq_conninfo(url), connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_toast%%'"
        ).fetchone()
    return int(row[0]) if row else 0


def _server_version_num(url: str) -> int:
    with psycopg.connect(libpq_conninfo(url), connect_timeout=10) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
    return int(row[0]) if row else 0


def _empty_database(url: str) -> None:
    with psycopg.connect(libpq_conninfo(url), connect_timeout=10, autocommit=True) as conn:
        user = make_url(normalize_url(url)).username or "postgres"
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(user)))


def _storage_files(fs: pafs.FileSystem, root: str) -> list[str]:
    return [p for folder in STORAGE_FOLDERS for p in list_files(fs, join_path(root, folder))]


def restore(
    *,
    source: str,
    database_url: str,
    storage_uri: str,
    force: bool = False,
    pg_bin: Path | None = None,
    progress: Progress | None = None,
) -> RestoreResult:
    """Restore one backup folder into the database (created when missing) and the storage URI; both must
    be empty unless ``force`` (see the module docstring)."""
    started = time.perf_counter()
    manifest = read_manifest(source)
    script = alembic_config(database_url)
    try:
        ScriptDirectory.from_config(script).get_revision(manifest.alembic_revision)
    except Exception as exc:  # alembic raises its own CommandError / ResolutionError
        raise RestoreError(
            source,
            f"the backup is at schema revision {manifest.alembic_revision}, which this Pulse does not know "
            f"(the backup was written by Pulse {manifest.pulse_version}): restore it with that version or a "
            "newer one",
        ) from exc
    ensure_database(database_url)
    target_db = mask_url(database_url)
    tables = _database_tables(database_url)
    store_fs, store_root = resolve_filesystem(storage_uri)
    present = _storage_files(store_fs, store_root)
    if not force:
        if tables:
            raise RestoreTargetNotEmpty(source, f"the database {target_db}", f"{tables} tables")
        if present:
            raise RestoreTargetNotEmpty(
                source, f"the storage URI {storage_uri}", f"{len(present)} files, e.g. {present[0]}"
            )
    target_major = server_major(_server_version_num(database_url))
    tool = choose_tool(
        find_tools("pg_restore", extra_dir=pg_bin),
        name="pg_restore",
        at_least=max(manifest.pg_dump_major, target_major),
    )
    if target_major < server_major(manifest.server_version_num):
        logger.warning(
            "restoring a PostgreSQL %s dump into PostgreSQL %d: it fails if it uses what %d lacks",
            manifest.server_version,
            target_major,
            target_major,
        )
    if force:
        if tables:
            _empty_database(database_url)
        for folder in STORAGE_FOLDERS:
            store_fs.delete_dir_contents(join_path(store_root, folder), missing_dir_ok=True)
    src_fs, src_root = resolve_filesystem(source)
    # Files first, then the rows naming them (the writers' order: see ARCHITECTURE.md).
    for f in manifest.files:
        _restore_file(
            src_fs,
            join_path(src_root, f"{STORAGE_DIR}/{f.path}"),
            store_fs,
            join_path(store_root, f.path),
            f,
            source,
        )
        if progress:
            progress(f.path, f.size)
    with tempfile.TemporaryDirectory(prefix="pulse-restore-") as tmp:
        dump_path = join_path(src_root, DUMP_FILE)
        if is_local(src_fs):
            size, digest = hash_file(src_fs, dump_path)
            local = dump_path
        else:
            local = str(Path(tmp) / DUMP_FILE)
            size, digest = copy_file(src_fs, dump_path, pafs.LocalFileSystem(), local)
        _check(manifest.dump, size, digest, source)
        try:
            run_tool(
                tool,
                [
                    "--single-transaction",
                    "--exit-on-error",
                    "--no-owner",
                    "--no-privileges",
                    "--dbname",
                    database_url_dbname(database_url),
                    local,
                ],
                url=database_url,
            )
        except PgCommandFailed as exc:
            raise RestoreError(
                source, f"pg_restore into {target_db} failed (nothing restored there): {exc}"
            ) from exc
        if progress:
            progress(DUMP_FILE, size)
    migrated_to = None
    head = head_revision()
    if current_revision(database_url) != head:
        upgrade(database_url)
        migrated_to = head
    return RestoreResult(
        source=source, manifest=manifest, seconds=time.perf_counter() - started, migrated_to=migrated_to
    )


def database_url_dbname(url: str) -> str:
    """The database name of a URL (pg_restore's ``--dbname``; the rest comes from the environment)."""
    name = make_url(normalize_url(url)).database
    if not name:
        raise ValueError(f"the database URL {mask_url(url)} names no database")
    return name


def _check(expected: BackupFile, size: int, digest: str, source: str) -> None:
    if size != expected.size or digest != expected.sha256:
        raise RestoreError(
            source,
            f"{expected.path} is damaged: {size} bytes with SHA-256 {digest[:12]}..., the manifest says "
            f"{expected.size} bytes and {expected.sha256[:12]}...; use another backup",
        )


def _restore_file(
    src_fs: pafs.FileSystem, src: str, dst_fs: pafs.FileSystem, dst: str, expected: BackupFile, source: str
) -> None:
    """Copy one file back, checked before it takes its name (a damaged copy is deleted)."""
    parent = dst.rsplit("/", 1)[0]
    tmp = f"{parent}/.restore-{uuid.uuid4().hex[:8]}.tmp-"
    try:
        size, digest = copy_file(src_fs, src, dst_fs, tmp)
    except FileNotFoundError as exc:
        raise RestoreError(source, f"{expected.path} is missing from the backup; use another backup") from exc
    try:
        _check(expected, size, digest, source)
    except RestoreError:
        dst_fs.delete_file(tmp)
        raise
    dst_fs.move(tmp, dst)
