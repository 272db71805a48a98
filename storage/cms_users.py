"""CMS accounts in PostgreSQL: users, service API keys and refresh tokens.

Every repository works in the caller's ``AsyncSession`` and transaction: it executes and flushes, it
never commits. Secrets stay in here: ``UserRow`` carries no password hash (``credentials`` hands one out
for the login check only) and ``ApiKeyRow`` no key hash; an API key's plaintext exists once, as the
return value of ``ApiKeyRepository.create``.

API keys look like ``pulse_<prefix>_<secret>``: the 8-character prefix finds the row (and is shown in
listings), the row holds the SHA-256 of the whole key, compared in constant time.

The CMS always keeps an active admin user: demoting, deactivating or deleting the last one raises
``LastAdmin``. The check locks the active admins' rows first, so of two concurrent transactions that
each remove one of the last two admins, the second waits for the first and is refused.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import RowMapping, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.cms_models import ROLES, CmsApiKey, CmsRefreshToken, CmsUser
from storage.errors import CmsConflict, CmsNotFound, LastAdmin

#: Every API key starts with this, so a leaked key is easy to recognise (and to grep for).
API_KEY_SCHEME = "pulse_"
#: Length of the lookup prefix after the scheme.
API_KEY_PREFIX_LEN = 8
#: Random bytes in the secret part of an API key.
API_KEY_SECRET_BYTES = 32
#: ``last_used_at`` is written at most this often per key (a write per request would be a hot row).
LAST_USED_RESOLUTION = timedelta(minutes=1)
#: The role that administers the CMS; the last active user with it cannot lose it (``LastAdmin``).
ADMIN_ROLE = "admin"

_PREFIX_ALPHABET = string.ascii_letters + string.digits  # url-safe, and never the "_" separator


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of: {', '.join(ROLES)}")
    return role


def normalize_email(email: str) -> str:
    """The stored form of an address: stripped and lower-cased (addresses are unique in this form)."""
    return email.strip().lower()


@dataclass(frozen=True)
class UserRow:
    id: int
    email: str
    display_name: str
    role: str
    active: bool
    created_at: datetime


@dataclass(frozen=True)
class UserCredentials:
    """A user with the password hash, for the login check only; the hash stays out of ``repr``."""

    user: UserRow
    password_hash: str = field(repr=False)


@dataclass(frozen=True)
class ApiKeyRow:
    id: int
    name: str
    prefix: str
    role: str
    created_by: int | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


_USER_COLUMNS = (
    CmsUser.id,
    CmsUser.email,
    CmsUser.display_name,
    CmsUser.role,
    CmsUser.active,
    CmsUser.created_at,
)
_KEY_COLUMNS = (
    CmsApiKey.id,
    CmsApiKey.name,
    CmsApiKey.prefix,
    CmsApiKey.role,
    CmsApiKey.created_by,
    CmsApiKey.created_at,
    CmsApiKey.last_used_at,
    CmsApiKey.revoked_at,
)


def _user(r: RowMapping) -> UserRow:
    return UserRow(
        id=r["id"],
        email=r["email"],
        display_name=r["display_name"],
        role=r["role"],
        active=r["active"],
        created_at=r["created_at"],
    )


def _key(r: RowMapping) -> ApiKeyRow:
    return ApiKeyRow(
        id=r["id"],
        name=r["name"],
        prefix=r["prefix"],
        role=r["role"],
        created_by=r["created_by"],
        created_at=r["created_at"],
        last_used_at=r["last_used_at"],
        revoked_at=r["revoked_at"],
    )


class UserRepository:
    """CMS users. E-mail addresses are unique after ``normalize_email``."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, email: str, display_name: str, password_hash: str, role: str) -> UserRow:
        """Add a user; ``CmsConflict("email", ...)`` if the address is taken (the transaction survives)."""
        address = normalize_email(email)
        stmt = (
            insert(CmsUser)
            .values(
                email=address, display_name=display_name, password_hash=password_hash, role=_check_role(role)
            )
            .on_conflict_do_nothing(index_elements=[CmsUser.email])
            .returning(*_USER_COLUMNS)
        )
        row = (await self.session.execute(stmt)).mappings().first()
        if row is None:
            raise CmsConflict("email", address, "a user with this address exists; sign in or pick another")
        return _user(row)

    async def get(self, user_id: int) -> UserRow | None:
        row = (
            (await self.session.execute(select(*_USER_COLUMNS).where(CmsUser.id == user_id)))
            .mappings()
            .first()
        )
        return _user(row) if row is not None else None

    async def by_email(self, email: str) -> UserRow | None:
        stmt = select(*_USER_COLUMNS).where(CmsUser.email == normalize_email(email))
        row = (await self.session.execute(stmt)).mappings().first()
        return _user(row) if row is not None else None

    async def credentials(self, email: str) -> UserCredentials | None:
        """The user and the password hash, for the login check."""
        stmt = select(*_USER_COLUMNS, CmsUser.password_hash).where(CmsUser.email == normalize_email(email))
        row = (await self.session.execute(stmt)).mappings().first()
        return UserCredentials(_user(row), row["password_hash"]) if row is not None else None

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        """Replace the hash (a password change, or a rehash with newer parameters)."""
        stmt = update(CmsUser).where(CmsUser.id == user_id).values(password_hash=password_hash)
        if (await self.session.execute(stmt.returning(CmsUser.id))).mappings().first() is None:
            raise CmsNotFound("user", user_id)

    async def list(self) -> builtins.list[UserRow]:
        rows = await self.session.execute(select(*_USER_COLUMNS).order_by(CmsUser.id))
        return [_user(r) for r in rows.mappings()]

    async def _lock_admins(self, user_id: int) -> tuple[UserRow | None, int]:
        """Lock the user's row and every active admin's, and return the user and how many active admins
        there are.

        The rows are locked in id order, so two callers never deadlock; a caller that has to wait reads
        the rows as the other transaction left them (PostgreSQL re-reads a locked row after the wait).
        """
        is_active_admin = (CmsUser.role == ADMIN_ROLE) & CmsUser.active.is_(True)
        stmt = (
            select(*_USER_COLUMNS)
            .where((CmsUser.id == user_id) | is_active_admin)
            .order_by(CmsUser.id)
            .with_for_update()
        )
        rows = [_user(r) for r in (await self.session.execute(stmt)).mappings()]
        user = next((u for u in rows if u.id == user_id), None)
        return user, sum(1 for u in rows if u.role == ADMIN_ROLE and u.active)

    async def _refuse_last_admin(self, user_id: int, change: str) -> UserRow:
        """The user, locked; ``LastAdmin`` if it is the only active admin, ``CmsNotFound`` if unknown."""
        user, admins = await self._lock_admins(user_id)
        if user is None:
            raise CmsNotFound("user", user_id)
        if user.role == ADMIN_ROLE and user.active and admins <= 1:
            raise LastAdmin(user_id, change)
        return user

    async def update(
        self,
        user_id: int,
        *,
        role: str | None = None,
        active: bool | None = None,
        display_name: str | None = None,
    ) -> UserRow:
        """Change the given fields (``None`` keeps one); ``CmsNotFound`` for an unknown id, ``LastAdmin``
        if the change would leave no active admin."""
        if role is not None and role != ADMIN_ROLE:
            await self._refuse_last_admin(user_id, f"making it {_check_role(role)}")
        elif active is False:
            await self._refuse_last_admin(user_id, "deactivating it")
        values: dict[str, object] = {}
        if role is not None:
            values["role"] = _check_role(role)
        if active is not None:
            values["active"] = active
        if display_name is not None:
            values["display_name"] = display_name
        if not values:
            current = await self.get(user_id)
            if current is None:
                raise CmsNotFound("user", user_id)
            return current
        stmt = update(CmsUser).where(CmsUser.id == user_id).values(**values).returning(*_USER_COLUMNS)
        row = (await self.session.execute(stmt)).mappings().first()
        if row is None:
            raise CmsNotFound("user", user_id)
        return _user(row)

    async def delete(self, user_id: int) -> UserRow:
        """Delete a user and return it as it was: its refresh tokens go too, the items it wrote and the
        keys it created stay (without it). ``CmsNotFound`` for an unknown id, ``LastAdmin`` for the last
        active admin."""
        user = await self._refuse_last_admin(user_id, "deleting it")
        await self.session.execute(delete(CmsUser).where(CmsUser.id == user_id))
        return user

    async def count(self, *, role: str | None = None, active: bool | None = None) -> int:
        """How many users (of a role, active or not): the first-user bootstrap and the last-admin guard."""
        stmt = select(func.count()).select_from(CmsUser)
        if role is not None:
            stmt = stmt.where(CmsUser.role == role)
        if active is not None:
            stmt = stmt.where(CmsUser.active.is_(active))
        return int((await self.session.execute(stmt)).scalar_one())


def _key_hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def split_api_key(plaintext: str) -> str | None:
    """The lookup prefix of a well-formed key (``pulse_<prefix>_<secret>``), else ``None``."""
    scheme, body = plaintext[: len(API_KEY_SCHEME)], plaintext[len(API_KEY_SCHEME) :]
    prefix, sep, secret = (
        body[:API_KEY_PREFIX_LEN],
        body[API_KEY_PREFIX_LEN : API_KEY_PREFIX_LEN + 1],
        body[API_KEY_PREFIX_LEN + 1 :],
    )
    well_formed = (
        scheme == API_KEY_SCHEME
        and len(prefix) == API_KEY_PREFIX_LEN
        and all(c in _PREFIX_ALPHABET for c in prefix)
        and sep == "_"
        and secret != ""
    )
    return prefix if well_formed else None


class ApiKeyRepository:
    """Service keys: only the SHA-256 of a key is stored, the key itself is returned once."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, name: str, role: str, created_by: int | None) -> tuple[ApiKeyRow, str]:
        """A new key: ``(row, plaintext)``. Show the plaintext to the caller once; it cannot be recovered."""
        _check_role(role)
        for _ in range(5):  # 62**8 prefixes: a collision is rare, two in a row rarer still
            prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(API_KEY_PREFIX_LEN))
            plaintext = f"{API_KEY_SCHEME}{prefix}_{secrets.token_urlsafe(API_KEY_SECRET_BYTES)}"
            stmt = (
                insert(CmsApiKey)
                .values(
                    name=name, prefix=prefix, key_hash=_key_hash(plaintext), role=role, created_by=created_by
                )
                .on_conflict_do_nothing(index_elements=[CmsApiKey.prefix])
                .returning(*_KEY_COLUMNS)
            )
            row = (await self.session.execute(stmt)).mappings().first()
            if row is not None:
                return _key(row), plaintext
        raise RuntimeError("could not draw an unused API key prefix in 5 tries")  # pragma: no cover

    async def authenticate(self, plaintext: str, *, now: datetime | None = None) -> ApiKeyRow | None:
        """The key's row if ``plaintext`` is a live key, else ``None`` (malformed, unknown, wrong or revoked).

        Records ``last_used_at``, at most once per ``LAST_USED_RESOLUTION``.
        """
        prefix = split_api_key(plaintext)
        if prefix is None:
            return None
        stmt = select(*_KEY_COLUMNS, CmsApiKey.key_hash).where(CmsApiKey.prefix == prefix)
        row = (await self.session.execute(stmt)).mappings().first()
        if row is None or not hmac.compare_digest(row["key_hash"], _key_hash(plaintext)):
            return None
        key = _key(row)
        if key.revoked:
            return None
        at = _now(now)
        if key.last_used_at is None or at - key.last_used_at >= LAST_USED_RESOLUTION:
            touch = (
                update(CmsApiKey)
                .where(CmsApiKey.id == key.id)
                .where(
                    (CmsApiKey.last_used_at.is_(None)) | (CmsApiKey.last_used_at <= at - LAST_USED_RESOLUTION)
                )
                .values(last_used_at=at)
                .returning(*_KEY_COLUMNS)
            )
            touched = (await self.session.execute(touch)).mappings().first()
            if touched is not None:
                key = _key(touched)
        return key

    async def get(self, key_id: int) -> ApiKeyRow | None:
        row = (
            (await self.session.execute(select(*_KEY_COLUMNS).where(CmsApiKey.id == key_id)))
            .mappings()
            .first()
        )
        return _key(row) if row is not None else None

    async def list(self) -> builtins.list[ApiKeyRow]:
        rows = await self.session.execute(select(*_KEY_COLUMNS).order_by(CmsApiKey.id))
        return [_key(r) for r in rows.mappings()]

    async def revoke(self, key_id: int, *, now: datetime | None = None) -> ApiKeyRow:
        """Revoke a key (again: no change, the first revocation time stays); ``CmsNotFound`` if unknown."""
        stmt = (
            update(CmsApiKey)
            .where(CmsApiKey.id == key_id)
            .values(revoked_at=func.coalesce(CmsApiKey.revoked_at, _now(now)))
            .returning(*_KEY_COLUMNS)
        )
        row = (await self.session.execute(stmt)).mappings().first()
        if row is None:
            raise CmsNotFound("api key", key_id)
        return _key(row)


class RefreshTokenRepository:
    """Refresh tokens by JWT id. Using one revokes it (rotation): each is good for exactly one refresh. A
    revoked token presented again (``reused``) was copied: the CMS then revokes every token of its user."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def issue(self, jti: str, user_id: int, expires_at: datetime) -> None:
        self.session.add(CmsRefreshToken(jti=jti, user_id=user_id, expires_at=expires_at))
        await self.session.flush()

    async def consume(self, jti: str, *, now: datetime | None = None) -> int | None:
        """The token's user id, revoking the token, if it exists, is not revoked and has not expired;
        else ``None``. One statement, so of two concurrent refreshes with the same token one wins."""
        at = _now(now)
        stmt = (
            update(CmsRefreshToken)
            .where(
                CmsRefreshToken.jti == jti,
                CmsRefreshToken.revoked_at.is_(None),
                CmsRefreshToken.expires_at > at,
            )
            .values(revoked_at=at)
            .returning(CmsRefreshToken.user_id)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def reused(self, jti: str) -> int | None:
        """The user id of a known token that was already revoked (used, or logged out): presented again,
        it was copied; ``None`` for an unknown or still live token."""
        stmt = select(CmsRefreshToken.user_id).where(
            CmsRefreshToken.jti == jti, CmsRefreshToken.revoked_at.is_not(None)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def revoke(self, jti: str, *, now: datetime | None = None) -> bool:
        """Revoke one token (logout of one session); ``False`` if it was unknown or already revoked."""
        stmt = (
            update(CmsRefreshToken)
            .where(CmsRefreshToken.jti == jti, CmsRefreshToken.revoked_at.is_(None))
            .values(revoked_at=_now(now))
            .returning(CmsRefreshToken.jti)
        )
        return (await self.session.execute(stmt)).mappings().first() is not None

    async def revoke_all(self, user_id: int, *, now: datetime | None = None) -> int:
        """Revoke every live token of a user (logout everywhere, deactivation, password change)."""
        stmt = (
            update(CmsRefreshToken)
            .where(CmsRefreshToken.user_id == user_id, CmsRefreshToken.revoked_at.is_(None))
            .values(revoked_at=_now(now))
            .returning(CmsRefreshToken.jti)
        )
        return len((await self.session.execute(stmt)).all())
