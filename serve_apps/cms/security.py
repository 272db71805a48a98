"""Tokens and principals of the CMS (pure: no database, no HTTP).

- Passwords are hashed in ``cluster.ground.passwords`` (Argon2id), shared with the ``pulse cms admin``
  command.
- Access and refresh tokens are HS256 JWTs signed with one secret. Their ``typ`` claim tells them apart,
  so a refresh token is never accepted as an access token nor the reverse. A refresh token also carries
  a ``jti``, recorded in the database so that it can be used once (rotation) and revoked (logout).
- A ``Principal`` is who is calling: a user (from an access token), a service key, or nobody.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import jwt

from storage.cms_models import ROLES

#: Shortest signing secret, in bytes (HS256 needs a key at least as long as its 256-bit hash).
MIN_SECRET_BYTES = 32
#: The only algorithm signed and accepted.
JWT_ALGORITHM = "HS256"

PrincipalKind = Literal["user", "key", "anonymous"]


class InvalidToken(Exception):
    """A token that is not a valid, current token of the expected type.

    ``reason`` is one of ``expired``, ``bad_signature``, ``wrong_type``, ``malformed``,
    ``wrong_issuer``, ``not_yet_valid``.
    """

    def __init__(self, reason: str, message: str | None = None) -> None:
        self.reason = reason
        super().__init__(message or reason)


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``user`` or ``key`` (with an id and a role) or ``anonymous`` (neither)."""

    kind: PrincipalKind
    id: int | None = None
    role: str | None = None

    def __post_init__(self) -> None:
        if self.kind == "anonymous":
            if self.id is not None or self.role is not None:
                raise ValueError("an anonymous principal has no id and no role")
        elif self.kind in ("user", "key"):
            if self.id is None or self.role not in ROLES:
                raise ValueError(f"a {self.kind} principal needs an id and a role in {ROLES}")
        else:
            raise ValueError(f"unknown principal kind {self.kind!r}; one of user, key, anonymous")

    @classmethod
    def anonymous(cls) -> Principal:
        return cls("anonymous")

    @property
    def label(self) -> str:
        """``user:3``, ``key:7`` or ``anonymous``: the actor in audit rows and the rate-limit bucket."""
        return "anonymous" if self.kind == "anonymous" else f"{self.kind}:{self.id}"


def _timestamp(now: datetime | None) -> int:
    return int((now if now is not None else datetime.now(UTC)).timestamp())


class TokenIssuer:
    """Signs and checks the CMS's access and refresh tokens.

    ``now`` arguments (timezone-aware) stand in for the clock, so that expiry can be tested without
    waiting; ``leeway_s`` tolerates clock skew between replicas.
    """

    def __init__(
        self,
        secret: str | bytes,
        *,
        access_ttl_s: int = 900,
        refresh_ttl_s: int = 14 * 86400,
        issuer: str = "pulse-cms",
        leeway_s: int = 5,
    ) -> None:
        key = secret.encode("utf-8") if isinstance(secret, str) else secret
        if len(key) < MIN_SECRET_BYTES:
            raise ValueError(
                f"the token secret has {len(key)} bytes; HS256 needs at least {MIN_SECRET_BYTES}. "
                'Generate one with `python -c "import secrets; print(secrets.token_urlsafe(48))"`'
            )
        if access_ttl_s <= 0 or refresh_ttl_s <= 0:
            raise ValueError("token lifetimes must be positive numbers of seconds")
        self._key = key
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.issuer = issuer
        self.leeway_s = leeway_s

    def _encode(self, claims: dict[str, Any], *, typ: str, ttl_s: int, now: datetime | None) -> str:
        iat = _timestamp(now)
        payload = {**claims, "typ": typ, "iss": self.issuer, "iat": iat, "exp": iat + ttl_s}
        return jwt.encode(payload, self._key, algorithm=JWT_ALGORITHM)

    def access_token(self, user_id: int, role: str, *, now: datetime | None = None) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; one of: {', '.join(ROLES)}")
        return self._encode(
            {"sub": str(user_id), "role": role}, typ="access", ttl_s=self.access_ttl_s, now=now
        )

    def refresh_token(self, user_id: int, *, now: datetime | None = None) -> tuple[str, str, datetime]:
        """``(token, jti, expires_at)``: store the jti and expiry, hand out the token."""
        jti = secrets.token_urlsafe(24)
        token = self._encode(
            {"sub": str(user_id), "jti": jti}, typ="refresh", ttl_s=self.refresh_ttl_s, now=now
        )
        expires_at = datetime.fromtimestamp(_timestamp(now) + self.refresh_ttl_s, UTC)
        return token, jti, expires_at

    def _decode(self, token: str, *, typ: str, now: datetime | None) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[JWT_ALGORITHM],
                issuer=self.issuer,
                # Times are checked below, against ``now``.
                options={
                    "require": ["exp", "iat", "iss", "sub", "typ"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidSignatureError as exc:
            raise InvalidToken(
                "bad_signature", "the token's signature does not match; sign in again"
            ) from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidToken("wrong_issuer", f"the token was not issued by {self.issuer}") from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidToken("malformed", f"the token cannot be read: {exc}") from exc
        if claims["typ"] != typ:
            raise InvalidToken(
                "wrong_type", f"a {claims['typ']} token was given where a {typ} token is needed"
            )
        at = _timestamp(now)
        exp, iat = claims["exp"], claims["iat"]
        if not isinstance(exp, int) or not isinstance(iat, int):
            raise InvalidToken("malformed", "the token's exp and iat must be integers")
        if at >= exp + self.leeway_s:
            expired_at = datetime.fromtimestamp(exp, UTC).isoformat()
            raise InvalidToken("expired", f"the {typ} token expired at {expired_at}")
        if iat > at + self.leeway_s:
            raise InvalidToken("not_yet_valid", f"the {typ} token was issued in the future (clock skew?)")
        return claims

    @staticmethod
    def _user_id(claims: dict[str, Any]) -> int:
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub.isdigit():
            raise InvalidToken("malformed", "the token's subject is not a user id")
        return int(sub)

    def decode_access(self, token: str, *, now: datetime | None = None) -> Principal:
        claims = self._decode(token, typ="access", now=now)
        role = claims.get("role")
        if role not in ROLES:
            raise InvalidToken("malformed", "the access token names no known role")
        return Principal("user", self._user_id(claims), role)

    def decode_refresh(self, token: str, *, now: datetime | None = None) -> tuple[int, str]:
        """``(user_id, jti)`` of a refresh token; whether the jti is still live is the database's say."""
        claims = self._decode(token, typ="refresh", now=now)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise InvalidToken("malformed", "the refresh token has no jti")
        return self._user_id(claims), jti
