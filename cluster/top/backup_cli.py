"""`pulse backup DEST [--keep N]` and `pulse restore SRC [--force]` (storage.backups does the work).

``python -m jobs.backup DEST --keep N`` runs the same backup command, so the scheduler can submit it as a
Ray job (it needs no Ray itself: pg_dump and file copies, on the node the job runs on).

A backup is safe while the platform runs (one consistency point: storage.backups). A restore needs an
empty database and storage URI; ``--force`` replaces what is there, and is refused while the platform
`pulse up` recorded is up (run `pulse down` first).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from cluster.ground.settings import Settings
from cluster.top.commands.env import CommandEnv, pass_env
from cluster.top.database import DatabaseChoice, DatabaseKind, resolve_database, start_embedded
from cluster.top.entry import user_error
from cluster.top.platform_state import PlatformState, address_answers, state_path
from storage.backup_layout import display_uri, read_manifest
from storage.backups import backup as take_backup
from storage.database import check_connection, ensure_database, normalize_url
from storage.errors import DatabaseUnavailable, StorageError
from storage.restores import restore as restore_backup
from storage.vector_files import absolute_storage_uri

logger = logging.getLogger(__name__)

pg_bin_option = click.option(
    "--pg-bin",
    type=click.Path(file_okay=False, path_type=Path),
    help="folder holding pg_dump / pg_restore (default: the newest fitting one found)",
)
no_progress_option = click.option("--no-progress", is_flag=True, help="no progress display")


def _progress(env: CommandEnv, *, enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=env.notices,
        disable=not enabled,
        transient=True,
    )


@click.command("backup", short_help="back up the database and the storage URI (safe while running)")
@click.argument("dest")
@click.option(
    "--keep",
    type=click.IntRange(min=1),
    help="then keep only the newest N backups in DEST (older pulse-<stamp> folders are deleted)",
)
@pg_bin_option
@no_progress_option
@pass_env
def backup(env: CommandEnv, *, dest: str, keep: int | None, pg_bin: Path | None, no_progress: bool) -> int:
    """Back up the database (pg_dump) and the storage URI's vector files, raw records and snapshots into
    DEST/pulse-<UTC stamp>/ (DEST: a folder or a pyarrow URI such as s3://bucket/backups), consistent with
    each other at one point; safe while the platform runs."""
    db = env.database()
    storage = absolute_storage_uri(env.settings.storage.uri)
    with _progress(env, enabled=not no_progress) as bar:
        task = bar.add_task("backup", total=None)
        try:
            result = take_backup(
                database_url=db.url,
                storage_uri=storage,
                dest=dest if "://" in dest else str(Path(dest).expanduser().resolve()),
                keep=keep,
                pg_bin=pg_bin,
                progress=lambda path, size: bar.update(task, advance=size, description=f"backup {path}"),
            )
        except StorageError as exc:
            return user_error(exc)
    env.console.print(result.line(), markup=False)
    return 0


def _platform_up(settings: Settings) -> str | None:
    """The Ray address of the platform `pulse up` recorded, when it answers."""
    state = PlatformState.load(state_path(settings.var_dir))
    if state.ray_address and address_answers(state.ray_address):
        return state.ray_address
    return None


def restore_target(settings: Settings) -> DatabaseChoice:
    """The database to restore into, in the commands' order (PULSE_DATABASE__URL, the one `pulse up`
    recorded, the default choice), without requiring a schema: it may be empty, or not exist yet (a
    configured one is then created, as the default choice creates its own)."""
    if settings.database.url is not None:
        url = normalize_url(settings.database.url.get_secret_value())
        ensure_database(url, timeout_s=settings.database.connect_timeout_s)  # restore creates it when missing
        return DatabaseChoice(url, "configured", check_connection(url))
    path = state_path(settings.var_dir)
    state = PlatformState.load(path)
    if state.database_url and state.database_kind in ("local", "embedded", "configured"):
        url = state.database_url
        try:
            version = check_connection(url)
        except DatabaseUnavailable:
            if state.database_kind != "embedded" or not state.embedded_db_dir:
                raise
            from sqlalchemy import make_url

            url = start_embedded(Path(state.embedded_db_dir), make_url(url).database or "postgres")
            version = check_connection(url)
        kind = cast(DatabaseKind, state.database_kind)
        return DatabaseChoice(url, kind, version, recorded_in=path)
    return resolve_database(settings.database)


@click.command("restore", short_help="restore a backup into an empty database and storage URI")
@click.argument("src")
@click.option(
    "--force",
    is_flag=True,
    help="replace what the database and storage URI hold (the platform must be down: `pulse down`)",
)
@pg_bin_option
@no_progress_option
@pass_env
def restore(env: CommandEnv, *, src: str, force: bool, pg_bin: Path | None, no_progress: bool) -> int:
    """Restore one backup folder (SRC: DEST/pulse-<stamp>, a path or URI) into the database and the
    storage URI, which must be empty (or --force, with the platform down); checks every file's SHA-256,
    then migrates when the backup's schema is older. Start the platform afterwards (`pulse up`)."""
    if force and (address := _platform_up(env.settings)):
        return user_error(
            f"the platform `pulse up` started is running (Ray at {address}): run `pulse down` before "
            "`pulse restore --force`, which replaces its database and storage"
        )
    source = src if "://" in src else str(Path(src).expanduser().resolve())
    try:
        db = restore_target(env.settings)
        env.notices.print(f"restoring into {db.describe()}", markup=False)
        manifest = read_manifest(source)
        storage = absolute_storage_uri(env.settings.storage.uri)
        with _progress(env, enabled=not no_progress) as bar:
            task = bar.add_task("restore", total=manifest.total_bytes)
            result = restore_backup(
                source=source,
                database_url=db.url,
                storage_uri=storage,
                force=force,
                pg_bin=pg_bin,
                progress=lambda path, size: bar.update(task, advance=size, description=f"restore {path}"),
            )
    except StorageError as exc:
        return user_error(exc)
    env.console.print(result.line(), markup=False)
    env.notices.print(
        f"storage {display_uri(storage)}; start the platform with `pulse up` (actors catch up from the "
        "restored snapshots)",
        markup=False,
    )
    return 0
