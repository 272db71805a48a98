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
