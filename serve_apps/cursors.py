"""Page cursors of every listing (search results, CMS items): opaque tokens bound to the query they page.

A token is the URL-safe base64 (padding stripped) of a compact JSON object: the listing's own position
fields, then ``"f"``, a fingerprint of the query (``fingerprint``). A token sent with another query is
refused (422) instead of silently paging something else. Search cursors hold ``{"o": offset}``, CMS
cursors ``{"k": kind, "v": sort value, "i": last id}``; tokens handed out before this module existed
have exactly this form, so clients' tokens stay valid.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from serve_apps.errors import InvalidRequest

T = TypeVar("T")


def fingerprint(*parts: object) -> str:
    """A short stable digest of what a query asks (its text, filters, sort, page size...)."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def encode_cursor(position: Mapping[str, Any], digest: str) -> str:
    """The token of ``position`` (JSON values) in the listing whose query has fingerprint ``digest``."""
    data = json.dumps({**position, "f": digest}, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


def decode_cursor(
    token: str, digest: str, read: Callable[[dict[str, Any]], T], *, malformed: str, foreign: str
) -> T:
    """``read(position)`` of ``token``, checked against the query's fingerprint ``digest``.

    422 ``cursor: malformed; <malformed>`` when the token or its fields cannot be read (``read`` raises
    ``KeyError``, ``ValueError`` or ``TypeError``), ``cursor: <foreign>`` when it belongs to another query.
    """
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        position, stamp = read(data), str(data["f"])
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"cursor: malformed; {malformed}") from exc
    if stamp != digest:
        raise InvalidRequest(f"cursor: {foreign}")
    return position
