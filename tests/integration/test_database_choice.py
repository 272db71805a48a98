"""The database is chosen in the documented order; an unreachable one is a one-line error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from cluster.database import connect_database, resolve_database, stop_embedded
from cluster.settings import DatabaseSettings
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
        [sys.executable, "-m", "cluster.cli", "status"],
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
