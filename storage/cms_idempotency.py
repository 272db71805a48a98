"""Idempotency keys of CMS writes (migration 0011): what a write sent with ``Idempotency-Key`` claimed and
the answer it got.

A key belongs to one caller (``principal``: ``user:3``, ``key:7``): two callers may use the same key. The
write claims ``(principal, key)`` inside its own transaction (``claim``), so the row exists exactly when the
write committed; the answer is added once the route has made it (``record_answer``). A row older than the
time to live counts as absent: ``find`` ignores it, ``claim`` takes it over, ``purge`` deletes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.cms_models import CmsIdempotencyKey, table_of

TABLE = table_of(CmsIdempotencyKey)


@dataclass(frozen=True)
class KeptWrite:
    """A claimed key: the request that claimed it, and its answer once recorded (``status`` None before)."""

    method: str
    path: str
    fingerprint: str
    status: int | None
    headers: dict[str, str]
    body: bytes
    created_at: datetime


def _cutoff(ttl_s: float) -> Any:
    return func.now() - literal(timedelta(seconds=ttl_s))


async def find(session: AsyncSession, principal: str, key: str, *, ttl_s: float) -> KeptWrite | None:
    """The live claim of ``key`` by ``principal`` (None when there is none or it expired)."""
    row = (
        await session.execute(
            select(
                TABLE.c.method,
                TABLE.c.path,
                TABLE.c.fingerprint,
                TABLE.c.status,
                TABLE.c.headers,
                TABLE.c.body,
                TABLE.c.created_at,
            ).where(
                TABLE.c.principal == principal,
                TABLE.c.key == key,
                TABLE.c.created_at >= _cutoff(ttl_s),
            )
        )
    ).one_or_none()
    if row is None:
        return None
    return KeptWrite(
        method=row.method,
        path=row.path,
        fingerprint=row.fingerprint,
        status=row.status,
        headers=dict(row.headers or {}),
        body=bytes(row.body or b""),
        created_at=row.created_at,
    )


async def claim(
    session: AsyncSession,
    principal: str,
    key: str,
    *,
    method: str,
    path: str,
    fingerprint: str,
    ttl_s: float,
) -> bool:
    """Claim ``key`` for this request in the session's transaction: True, or False when a live claim
    exists (another request with the key committed first, or is committing now: the insert waits for it)."""
    values = insert(TABLE).values(
        principal=principal, key=key, method=method, path=path, fingerprint=fingerprint
    )
    statement = values.on_conflict_do_update(
        index_elements=[TABLE.c.principal, TABLE.c.key],
        set_={
            "method": values.excluded.method,
            "path": values.excluded.path,
            "fingerprint": values.excluded.fingerprint,
            "status": None,
            "headers": None,
            "body": None,
            "created_at": func.now(),
            "answered_at": None,
        },
        where=TABLE.c.created_at < _cutoff(ttl_s),
    ).returning(TABLE.c.key)
    return (await session.execute(statement)).first() is not None


async def record_answer(
    session: AsyncSession,
    principal: str,
    key: str,
    *,
    status: int,
    headers: dict[str, str],
    body: bytes,
) -> None:
    """Keep the answer of the write that claimed ``key`` (replayed to retries)."""
    await session.execute(
        update(TABLE)
        .where(TABLE.c.principal == principal, TABLE.c.key == key)
        .values(status=status, headers=headers, body=body, answered_at=func.now())
    )


async def purge(session: AsyncSession, *, ttl_s: float) -> int:
    """Delete the claims older than ``ttl_s``; how many."""
    result = await session.execute(delete(TABLE).where(TABLE.c.created_at < _cutoff(ttl_s)))
    return int(getattr(result, "rowcount", 0) or 0)
