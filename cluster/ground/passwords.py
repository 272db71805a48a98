"""CMS passwords: the policy and Argon2id hashing (pure: no database, no HTTP).

Ground code, shared by the CMS app (``serve_apps.cms``: login, user creation) and the ``pulse cms admin``
command, which must hash exactly as the app verifies without importing ``serve_apps``. Hashes use
``argon2-cffi``'s ``PasswordHasher`` defaults (Argon2id, RFC 9106).
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

#: Shortest password accepted for a new or changed password.
MIN_PASSWORD_LENGTH = 10
#: Longest password accepted (hashing megabytes per login attempt would be a denial of service).
MAX_PASSWORD_LENGTH = 1024

_HASHER = PasswordHasher()  # parameters only: no work, no I/O at import


class PasswordPolicyError(ValueError):
    """A new password that the policy refuses; the message says what to change."""


def check_password_policy(password: str) -> None:
    """Raise ``PasswordPolicyError`` for a password that may not be set."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordPolicyError(
            f"the password has {len(password)} characters; use at least {MIN_PASSWORD_LENGTH} "
            "(a passphrase of a few words is easy to remember)"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordPolicyError(
            f"the password has {len(password)} characters; use at most {MAX_PASSWORD_LENGTH}"
        )
    if not password.strip():
        raise PasswordPolicyError("the password is only whitespace; choose one with other characters")


def hash_password(password: str) -> str:
    """The Argon2id hash of a new password, after the policy check."""
    check_password_policy(password)
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; ``False`` for a wrong password or a broken hash."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str) -> bool:
    """Whether a hash was made with other parameters than today's (rehash it after a good login)."""
    try:
        return _HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True
