"""Backups and restores on real PostgreSQL and real files: a local folder and S3 (moto's server, through
pyarrow.fs, as the storage URI itself); refusals, damage, retention and the `pulse backup` command.

The source is a database of its own (documents ingested, a model, vector files named by the manifest, an
orphan file no row names, an index snapshot, raw fetch records, a CMS item); each restore goes into a new
database and a new storage folder, dropped afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest
from sqlalchemy import text

from cluster.ground.settings import get_settings
from jobs.ingest.loader import ingest_file
from storage.backup_layout import DUMP_FILE, MANIFEST_FILE, STORAGE_DIR, list_backups
from storage.backups import backup
from storage.database import drop_database, ensure_database, make_engine
from storage.errors import BackupError, PgToolMissing, RestoreError, RestoreTargetNotEmpty
from storage.index_snapshots import SnapshotStore
from storage.migrate import head_revision, upgrade
from storage.pg_tools import choose_tool, find_tools
from storage.raw_files import RawFileStore
from storage.restores import restore
from storage.vector_files import VectorBatch, VectorFileStore
from tests.conftest import sibling_database
from tests.integration.helpers import cli_runner, sample_subset
from tests.support.platform_compare import ids, table_counts


@dataclass(frozen=True)
class Source:
    url: str
    storage: str
    vector_paths: tuple[str, ...]
    orphan: str


def storage_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def source(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    url = sibling_database(database_url, "_bksrc")
    ensure_database(url)
    upgrade(url)
    tmp = tmp_path_factory.mktemp("backup-source")
    ingest_file(sample_subset(tmp / "docs.jsonl", n_other=20), database_url=url, source_name="huffpost_2018")
    storage = str(tmp / "storage")
    engine = make_engine(url, pool_size=1)
    vectors = VectorFileStore(storage)
    paths = []
    rng = np.random.default_rng(3)
    with engine.begin() as conn:
        model = conn.execute(
            text("INSERT INTO embedding_models (name, revision, dimension) VALUES ('m', 'r', 8) RETURNING id")
        ).scalar_one()
        doc_ids = list(conn.execute(text("SELECT id FROM documents ORDER BY id")).scalars())
        for part in (doc_ids[: len(doc_ids) // 2], doc_ids[len(doc_ids) // 2 :]):
            batch = VectorBatch(
                np.asarray(part), ["h"] * len(part), rng.random((len(part), 8), dtype=np.float32)
            )
            path = vectors.write(model_id=model, batch=batch)  # the file first, then its manifest row
            conn.execute(
                text("INSERT INTO vector_files (model_id, path, row_count) VALUES (:m, :p, :n)"),
                {"m": model, "p": path, "n": len(part)},
            )
            paths.append(path)
        conn.execute(
            text(
                "INSERT INTO cms_items (type, title_en, body_en, status) "
                "VALUES ('article', 'Hi', '<p>x</p>', 'draft')"
            )
        )
    engine.dispose()
    # A file no manifest row names (a crashed embed job's): not part of any backup.
    orphan = vectors.write(
        model_id=model, batch=VectorBatch(np.asarray([1]), ["h"], np.ones((1, 8), np.float32))
    )
    SnapshotStore(storage).save("index-1-document-0", {"ids": np.arange(4)}, {"watermark": 2})
    RawFileStore(storage).write(
        [{"url": "https://example.com/a", "status": 200, "body": b"<html>a</html>"}],
        run_id=1,
        day=datetime.now(UTC),
    )
    yield Source(url=url, storage=storage, vector_paths=tuple(paths), orphan=orphan)
    drop_database(url)


@pytest.fixture
def target(database_url: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A new database name (not created: restore creates it) and a new storage folder."""
    url = sibling_database(database_url, f"_bkdst{uuid.uuid4().hex[:6]}")
    yield url, tmp_path / "restored-storage"
    drop_database(url)


def assert_same_platform(src: Source, url: str, storage: Path) -> None:
    assert table_counts(url) == table_counts(src.url)
    for table in ("documents", "cms_items", "vector_files", "sources", "embedding_models"):
        assert ids(url, table) == ids(src.url, table), table
    copied = storage_files(storage)
    original = storage_files(Path(src.storage))
    assert src.orphan not in copied
    assert copied == {k: v for k, v in original.items() if k != src.orphan}


def test_local_backup_restores_into_an_empty_database_and_storage(
    source: Source, target, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    url, storage = target
    seen: list[str] = []
    result = backup(
        database_url=source.url,
        storage_uri=source.storage,
        dest=str(tmp_path / "backups"),
        progress=lambda path, size: seen.append(path),
    )
    folder = Path(result.location)
    assert folder.parent == tmp_path / "backups" and folder.name.startswith("pulse-")
    assert (folder / DUMP_FILE).stat().st_size == result.manifest.dump.size > 0
    assert (folder / MANIFEST_FILE).is_file()
    m = result.manifest
    assert m.alembic_revision == head_revision() and m.server_version_num >= 150000
    assert m.consistency.vector_files == 2 and m.consistency.actor_snapshots.keys() == {"index-1-document-0"}
    listed = {f.path for f in m.files}
    assert set(source.vector_paths) <= listed and source.orphan not in listed
    assert {p.split("/")[0] for p in listed} == {"vectors", "raw", "snapshots"}
    assert DUMP_FILE in seen and set(source.vector_paths) <= set(seen)
    assert result.line().startswith(f"backup {folder}: {len(m.files) + 1} files, ")

    restored = restore(source=result.location, database_url=url, storage_uri=str(storage))
    assert restored.migrated_to is None
    assert_same_platform(source, url, storage)

    # A second restore into the same (now full) target is refused, database first, then storage.
    with pytest.raises(RestoreTargetNotEmpty, match=r"the database .* is not empty \(\d+ tables\).*--force"):
        restore(source=result.location, database_url=url, storage_uri=str(tmp_path / "empty"))
    fresh = sibling_database(url, "x")
    try:
        with pytest.raises(RestoreTargetNotEmpty, match=r"the storage URI .* is not empty"):
            restore(source=result.location, database_url=fresh, storage_uri=str(storage))
    finally:
        drop_database(fresh)

    # --force replaces what is there: a document added after the restore is gone again.
    engine = make_engine(url, pool_size=1)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO documents (canonical_url, title, text, content_hash) VALUES ('u', 't', 'x', 'h')"
            )
        )
    engine.dispose()
    (storage / "vectors" / "stray.parquet").write_bytes(b"stray")
    restore(source=result.location, database_url=url, storage_uri=str(storage), force=True)
    assert_same_platform(source, url, storage)


def test_a_damaged_backup_is_refused_naming_the_file(source: Source, target, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, storage = target
    result = backup(database_url=source.url, storage_uri=source.storage, dest=str(tmp_path / "b"))
    victim = Path(result.location) / STORAGE_DIR / source.vector_paths[1]
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(RestoreError, match=f"{source.vector_paths[1]} is damaged.*use another backup"):
        restore(source=result.location, database_url=url, storage_uri=str(storage))
    assert not (storage / source.vector_paths[1]).exists()
    assert not [p for p in storage.rglob("*") if ".tmp-" in p.name]


def test_a_missing_vector_file_fails_the_backup_and_a_bare_database_is_refused(  # type: ignore[no-untyped-def]
    source: Source, database_url: str, tmp_path: Path
) -> None:
    moved = Path(source.storage) / source.vector_paths[0]
    aside = tmp_path / "aside.parquet"
    moved.rename(aside)
    try:
        with pytest.raises(BackupError, match=f"vector file {source.vector_paths[0]} .* is missing"):
            backup(database_url=source.url, storage_uri=source.storage, dest=str(tmp_path / "b"))
    finally:
        aside.rename(moved)
    assert list_backups(str(tmp_path / "b")) == []  # no half backup left behind
    bare = sibling_database(database_url, "_bkbare")
    ensure_database(bare)
    try:
        with pytest.raises(BackupError, match="no Pulse schema; run `pulse migrate`"):
            backup(database_url=bare, storage_uri=source.storage, dest=str(tmp_path / "c"))
    finally:
        drop_database(bare)


def test_pg_dump_is_found_for_this_server() -> None:
    tools = find_tools("pg_dump")
    assert any(t.major >= 15 for t in tools), tools
    with pytest.raises(PgToolMissing, match="pg_dump 99 or newer"):
        choose_tool(tools, name="pg_dump", at_least=99)


def test_pulse_backup_keeps_the_newest_n_and_pulse_restore_brings_one_back(  # type: ignore[no-untyped-def]
    source: Source,
    target,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PULSE_DATABASE__URL", source.url)
    monkeypatch.setenv("PULSE_STORAGE__URI", source.storage)
    monkeypatch.setenv("PULSE_VAR_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    pulse = cli_runner(capsys)
    dest = tmp_path / "nightly"
    try:
        for _ in range(3):
            code, out, err = pulse("backup", str(dest), "--keep", "2", "--no-progress")
            assert code == 0, err
        assert out.startswith(f"backup {dest}/pulse-") and "files," in out and "removed 1 older backup" in out
        kept = list_backups(str(dest))
        assert len(kept) == 2 and all(done for _, done in kept)
        url, storage = target
        monkeypatch.setenv("PULSE_DATABASE__URL", url)
        monkeypatch.setenv("PULSE_STORAGE__URI", str(storage))
        get_settings.cache_clear()
        code, out, err = pulse("restore", str(dest / kept[-1][0]), "--no-progress")
        assert code == 0, err
        assert out.startswith(f"restored {dest / kept[-1][0]}: ")
        assert_same_platform(source, url, storage)
        code, _, err = pulse("restore", str(dest / kept[-1][0]), "--no-progress")
        assert code != 0 and "is not empty" in err and "--force" in err
        code, _, err = pulse("restore", str(tmp_path), "--no-progress")
        assert code != 0 and "no manifest.json there" in err
    finally:
        get_settings.cache_clear()


# ------------------------------------------------------------------------------------------------ S3
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """A local S3-compatible server (moto's); the ``?query`` a pyarrow S3 URI needs to reach it."""
    from moto.server import ThreadedMotoServer

    values = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    query = f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
    fs, _ = pafs.FileSystem.from_uri(f"s3://pulse-test?{query}&allow_bucket_creation=true")
    for bucket in ("pulse-backups", "pulse-storage"):
        fs.create_dir(bucket)
    try:
        yield query
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_backup_to_s3_and_restore_from_s3(source: Source, target, s3: str) -> None:  # type: ignore[no-untyped-def]
    url, storage = target
    result = backup(
        database_url=source.url, storage_uri=source.storage, dest=f"s3://pulse-backups/nightly?{s3}"
    )
    assert result.location.startswith("s3://pulse-backups/nightly/pulse-") and result.location.endswith(
        f"?{s3}"
    )
    fs, root = pafs.FileSystem.from_uri(result.location)
    stored = {
        i.path[len(root) + 1 :]
        for i in fs.get_file_info(pafs.FileSelector(root, recursive=True))
        if i.type == pafs.FileType.File
    }
    assert {DUMP_FILE, MANIFEST_FILE, *(f"{STORAGE_DIR}/{p}" for p in source.vector_paths)} <= stored
    restore(source=result.location, database_url=url, storage_uri=str(storage))
    assert_same_platform(source, url, storage)


def test_the_storage_uri_itself_on_s3(s3: str) -> None:
    """Vector files, snapshots and raw records through an s3:// storage URI (pyarrow.fs), as on a cluster."""
    uri = f"s3://pulse-storage/platform?{s3}"
    rng = np.random.default_rng(5)
    batch = VectorBatch(np.asarray([3, 1, 2]), ["a", "b", "c"], rng.random((3, 384), dtype=np.float32))
    store = VectorFileStore(uri)
    path = store.write(model_id=7, batch=batch)
    assert path.startswith("vectors/model=7/date=")
    back = VectorFileStore(uri).read(path)
    assert back.document_ids.tolist() == [3, 1, 2] and back.content_hashes == ["a", "b", "c"]
    np.testing.assert_array_equal(back.vectors, batch.vectors)
    snapshots = SnapshotStore(uri, keep=1)
    first = snapshots.save("index-7-document-0", {"ids": np.arange(3)}, {"watermark": 1})
    second = snapshots.save("index-7-document-0", {"ids": np.arange(5)}, {"watermark": 2})
    assert first != second
    loaded = SnapshotStore(uri).load("index-7-document-0")
    assert loaded is not None and loaded[1]["watermark"] == 2 and loaded[0]["ids"].tolist() == list(range(5))
    raw = RawFileStore(uri)
    written = raw.write([{"url": "https://example.com/", "status": 200}], run_id=4, day=datetime.now(UTC))
    assert raw.paths() == [written] and raw.read(written).column("url").to_pylist() == [
        "https://example.com/"
    ]


def test_writes_after_the_consistency_point_stay_out_and_a_pruned_snapshot_is_dropped(  # type: ignore[no-untyped-def]
    database_url: str, target, tmp_path: Path
) -> None:
    """While the backup copies files (after pg_dump), a writer adds a vector file and its manifest row, and
    an index shard writes a snapshot (and the stamp the backup chose is pruned): the backup holds neither the
    new row nor the new file, and leaves the pruned snapshot out, naming it."""
    url = sibling_database(database_url, "_bkrace")
    ensure_database(url)
    upgrade(url)
    storage = str(tmp_path / "storage")
    vectors, snapshots = VectorFileStore(storage), SnapshotStore(storage)
    engine = make_engine(url, pool_size=1)

    def write_vectors(model: int) -> str:
        path = vectors.write(
            model_id=model, batch=VectorBatch(np.asarray([1]), ["h"], np.ones((1, 8), np.float32))
        )
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO vector_files (model_id, path, row_count) VALUES (:m, :p, 1)"),
                {"m": model, "p": path},
            )
        return path

    try:
        with engine.begin() as conn:
            model = conn.execute(
                text(
                    "INSERT INTO embedding_models (name, revision, dimension) "
                    "VALUES ('m', 'r', 8) RETURNING id"
                )
            ).scalar_one()
        before = write_vectors(model)
        snapshots.save("index-1-document-0", {"ids": np.arange(2)}, {"watermark": 1})
        snapshots.save("trends-1-en", {"ids": np.arange(2)}, {"watermark": 1})
        late: list[str] = []

        def meanwhile(path: str, size: int) -> None:
            if path == DUMP_FILE:  # pg_dump is done: the point is behind us
                late.append(write_vectors(model))
                folder = Path(storage) / "snapshots" / "index-1-document-0"
                chosen = (folder / "CURRENT").read_text()
                snapshots.save("index-1-document-0", {"ids": np.arange(3)}, {"watermark": 2})
                # The prune of SnapshotStore.save (stamps written within one second sort by their random
                # suffix, so which one it removes here is chance): remove the chosen stamp as it would.
                shutil.rmtree(folder / chosen, ignore_errors=True)

        result = backup(database_url=url, storage_uri=storage, dest=str(tmp_path / "b"), progress=meanwhile)
        listed = {f.path for f in result.manifest.files}
        assert before in listed and late and late[0] not in listed
        assert result.manifest.consistency.vector_files == 1
        assert result.manifest.consistency.actor_snapshots_dropped == ["index-1-document-0"]
        assert set(result.manifest.consistency.actor_snapshots) == {"trends-1-en"}
        assert not [p for p in listed if p.startswith("snapshots/index-1-document-0/")]
        restored_url, restored_storage = target
        restore(source=result.location, database_url=restored_url, storage_uri=str(restored_storage))
        assert ids(restored_url, "vector_files") == ids(url, "vector_files")[:1]
        loaded = SnapshotStore(str(restored_storage)).load("trends-1-en")
        assert loaded is not None and loaded[1]["watermark"] == 1
        assert SnapshotStore(str(restored_storage)).load("index-1-document-0") is None
    finally:
        engine.dispose()
        drop_database(url)
