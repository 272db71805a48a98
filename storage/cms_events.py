"""The CMS event outbox: one row per content event, written in the same transaction as the change.

Readers (the webhook sender, the search sync) remember the last event id they handled and catch up
from there, so an event is never lost and a reader that sees one twice must tolerate it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storage.cms_models import CmsEvent


async def append_event(
    session: AsyncSession, *, type: str, item_ids: Sequence[int], payload: dict[str, Any]
) -> None:
    """Add an event to the caller's transaction (it commits with the change it reports)."""
    session.add(CmsEvent(type=type, item_ids=list(item_ids), payload=payload))
