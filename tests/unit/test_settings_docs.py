"""Every setting is documented: a description, a line in .env.example and a row in docs/settings.md."""

from __future__ import annotations

import re
from pathlib import Path

from cluster.ground.settings import Settings, iter_env_names
from storage.vector_files import absolute_storage_uri

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_has_a_description() -> None:
    missing = [name for name, description in iter_env_names() if not description.strip()]
    assert missing == []


def test_env_example_lists_exactly_the_settings() -> None:
    documented = set(re.findall(r"(PULSE_[A-Z0-9_]+)=", (ROOT / ".env.example").read_text()))
    assert documented == {name for name, _ in iter_env_names()}


def settings_table() -> dict[str, tuple[str, str]]:
    """The rows of the table in docs/settings.md: variable -> (default, description)."""
    rows: dict[str, tuple[str, str]] = {}
    for line in (ROOT / "docs" / "settings.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| `PULSE_"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            assert len(cells) == 3, f"a settings row has three cells (variable, default, description): {line}"
            name = cells[0].strip("`")
            assert name not in rows, f"{name} has two rows in docs/settings.md"
            rows[name] = (cells[1], cells[2])
    return rows


def test_settings_table_lists_exactly_the_settings() -> None:
    table = set(settings_table())
    settings = {name for name, _ in iter_env_names()}
    assert sorted(settings - table) == [], "settings without a row in docs/settings.md"
    assert sorted(table - settings) == [], "rows in docs/settings.md naming no setting"


def test_settings_table_says_what_the_code_says() -> None:
    """Each row's description is the field's own (backticks aside), so the two cannot drift apart."""
    table = settings_table()
    drifted = [
        name
        for name, description in iter_env_names()
        if name in table and table[name][1].replace("`", "") != description.replace("`", "")
    ]
    assert drifted == [], "copy the Field description of these settings into docs/settings.md"


def test_nested_env_names_are_read(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PULSE_SERVE__PORT", "9123")
    monkeypatch.setenv("PULSE_DATABASE__URL", "postgresql://u:pw@h/d")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.serve.port == 9123
    assert settings.database.url is not None
    assert "pw" not in repr(settings.database)


def test_prod_refuses_placeholder_or_missing_database_url(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pytest
    from pydantic import ValidationError

    monkeypatch.setenv("PULSE_ENV", "prod")
    with pytest.raises(ValidationError, match="needs PULSE_DATABASE__URL"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("PULSE_DATABASE__URL", "postgresql://pulse:CHANGE_ME@db/pulse")
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("PULSE_DATABASE__URL", "postgresql://pulse:real@db/pulse")
    with pytest.raises(ValidationError, match="PULSE_CMS__JWT_SECRET"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("PULSE_CMS__JWT_SECRET", "x" * 40)
    assert Settings(_env_file=None).env == "prod"  # type: ignore[call-arg]


def test_local_storage_paths_become_absolute_uris_stay() -> None:
    assert absolute_storage_uri("var/storage") == str((Path.cwd() / "var" / "storage").resolve())
    assert absolute_storage_uri("s3://bucket/prefix") == "s3://bucket/prefix"
