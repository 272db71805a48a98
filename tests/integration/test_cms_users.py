"""CMS users, API keys and refresh tokens on real PostgreSQL (async sessions, psycopg 3)."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from storage.cms_users import ApiKeyRepository, RefreshTokenRepository, UserRepository
from storage.database import make_async_engine
from storage.errors import CmsConflict, CmsNotFound, LastAdmin
from tests.conftest import truncate

T = TypeVar("T")
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
#: The CMS tables these tests write (CASCADE also empties the tables that point at users).
CMS_TABLES = ("cms_refresh_tokens", "cms_api_keys", "cms_users")
KEY_FORMAT = re.compile(r"^pulse_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{43}$")


@pytest.fixture
def cms_db(engine, database_url: str) -> str:  # type: ignore[no-untyped-def]
    """The test database with empty CMS account tables (ids restart at 1)."""
    truncate(engine, CMS_TABLES)
    return database_url


def run(url: str, scenario: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run an async scenario on a fresh async engine (one event loop per test, no plugin needed)."""

    async def main() -> T:
        engine = make_async_engine(url, pool_size=2)
        try:
            return await scenario(engine)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def session(engine: AsyncEngine) -> AsyncSession:
    return AsyncSession(engine, expire_on_commit=False)


async def make_user(s: AsyncSession, email: str = "Ana@Example.com", role: str = "author") -> int:
    return (await UserRepository(s).create(email, "Ana", "$argon2id$fake", role)).id


# -------------------------------------------------------------------------------------------- users


def test_users_create_find_list_count(cms_db: str) -> None:
    async def scenario(engine: AsyncEngine) -> None:
        async with session(engine) as s:
            users = UserRepository(s)
            ana = await users.create("  Ana@Example.COM ", "Ana", "$argon2id$h1", "admin")
            assert (ana.id, ana.email, ana.role, ana.active) == (1, "ana@example.com", "admin", True)
            assert ana.created_at.tzinfo is not None
            bo = await users.create("bo@example.com", "Bo", "$argon2id$h2", "author")
            await s.commit()
        async with session(engine) as s:
            users = UserRepository(s)
            assert await users.by_email("ANA@example.com") == ana
            assert await users.get(bo.id) == bo
            assert await users.get(999) is None
            assert await users.by_email("nobody@example.com") is None
            assert [u.email for u in await users.list()] == ["ana@example.com", "bo@example.com"]
            assert await users.count() == 2
            assert await users.count(role="admin") == 1
            assert await users.count(role="admin", active=False) == 0

    run(cms_db, scenario)


def test_duplicate_email_is_a_conflict_and_the_transaction_survives(cms_db: str) -> None:
    async def scenario(engine: AsyncEngine) -> None:
        async with session(engine) as s:
            users = UserRepository(s)
            await users.create("ana@example.com", "Ana", "$argon2id$h", "editor")
            with pytest.raises(CmsConflict) as info:
                await users.create("ANA@example.com", "Other Ana", "$argon2id$h", "viewer")
            assert info.value.field == "email" and info.value.value == "ana@example.com"
            await users.create("bo@example.com", "Bo", "$argon2id$h", "viewer")  # same transaction
            await s.commit()
        async with session(engine) as s:
            assert await UserRepository(s).count() == 2

    run(cms_db, scenario)


def test_update_user(cms_db: str) -> None:
    async def scenario(engine: AsyncEngine) -> None:
        async with session(engine) as s:
            users = UserRepository(s)
            uid = await make_user(s)
            changed = await users.update(uid, role="editor", active=False, display_name="Ana B.")
            assert (changed.role, changed.active, changed.display_name) == ("editor", False, "Ana B.")
            assert await users.update(uid) == changed  # nothing to change
            assert (await users.update(uid, active=True)).role == "editor"  # others kept
            with pytest.raises(CmsNotFound):
                await users.update(999, role="admin")
            with pytest.raises(CmsNotFound):
                await users.update(999)
            with pytest.raises(ValueError, match="unknown role"):
                await users.update(uid, role="root")
            with pytest.raises(ValueError, match="unknown role"):
                await users.create("x@example.com", "X", "h", "root")

    run(cms_db, scenario)


def test_the_last_active_admin_cannot_be_demoted_deactivated_or_deleted(cms_db: str) -> None:
    async def scenario(engine: AsyncEngine) -> None:
        async with session(engine) as s:
            users = UserRepository(s)
            ana = await make_user(s, "ana@example.com", "admin")
            await users.update(await make_user(s, "old@example.com", "admin"), active=False)  # not counted
            bo = await make_user(s, "bo@example.com", "author")
            with pytest.raises(LastAdmin, match="user 1 is the last active admin; making it author") as err:
                await users.update(ana, role="author")
            assert (err.value.user_id, err.value.change) == (ana, "making it author")
            with pytest.raises(LastAdmin, match="deactivating it"):
                await users.update(ana, active=False)
            with pytest.raises(LastAdmin, match="deleting it"):
                await users.delete(ana)
            # Refused changes leave the row and the transaction as they were.
            assert (await users.get(ana)) == (await users.by_email("ana@example.com"))
            assert (await users.update(ana, role="admin", active=True, display_name="A")).display_name == "A"
            assert (await users.delete(bo)).email == "bo@example.com"  # others come and go
            assert await users.get(bo) is None
            with pytest.raises(CmsNotFound):
                await users.delete(bo)
            with pytest.raises(CmsNotFound):
                await users.update(999, role="editor")
            await s.commit()
        async with session(engine) as s:
            row = await UserRepository(s).get(ana)
            assert row is not None and (row.role, row.active) == ("admin", True)

    run(cms_db, scenario)


def test_an_admin_can_be_removed_while_another_active_admin_remains(cms_db: str) -> None:
    async def scenario(engine: AsyncEngine) -> None:
        async with session(engine) as s:
            users = UserRepository(s)
            ana = await make_user(s, "ana@example.com", "admin")
            bo = await make_user(s, "bo@example.com", "admin")
            cy = await make_user(s, "cy@example.com", "admin")
            assert (await users.update(ana, role="editor")).role == "editor"
            assert (await users.update(bo, active=False)).active is False
            with pytest.raises(LastAdmin):  # cy is now the only active admin
                await users.delete(cy)
            assert (await users.update(bo, active=True)).active is True
            assert (await users.delete(cy)).role == "admin"
            with pytest.raises(LastAdmin):
                await users.update(bo, role="viewer")
            await s.commit()

    run(cms_db, scenario)


async def waits_for_a_lock(engine: AsyncEngine, pid: int, task: asyncio.Task[Any]) -> bool:
    """Whether backend ``pid`` comes to wait for a lock before ``task`` (its statement) is done."""
    while not task.done():
        async with engine.connect() as conn:  # a new transaction: pg_stat_activity is read afresh
            query = text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid")
            if (await conn.execute(query, {"pid": pid})).scalar_one() == "Lock":
                return True
        await asyncio.sleep(0.01)  # polls a condition; no result depends on how long this takes
    return False


def test_two_concurrent_demotions_of_the_last_two_admins_cannot_both_pass(cms_db: str) -> None:
    async def scenario(engine: AsyncEngine) -> list[Any]:
        async with session(engine) as s:
            ana = await make_user(s, "ana@example.com", "admin")
            bo = await make_user(s, "bo@example.com", "admin")
            await s.commit()
        async with session(engine) as a, session(engine) as b:
            b_pid = (await b.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await UserRepository(a).update(ana, role="author")  # a locks both admin rows
            second = asyncio.create_task(UserRepository(b).update(bo, active=False))
            assert await waits_for_a_lock(engine, b_pid, second)  # b cannot pass before a ends
            await a.commit()
            outcome = (await asyncio.gather(second, return_exceptions=True))[0]
            await b.rollback()
        async with session(engine) as s:
            left = [(u.email, u.role, u.active) for u in await UserRepository(s).list()]
        return [type(outcome).__name__, left]

    assert run(cms_db, scenario) == [
        "LastAdmin",
        [("ana@example.com", "author", True), ("bo@example.com", "admin", True)],
    ]


def test_credentials_carry_the_hash_and_rows_do_not(cms_db: str) -> None:
    async def scenario(engine: AsyncEngine) -> None:
        async with session(engine) as s:
            users = UserRepository(s)
            row = await users.create("ana@example.com", "Ana", "$argon2id$secret-hash", "author")
            assert not hasattr(row, "password_hash")
            creds = await users.credentials("ANA@example.com")
            assert creds is not None and creds.user == row
            assert creds.password_hash == "$argon2id$secret-hash"
            assert "secret-hash" not in repr(creds)
            await users.set_password_hash(row.id, "$argon2id$new")
            assert (await users.credentials("ana@example.com")).password_hash == "$argon2id$new"  # type: ignore[union-attr]
            assert await users.credentials("nobody@example.com") is None
            with pytest.raises(CmsNotFound):
                await users.set_password_hash(999, "h")

    run(cms_db, scenario)


# ----------------------------------------------------------------------------------------- API keys


def test_api_key_is_shown_once_and_stored_as_a_hash(cms_db: str) -> None:
    async def scenario(engine: AsyncEngine) -> None:
        async with session(engine) as s:
            admin = await make_user(s, role="admin")
            row, plaintext = await ApiKeyRepository(s).create("search sync", "viewer", admin)
            await s.commit()
        assert KEY_FORMAT.match(plaintext), plaintext
        assert plaintext.startswith(f"pulse_{row.prefix}_")
        assert (row.name, row.role, row.created_by, row.last_used_at, row.revoked) == (
            "search sync",
            "viewer",
            admin,
            None,
            False,
        )
        assert not hasattr(row, "key_hash")
        async with engine.connect() as conn:
            stored = (await conn.execute(text("SELECT prefix, key_hash FROM cms_api_keys"))).one()
            dump = (await conn.execute(text("SELECT row_to_json(k)::text FROM cms_api_keys k"))).scalar_one()
        assert stored == (row.prefix, hashlib.sha256(plaintext.encode()).hexdigest())
        assert plaintext not in dump and plaintext.split("_", 2)[2] not in dump

    run(cms_db, scenario)


def test_api_key_authentication(cms_db: str) -> None:
    async def scenario(engine: AsyncEngine) -> None:
        async with session(engine) as s:
            keys = ApiKeyRepository(s)
            row, plaintext = await keys.create("ci", "editor", None)
            other, other_plain = await keys.create("other", "viewer", None)
            assert row.prefix != other.prefix
            found = await keys.authenticate(plaintext, now=T0)
            assert found is not None and (found.id, found.role, found.last_used_at) == (row.id, "editor", T0)
            wrong_secret = plaintext[:-4] + ("AAAA" if not plaintext.endswith("AAAA") else "BBBB")
            for bad in (
                wrong_secret,
                f"pulse_{row.prefix}_",
                f"pulse_zzzzzzzz_{plaintext.split('_', 2)[2]}",  # unknown prefix
                plaintext.replace("pulse_", "pulsa_", 1),
                "",
                "Bearer " + plaintext,
                f"pulse_{row.prefix}{plaintext[len('pulse_') + 9 :]}",  # no separator
            ):
                assert await keys.authenticate(bad, now=T0) is None, bad
            revoked = await keys.revoke(row.id, now=T0)
            assert revoked.revoked and revoked.revoked_at == T0
            assert (
                await keys.revoke(row.id, now=T0 + timedelta(hours=1))
            ).revoked_at == T0  # first time stays
            assert await keys.authenticate(plaintext, now=T0) is None
            assert await keys.authenticate(other_plain, now=T0) is not None
            with pytest.raises(CmsNotFound):
                await keys.revoke(999)
            assert [k.name for k in await keys.list()] == ["ci", "other"]
            assert (await keys.get(row.id)) == revoked
            assert await keys.get(999) is None

    run(cms_db, scenario)


def test_last_used_is_written_at_most_once_a_minute(cms_db: str) -> None:
    async def scenario(engine: AsyncEngine) -> list[datetime | None]:
        async with session(engine) as s:
            keys = ApiKeyRepository(s)
            row, plaintext = await keys.create("ci", "editor", None)
            seen = []
            for offset_s in (0, 30, 59, 60, 90, 125):
                found = await keys.authenticate(plaintext, now=T0 + timedelta(seconds=offset_s))
                assert found is not None
                seen.append(found.last_used_at)
            assert (await keys.get(row.id)).last_used_at == seen[-1]  # type: ignore[union-attr]
            return seen

    seen = run(cms_db, scenario)
    at = [T0 + timedelta(seconds=s) for s in (0, 0, 0, 60, 60, 125)]
    assert seen == at


# ----------------------------------------------------------------------------------- refresh tokens


def test_refresh_tokens_rotate_expire_and_revoke(cms_db: str) -> None:
    async def scenario(engine: AsyncEngine) -> None:
        async with session(engine) as s:
            uid = await make_user(s)
            other = await make_user(s, "bo@example.com")
            tokens = RefreshTokenRepository(s)
            await tokens.issue("jti-1", uid, T0 + timedelta(days=14))
            await tokens.issue("jti-2", uid, T0 + timedelta(days=14))
            await tokens.issue("jti-short", uid, T0 + timedelta(minutes=1))
            await tokens.issue("jti-bo", other, T0 + timedelta(days=14))
            await s.commit()
        async with session(engine) as s:
            tokens = RefreshTokenRepository(s)
            assert await tokens.consume("jti-1", now=T0) == uid
            assert await tokens.consume("jti-1", now=T0) is None  # used once: rotated away
            assert await tokens.consume("jti-short", now=T0 + timedelta(minutes=1)) is None  # expired
            assert await tokens.consume("unknown", now=T0) is None
            assert await tokens.revoke_all(uid, now=T0) == 2  # jti-2 and the expired jti-short
            assert await tokens.consume("jti-2", now=T0) is None
            assert await tokens.revoke("jti-bo", now=T0) is True
            assert await tokens.revoke("jti-bo", now=T0) is False
            await s.commit()

    run(cms_db, scenario)


def test_two_refreshes_with_one_token_cannot_both_win(cms_db: str) -> None:
    async def scenario(engine: AsyncEngine) -> list[Any]:
        async with session(engine) as s:
            uid = await make_user(s)
            await RefreshTokenRepository(s).issue("jti-race", uid, T0 + timedelta(days=1))
            await s.commit()
        async with session(engine) as a, session(engine) as b:
            first = await RefreshTokenRepository(a).consume("jti-race", now=T0)  # holds the row lock
            second, _ = await asyncio.gather(
                RefreshTokenRepository(b).consume("jti-race", now=T0), a.commit()
            )
            await b.commit()
            return [first, second]

    assert run(cms_db, scenario) == [1, None]


def test_deleting_a_user_deletes_their_tokens(cms_db: str) -> None:
    async def scenario(engine: AsyncEngine) -> int:
        async with session(engine) as s:
            uid = await make_user(s)
            await RefreshTokenRepository(s).issue("jti-x", uid, T0 + timedelta(days=1))
            await s.execute(text("DELETE FROM cms_users WHERE id = :id"), {"id": uid})
            await s.commit()
            return int((await s.execute(text("SELECT count(*) FROM cms_refresh_tokens"))).scalar_one())

    assert run(cms_db, scenario) == 0
