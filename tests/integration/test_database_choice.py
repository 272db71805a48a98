"""The database is chosen in the documented order; an unreachable one is a one-line error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from cluster.ground.settings import DatabaseSettings
from cluster.top.database import connect_database, resolve_database, stop_embedded
from storage.database import make_engine, make_session_factory, session_scope
from storage.documents import DocumentRecord, DocumentRepository
from storage.errors import DatabaseUnavailable

ROOT = Path(__file__).resolve().parents[2]


def test_configured_url_wins(database_url: str) -> None:
    choice = resolve_database(DatabaseSettings(url=SecretStr(database_url), local_port=1))
    assert choice.kind == "configured"
    assert choice.url == database_url


def test_unreachable_configured_url_names_it_with_the_password_masked() -> None:
    settings = DatabaseSettings(
        url=SecretStr("postgresql://pulse:hunter2@127.0.0.1:1/pulse"), connect_timeout_s=2
    )
    with pytest.raises(DatabaseUnavailable) as err:
        resolve_database(settings)
    message = str(err.value)
    assert "hunter2" not in message
    assert "pulse:***@127.0.0.1:1/pulse" in message


def test_cli_prints_one_line_not_a_traceback() -> None:
    env = {**os.environ, "PULSE_DATABASE__URL": "postgresql://pulse:hunter2@127.0.0.1:1/pulse"}
    proc = subprocess.run(
        [sys.executable, "-m", "cluster.top.cli", "status"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    assert "127.0.0.1:1/pulse" in lines[0] and "hunter2" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_embedded_server_when_nothing_listens(tmp_path_factory: pytest.TempPathFactory) -> None:
    data_dir = Path("/tmp") / f"pulse-embedded-{os.getpid()}"
    settings = DatabaseSettings(local_port=1, embedded_dir=data_dir, name="pulse_embedded_test")
    try:
        choice = connect_database(settings, migrate=True)
        assert choice.kind == "embedded"
        assert choice.server_version.startswith("16")
        engine = make_engine(choice.url, pool_size=1)
        try:
            with session_scope(make_session_factory(engine)) as session:
                repo = DocumentRepository(session)
                repo.upsert_documents(
                    documents=[DocumentRecord(canonical_url="https://e.com/x", title="T", text="x")],
                    source_id=None,
                )
            with session_scope(make_session_factory(engine)) as session:
                assert DocumentRepository(session).count() == 1
        finally:
            engine.dispose()
        # A second resolution finds the running server and keeps the data.
        again = resolve_database(settings)
        assert again.url == choice.url
    finally:
        stop_embedded(data_dir)
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)


# --- commands follow the platform `pulse up` recorded (cluster.top.targets) ---------------------------------


def _pulse(args: list[str], *, var_dir: Path, extra_env: dict[str, str], timeout: int = 120):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "RAY_ADDRESS"))}
    env.update({"PULSE_VAR_DIR": str(var_dir), "HF_HUB_OFFLINE": "1", **extra_env})
    return subprocess.run(
        [sys.executable, "-m", "cluster.top.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _record(var_dir: Path, database_url: str, **fields: object) -> None:
    from cluster.top.platform_state import PlatformState, state_path

    PlatformState(database_url=database_url, database_kind="local", **fields).save(state_path(var_dir))  # type: ignore[arg-type]


def _source_names(database_url: str) -> set[str]:
    from sqlalchemy import text

    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            return set(conn.execute(text("SELECT name FROM sources")).scalars())
    finally:
        engine.dispose()


def _news_file(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text(
        '{"id": "a1", "title": "Rivers rise", "text": "Rain all week.", "url": "https://news.example/a1"}\n'
    )
    return path


def test_a_command_uses_the_recorded_database_and_says_so(clean_db: str, tmp_path: Path) -> None:
    _record(tmp_path / "var", clean_db)
    proc = _pulse(
        ["ingest", str(_news_file(tmp_path, "World_News.jsonl"))], var_dir=tmp_path / "var", extra_env={}
    )
    assert proc.returncode == 0, proc.stderr
    name = clean_db.rsplit("/", 1)[-1]
    using = [line for line in proc.stderr.splitlines() if line.startswith("using ")]
    assert len(using) == 1 and name in using[0] and "recorded by `pulse up`" in using[0], proc.stderr
    assert "(source world_news)" in proc.stdout
    assert "world_news" in _source_names(clean_db)


def test_an_explicit_database_url_wins_over_the_record(clean_db: str, tmp_path: Path) -> None:
    _record(tmp_path / "var", "postgresql+psycopg://postgres@127.0.0.1:1/not_there")
    path = _news_file(tmp_path, "World_News.jsonl")
    proc = _pulse(
        ["ingest", str(path), "--source", "Wire"],
        var_dir=tmp_path / "var",
        extra_env={"PULSE_DATABASE__URL": clean_db},
    )
    assert proc.returncode == 0, proc.stderr
    assert "from PULSE_DATABASE__URL" in proc.stderr
    assert "Wire" in _source_names(clean_db)


def test_a_recorded_database_that_is_gone_is_an_error_naming_it(tmp_path: Path) -> None:
    _record(tmp_path / "var", "postgresql+psycopg://postgres@127.0.0.1:1/not_there")
    proc = _pulse(["sources", "list"], var_dir=tmp_path / "var", extra_env={})
    assert proc.returncode == 2
    assert "127.0.0.1:1/not_there" in proc.stderr and "recorded in" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_temporary_file_name_names_no_source(clean_db: str, tmp_path: Path) -> None:
    proc = _pulse(
        ["ingest", str(_news_file(tmp_path, "tmplndzpl7m"))],
        var_dir=tmp_path / "var",
        extra_env={"PULSE_DATABASE__URL": clean_db},
    )
    assert proc.returncode == 2
    assert "--source" in proc.stderr and "tmplndzpl7m" in proc.stderr


def test_embed_prints_its_summary_without_ray_internals(clean_db: str, tmp_path: Path) -> None:
    """A recorded Ray that is gone is reported; the job starts its own and prints only its own lines."""
    _record(tmp_path / "var", clean_db, ray_address="127.0.0.1:1")
    _pulse(["ingest", str(_news_file(tmp_path, "world.jsonl"))], var_dir=tmp_path / "var", extra_env={})
    proc = _pulse(
        ["embed"],
        var_dir=tmp_path / "var",
        extra_env={
            "PULSE_STORAGE__URI": str(tmp_path / "storage"),
            "PULSE_RAY__NUM_CPUS": "2",
            "PULSE_RAY__INCLUDE_DASHBOARD": "false",
            "PULSE_RAY__OBJECT_STORE_MEMORY_MB": "256",
        },
        timeout=240,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "embed: model" in proc.stdout and "1 embedded" in proc.stdout
    assert "127.0.0.1:1" in proc.stderr and "does not answer" in proc.stderr
    assert "Progress bars disabled" not in output
    assert "constructor arguments in the object store" not in output and "core_worker.cc" not in output
