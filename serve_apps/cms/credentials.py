"""Who is calling, from the CMS's credentials: an API key (``X-API-Key``) before an access token
(``Authorization: Bearer``), anonymous with neither. Used by the CMS's routes and by the recommendation routes
of the search application, which take the same keys and tokens.
"""

from __future__ import annotations

import hashlib
import time

from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from serve_apps.cms.security import InvalidToken, Principal, TokenIssuer
from serve_apps.errors import Unauthorized
from storage.cms_users import ApiKeyRepository


class KeyCache:
    """API keys authenticated lately, remembered for ``ttl_s`` (a revoked key works for at most that long
    more), at most ``size`` of them; keyed by the key's SHA-256, never the key."""

    def __init__(self, ttl_s: float = 10.0, size: int = 1024) -> None:
        self.ttl_s, self._size = ttl_s, size
        self._items: dict[str, tuple[float, Principal]] = {}

    @staticmethod
    def digest(api_key: str) -> str:
        return hashlib.sha256(api_key.encode()).hexdigest()

    def get(self, digest: str) -> Principal | None:
        item = self._items.get(digest)
        if item is None or time.monotonic() - item[0] >= self.ttl_s:
            return None
        return item[1]

    def put(self, digest: str, who: Principal | None) -> None:
        if who is None:
            self._items.pop(digest, None)
            return
        if len(self._items) >= self._size:
            self._items.clear()
        self._items[digest] = (time.monotonic(), who)


async def authenticate(
    sessions: async_sessionmaker[AsyncSession],
    tokens: TokenIssuer | None,
    *,
    authorization: str | None,
    bearer: HTTPAuthorizationCredentials | None,
    api_key: str | None,
    keys: KeyCache | None = None,
) -> Principal:
    """The caller: ``api_key`` (looked up in PostgreSQL, or in ``keys``) before the access token of the
    ``authorization`` header (``bearer``: FastAPI's reading of it); anonymous with neither. 401 for an
    unknown or revoked key, an unreadable header, or an invalid or expired token."""
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
        return tokens.decode_access(token)
    except InvalidToken as exc:
        raise Unauthorized(f"access token {exc.reason}; log in again or use your refresh token") from exc
