"""`pulse cms admin` against real PostgreSQL: restoring admin access from a shell, audited."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cluster.ground.passwords import verify_password
from cluster.ground.settings import get_settings
from cluster.top.cms_cli import cli_actor
from storage.cms_audit import AuditRow, list_audit
from storage.cms_users import RefreshTokenRepository, UserCredentials, UserRepository
from tests.conftest import CMS_TABLES, truncate
from tests.integration.helpers import cli_runner
from tests.integration.test_cms_users import run, session

NEW_PASSWORD = "a brand new passphrase"
LATER = datetime.now(UTC) + timedelta(days=1)

Pulse = Callable[..., tuple[int, str, str]]


@pytest.fixture
def pulse(  # type: ignore[no-untyped-def]
    engine, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Pulse]:
    """`pulse ARGS...` on the test database, with empty CMS tables (ids restart at 1)."""
    truncate(engine, CMS_TABLES)
    monkeypatch.setenv("PULSE_DATABASE__URL", database_url)
    get_settings.cache_clear()
    yield cli_runner(capsys)
    get_settings.cache_clear()


def stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))


def state(url: str, email: str) -> tuple[UserCredentials | None, AuditRow | None]:
    """The user's credentials and the newest audit row about it."""

    async def scenario(engine: AsyncEngine) -> tuple[UserCredentials | None, AuditRow | None]:
        async with session(engine) as s:
            creds = await UserRepository(s).credentials(email)
            if creds is None:
                return None, None
            rows = await list_audit(s, target=f"user:{creds.user.id}", limit=1)
            return creds, rows[0] if rows else None

    return run(url, scenario)


def test_restores_a_demoted_deactivated_user_as_admin_with_a_new_password(
    pulse: Pulse,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def setup(engine: AsyncEngine) -> None:
        async with session(engine) as s:
            users = UserRepository(s)
            ana = await users.create("ana@example.com", "Ana", "$argon2id$lost", "author")
            await users.update(ana.id, active=False)
            await RefreshTokenRepository(s).issue("jti-old", ana.id, LATER)
            await s.commit()

    run(database_url, setup)
    stdin(monkeypatch, NEW_PASSWORD + "\n")
    code, out, err = pulse("cms", "admin", "--email", "ANA@example.com", "--password-stdin")
    assert code == 0 and "error" not in err, err
    assert "CMS user 1 ana@example.com is an active admin (was author, inactive)" in out
    assert "1 refresh token(s) revoked" in out and NEW_PASSWORD not in out
    assert f"audited as user.restore_admin by {cli_actor()}" in out

    creds, audit = state(database_url, "ana@example.com")
    assert creds is not None and (creds.user.role, creds.user.active) == ("admin", True)
    assert verify_password(creds.password_hash, NEW_PASSWORD)  # the login check passes
    assert audit is not None and audit.actor == cli_actor() and audit.actor.startswith("cli:")
    assert (audit.action, audit.outcome) == ("user.restore_admin", "ok")
    assert audit.before == {"role": "author", "active": False}
    assert audit.after == {"email": "ana@example.com", "role": "admin", "active": True}

    async def old_token(engine: AsyncEngine) -> int | None:
        async with session(engine) as s:
            return await RefreshTokenRepository(s).consume("jti-old")

    assert run(database_url, old_token) is None  # its sessions ended with the reset


def test_creates_an_admin_with_a_generated_password_only_when_asked(pulse: Pulse, database_url: str) -> None:
    code, _, err = pulse("cms", "admin", "--email", "new@example.com")
    assert code == 2 and "no CMS user has the address 'new@example.com'" in err and "--create" in err
    assert state(database_url, "new@example.com") == (None, None)

    code, out, err = pulse("cms", "admin", "--email", "new@example.com", "--create", "--name", "Nour")
    assert code == 0 and "error" not in err, err
    assert "created CMS user 1 new@example.com as an active admin" in out
    shown = re.search(r"new password \(shown once, store it now\): (\S+)", out)
    assert shown is not None
    creds, audit = state(database_url, "new@example.com")
    assert creds is not None and (creds.user.role, creds.user.display_name) == ("admin", "Nour")
    assert verify_password(creds.password_hash, shown.group(1))
    assert audit is not None and audit.before is None and audit.actor == cli_actor()


def test_a_password_the_policy_refuses_changes_nothing(
    pulse: Pulse,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stdin(monkeypatch, "short\n")
    code, _, err = pulse("cms", "admin", "--email", "x@example.com", "--create", "--password-stdin")
    assert code == 2 and "error: the password from standard input is refused: " in err
    assert "at least 10" in err and state(database_url, "x@example.com") == (None, None)
