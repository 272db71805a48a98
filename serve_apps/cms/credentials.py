"""Who is calling, from the CMS's credentials: an API key (``X-API-Key``) before an access token
(``Authorization: Bearer``), anonymous with neither. Used by the CMS's routes and by the recommendation routes
of the search application, which take the same keys and tokens.

An access token names its user's role when it was issued; the caller gets the role the user has now, read
from PostgreSQL at most every ``USER_CACHE_S`` seconds per user and replica (``UserCache``): a demotion
takes effect, and a deactivated or deleted user is refused, within that time, not when the token expires.
"""

from __future__ import annotations

import hashlib
import time
from typing import Generic, TypeVar

from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from serve_apps.cms.security import InvalidToken, Principal, TokenIssuer
from serve_apps.errors import Unauthorized
from storage.cms_users import ApiKeyRepository, UserRepository

#: Seconds a user's role and status are remembered per replica (``UserCache``).
USER_CACHE_S = 5.0


K = TypeVar("K")
V = TypeVar("V")


class _Recent(Generic[K, V]):
    """Values read lately, remembered for ``ttl_s``, at most ``size`` of them (all forgotten when full)."""

    def __init__(self, ttl_s: float, size: int = 1024) -> None:
        self.ttl_s, self._size = ttl_s, size
        self._items: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None or time.monotonic() - item[0] >= self.ttl_s:
            return None
        return item[1]

    def put(self, key: K, value: V | None) -> None:
        if value is None:
            self._items.pop(key, None)
            return
        if len(self._items) >= self._size:
            self._items.clear()
        self._items[key] = (time.monotonic(), value)


class KeyCache(_Recent[str, Principal]):
    """API keys authenticated lately, remembered for ``ttl_s`` (a revoked key works for at most that long
    more), at most ``size`` of them; keyed by the key's SHA-256, never the key."""

    def __init__(self, ttl_s: float = 10.0, size: int = 1024) -> None:
        super().__init__(ttl_s, size)

    @staticmethod
    def digest(api_key: str) -> str:
        return hashlib.sha256(api_key.encode()).hexdigest()


class UserCache(_Recent[int, str]):
    """Users' current roles by id, remembered for ``ttl_s``; ``""`` for a user deactivated or deleted."""

    def __init__(self, ttl_s: float = USER_CACHE_S, size: int = 4096) -> None:
        super().__init__(ttl_s, size)


async def current_user(
    sessions: async_sessionmaker[AsyncSession], claimed: Principal, users: UserCache
) -> Principal:
    """The access token's user with the role the user has now; 401 when it is deactivated or deleted."""
    assert claimed.id is not None
    role = users.get(claimed.id)
    if role is None:
        async with sessions() as session:
            user = await UserRepository(session).get(claimed.id)
        role = user.role if user is not None and user.active else ""
        users.put(claimed.id, role)
    if not role:
        raise Unauthorized("this account was deactivated or deleted; ask an admin")
    return claimed if role == claimed.role else Principal("user", claimed.id, role)


async def authenticate(
    sessions: async_sessionmaker[AsyncSession],
    tokens: TokenIssuer | None,
    *,
    authorization: str | None,
    bearer: HTTPAuthorizationCredentials | None,
    api_key: str | None,
    keys: KeyCache | None = None,
    users: UserCache | None = None,
) -> Principal:
    """The caller: ``api_key`` (looked up in PostgreSQL, or in ``keys``) before the access token of the
    ``authorization`` header (``bearer``: FastAPI's reading of it); anonymous with neither. 401 for an
    unknown or revoked key, an unreadable header, an invalid or expired token, or (with ``users``) the
    token of a user deactivated or deleted since; with ``users`` a user has its current role."""
    if api_key:
        digest = KeyCache.digest(api_key)
        cached = keys.get(digest) if keys is not None else None
        if cached is not None:
            return cached
        async with sessions() as session, session.begin():
            key = await ApiKeyRepository(session).authenticate(api_key)
        who = Principal("key", key.id, key.role) if key is not None else None
        if keys is not None:
            keys.put(digest, who)
        if who is None:
            raise Unauthorized("X-API-Key: unknown or revoked key; ask an admin for a new one")
        return who
    if not authorization:
        return Principal.anonymous()
    if bearer is not None:
        token = bearer.credentials
    else:  # another scheme, no token, or blanks only after "Bearer " (an unreadable token)
        scheme, _, rest = authorization.partition(" ")
        if scheme.lower() != "bearer" or not rest:
            raise Unauthorized("Authorization: expected `Bearer <access token>` (POST /v1/cms/auth/login)")
        token = ""
    if tokens is None:
        raise Unauthorized("this deployment takes API keys only (no token secret was configured)")
    try:
        claimed = tokens.decode_access(token)
    except InvalidToken as exc:
        raise Unauthorized(f"access token {exc.reason}; log in again or use your refresh token") from exc
    return claimed if users is None else await current_user(sessions, claimed, users)
