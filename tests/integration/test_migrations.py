from __future__ import annotations

import pytest
from alembic import command

from storage.database import drop_database, ensure_database
from storage.errors import SchemaOutdated
from storage.migrate import alembic_config, current_revision, head_revision, require_current, upgrade
from tests.conftest import sibling_database


def test_upgrade_is_idempotent_and_reversible(pg_server_url: tuple[str, str]) -> None:
    url = sibling_database(pg_server_url[0], "_mig")
    ensure_database(url)
    try:
        with pytest.raises(SchemaOutdated, match="run `pulse migrate`"):
            require_current(url)
        upgrade(url)
        upgrade(url)
        assert current_revision(url) == head_revision()
        require_current(url)
        command.downgrade(alembic_config(url), "base")
        assert current_revision(url) is None
        upgrade(url)
        assert current_revision(url) == head_revision()
    finally:
        drop_database(url)


def test_0006_identifies_the_language_of_documents_stored_without_one(pg_server_url: tuple[str, str]) -> None:
    from sqlalchemy import create_engine, text

    url = sibling_database(pg_server_url[0], "_mig6")
    ensure_database(url)
    engine = create_engine(url)
    try:
        upgrade(url, "0005")
        with engine.begin() as conn:
            for i, (title, body, lang) in enumerate(
                [
                    ("Stormy Daniels sues Trump", "The adult film star filed a lawsuit on Tuesday.", None),
                    ("تركيا", "تركيا محاطة بالبحار من ثلاث جهات: بحر إيجه من الغرب والبحر الأسود.", None),
                    ("Declared", "A record that said what it is keeps it.", "fr"),
                ]
            ):
                conn.execute(
                    text(
                        "INSERT INTO documents (canonical_url, title, text, language, content_hash) "
                        "VALUES (:u, :t, :b, :l, :h)"
                    ),
                    {"u": f"urn:t:{i}", "t": title, "b": body, "l": lang, "h": str(i)},
                )
        upgrade(url)
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT canonical_url, language, language_confidence FROM documents ORDER BY 1")
            ).all()
        assert [(r[0], r[1]) for r in rows] == [("urn:t:0", "en"), ("urn:t:1", "ar"), ("urn:t:2", "fr")]
        assert rows[0][2] > 0.5 and rows[1][2] > 0.5 and rows[2][2] is None
    finally:
        engine.dispose()
        drop_database(url)
