"""Backups without a database: names, manifests, retention, copies, choosing pg_dump (storage.backups)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from storage.backup_layout import (
    DUMP_FILE,
    FORMAT_VERSION,
    MANIFEST_FILE,
    BackupFile,
    BackupManifest,
    ConsistencyPoint,
    backup_stamp,
    child_uri,
    copy_file,
    display_uri,
    list_backups,
    prune_backups,
    read_manifest,
)
from storage.errors import PgToolMissing, RestoreError
from storage.pg_tools import PgTool, choose_tool, libpq_env, parse_tool_version, server_major


def manifest(**over: object) -> BackupManifest:
    fields: dict[str, object] = {
        "format_version": FORMAT_VERSION,
        "created_at": "2026-12-07T04:00:00+00:00",
        "pulse_version": "0.1.0",
        "alembic_revision": "0009",
        "server_version": "15.20",
        "server_version_num": 150020,
        "pg_dump_version": "15.20",
        "dump": BackupFile(DUMP_FILE, 10, "a" * 64),
        "files": (BackupFile("vectors/model=1/x.parquet", 5, "b" * 64),),
        "consistency": ConsistencyPoint(
            snapshot_id="00000003-00000002-1",
            taken_at="2026-12-07T04:00:00+00:00",
            vector_files=1,
            vector_files_max_id=7,
            document_deletions_max_id=0,
            actor_snapshots={"index-1-0": "20261207T035959-abc123"},
        ),
    }
    fields.update(over)
    return BackupManifest(**fields)  # type: ignore[arg-type]


def test_manifest_round_trips_and_counts_bytes() -> None:
    m = manifest()
    again = BackupManifest.from_json(m.to_json(), source="here")
    assert again == m
    assert again.total_bytes == 15 and again.pg_dump_major == 15


def test_manifest_of_another_format_or_garbage_is_refused_with_what_to_do() -> None:
    other = manifest().to_json().replace(f'"format_version": {FORMAT_VERSION}', '"format_version": 99')
    with pytest.raises(RestoreError, match=r"format 99 .* Pulse version that wrote it"):
        BackupManifest.from_json(other, source="here")
    with pytest.raises(RestoreError, match="unreadable"):
        BackupManifest.from_json('{"format_version": 1}', source="here")


def test_a_folder_without_manifest_is_not_a_backup(tmp_path: Path) -> None:
    with pytest.raises(RestoreError, match=r"no manifest\.json there"):
        read_manifest(str(tmp_path))


def test_stamps_sort_by_time_and_uris_keep_their_query() -> None:
    t = datetime(2026, 12, 7, 4, 5, 6, 789000, tzinfo=UTC)
    assert backup_stamp(t) == "pulse-20261207T040506.789Z"
    later = [backup_stamp(t + timedelta(milliseconds=n)) for n in (1, 300, 1000, 60_000)]
    assert sorted(later) == later
    assert child_uri("s3://b/backups/?endpoint_override=h:9&scheme=http", "pulse-x") == (
        "s3://b/backups/pulse-x?endpoint_override=h:9&scheme=http"
    )
    assert child_uri("/srv/backups", "pulse-x") == "/srv/backups/pulse-x"
    shown = display_uri("s3://b/p?access_key=AK&secret_key=SK&scheme=http")
    assert shown == "s3://b/p?access_key=AK&secret_key=***&scheme=http"


def _backup_folder(root: Path, name: str, *, complete: bool) -> None:
    (root / name / "storage").mkdir(parents=True)
    (root / name / DUMP_FILE).write_bytes(b"x")
    if complete:
        (root / name / MANIFEST_FILE).write_text("{}")


def test_retention_keeps_the_newest_complete_backups(tmp_path: Path) -> None:
    names = [f"pulse-20261207T0{h}0000.000Z" for h in range(1, 7)]
    for i, name in enumerate(names):
        _backup_folder(tmp_path, name, complete=i not in (1, 5))  # 1: crashed long ago; 5: in progress
    (tmp_path / "notes").mkdir()  # not a backup: never touched
    removed = prune_backups(str(tmp_path), keep=2)
    assert removed == names[:3]
    assert [n for n, _ in list_backups(str(tmp_path))] == names[3:]
    assert (tmp_path / "notes").is_dir()
    assert prune_backups(str(tmp_path), keep=2) == []
    with pytest.raises(ValueError, match="at least 1"):
        prune_backups(str(tmp_path), keep=0)


def test_copy_hashes_what_it_copies_and_leaves_no_temporary(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40_000  # 10 MB: more than one chunk
    (tmp_path / "a.bin").write_bytes(data)
    fs = pafs.LocalFileSystem()
    size, digest = copy_file(fs, str(tmp_path / "a.bin"), fs, str(tmp_path / "out" / "deep" / "b.bin"))
    assert (size, digest) == (len(data), hashlib.sha256(data).hexdigest())
    assert (tmp_path / "out" / "deep" / "b.bin").read_bytes() == data
    assert [p.name for p in (tmp_path / "out" / "deep").iterdir()] == ["b.bin"]
    with pytest.raises(FileNotFoundError):
        copy_file(fs, str(tmp_path / "missing"), fs, str(tmp_path / "out" / "c.bin"))
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["deep"]


def test_tool_versions_and_the_choice_of_the_closest_newer_one() -> None:
    assert parse_tool_version("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n") == (15, "15.20")
    assert parse_tool_version("pg_restore (PostgreSQL) 16.2\n") == (16, "16.2")
    assert parse_tool_version("bash: no") is None
    assert server_major(150020) == 15 and server_major(160002) == 16
    tools = [PgTool(Path("/a/pg_dump"), 16, "16.2"), PgTool(Path("/b/pg_dump"), 15, "15.20")]
    assert choose_tool(tools, name="pg_dump", at_least=15).version == "15.20"
    assert choose_tool(tools, name="pg_dump", at_least=16).version == "16.2"
    with pytest.raises(
        PgToolMissing, match=r"pg_dump 17 or newer .*found: /a/pg_dump \(16.2\).*postgresql-client-17"
    ):
        choose_tool(tools, name="pg_dump", at_least=17)


def test_libpq_environment_carries_the_password_not_the_command_line() -> None:
    env = libpq_env("postgresql://bob:s%40cret@db.example:6543/pulse", base={"PGPASSWORD": "old", "X": "1"})
    assert env == {
        "X": "1",
        "PGHOST": "db.example",
        "PGPORT": "6543",
        "PGUSER": "bob",
        "PGPASSWORD": "s@cret",
        "PGDATABASE": "pulse",
    }
    socket = libpq_env("postgresql+psycopg://postgres:@/pulse?host=/tmp/pg", base={})
    assert socket == {"PGHOST": "/tmp/pg", "PGUSER": "postgres", "PGDATABASE": "pulse"}
