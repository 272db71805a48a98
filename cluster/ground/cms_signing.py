"""Webhook signatures: HMAC-SHA256 over ``f"{timestamp}.{body}"`` with the webhook's secret.

Pure functions, shared by the sender and by subscribers (and their tests). A subscriber checks::

    verify(secret, request.headers["X-Pulse-Timestamp"], raw_body,
           request.headers["X-Pulse-Signature"], now=time.time())

The timestamp inside the signed text stops replays: a captured request is refused once it is older than
``tolerance_s``.
"""

from __future__ import annotations

import hashlib
import hmac

#: Prefix of the signature header's value (the scheme, as GitHub's ``X-Hub-Signature-256``).
SIGNATURE_SCHEME = "sha256="
#: Default age, in seconds, beyond which a signed request is refused (either direction: clock skew).
DEFAULT_TOLERANCE_S = 300.0


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def sign(secret: str, timestamp: int | str, body: bytes | str) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``f"{timestamp}.{body}"`` keyed with ``secret`` (UTF-8)."""
    message = str(int(timestamp)).encode("ascii") + b"." + _as_bytes(body)
    digest = hmac.new(_as_bytes(secret), message, hashlib.sha256).hexdigest()
    return SIGNATURE_SCHEME + digest


def verify(
    secret: str,
    timestamp: int | str,
    body: bytes | str,
    signature: str,
    *,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """Whether ``signature`` signs this timestamp and body with ``secret`` and the timestamp is within
    ``tolerance_s`` of ``now`` (unix seconds). Compares in constant time."""
    try:
        stamp = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(now - stamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, stamp, body).encode("ascii"), _as_bytes(signature.strip()))
