"""``ModelSwitch``: which registry entry search serves, moved to a newly activated entry atomically.

Plain asyncio (no Ray, no HTTP): it reads the registry through ``EntryRegistry`` and the indexes through
``EntryIndexes`` (the search app's ``Retriever``), so it is tested with fakes.

- The first active entry found is served at once (nothing else could answer).
- The active entry is re-read at most every ``refresh_s`` seconds; between reads every caller gets the
  entry it has without waiting (no lock on that path).
- When another entry became active, the current entry keeps serving while the new entry's indexes and
  query model load in a background task, which moves search over only once every document shard is
  loaded and holds every vector file committed when the move began (its watermark reached the latest
  file's sequence): clients never see a half-built index. One move at a time: an entry activated during
  a move is noticed at the first read after it. A move that fails is logged and tried again at the next
  read; the current entry keeps serving meanwhile. An entry deactivated without a successor keeps being
  served (the registry then has no active entry to move to).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from actors.index_stats import ShardStats
from serve_apps.errors import NotReady
from storage.embeddings import fetch_latest_watermark
from storage.model_registry import ModelRow, fetch_active_model

logger = logging.getLogger(__name__)


class EntryRegistry(Protocol):
    """The registry as the switch reads it."""

    async def active_entry(self) -> ModelRow | None:
        """The index's active entry (``None`` before any was activated)."""
        ...

    async def committed(self, entry: ModelRow) -> int:
        """The sequence of the entry's newest committed vector file (0 if none)."""
        ...


class EntryIndexes(Protocol):
    """The indexes as the switch loads them."""

    async def warm_up(self, entry: ModelRow) -> None:
        """Start loading the entry's indexes and its query model; returns once the model is loaded."""
        ...

    async def document_shards(self, entry: ModelRow) -> Sequence[ShardStats]:
        """What each shard of the entry's document index reports."""
        ...


class RegistryReader:
    """``EntryRegistry`` over PostgreSQL, through the app's sessions."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], index_name: str) -> None:
        self._sessions = sessions
        self._index_name = index_name

    async def active_entry(self) -> ModelRow | None:
        async with self._sessions() as session:
            return await fetch_active_model(session, self._index_name)

    async def committed(self, entry: ModelRow) -> int:
        async with self._sessions() as session:
            return await fetch_latest_watermark(session, model_id=entry.id)


class ModelSwitch:
    """Follows the registry's active entry; ``entry()`` is the entry search serves now."""

    def __init__(
        self,
        registry: EntryRegistry,
        indexes: EntryIndexes,
        *,
        refresh_s: float,
        poll_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._indexes = indexes
        self._refresh_s = refresh_s
        self._poll_s = poll_s  # between looks at a loading index
        self._clock = clock
        self._active: ModelRow | None = None
        self._checked_at = 0.0
        self._switching: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def entry(self) -> ModelRow:
        """The entry search serves now; notices a newly activated entry and starts the move to it.

        Raises ``NotReady`` while no entry has ever been active."""
        now = self._clock()
        if self._active is not None and now - self._checked_at < self._refresh_s:
            return self._active
        async with self._lock:
            # Another caller may have read the registry while this one waited for the lock.
            if self._active is None or now - self._checked_at >= self._refresh_s:
                self._checked_at = now
                latest = await self._registry.active_entry()
                if latest is not None and self._active is None:
                    self._active = latest
                elif (
                    latest is not None
                    and self._active is not None
                    and latest.id != self._active.id
                    and (self._switching is None or self._switching.done())
                ):
                    self._switching = asyncio.create_task(self._switch_to(latest))
        if self._active is None:
            raise NotReady("no embedding model is active yet; run `pulse embed`", retry_after_s=30)
        return self._active

    async def _switch_to(self, entry: ModelRow) -> None:
        """Serve ``entry`` once its document index holds every file committed when it became active."""
        try:
            target = await self._registry.committed(entry)
            await self._indexes.warm_up(entry)
            while True:
                stats = await self._indexes.document_shards(entry)
                if all(s.ready and s.index.watermark >= target for s in stats):
                    break
                await asyncio.sleep(self._poll_s)
            previous, self._active = self._active, entry
            logger.info(
                "search moved from entry %s to entry %d (%s, %d vectors)",
                previous.id if previous else None,
                entry.id,
                entry.name,
                sum(s.index.size for s in stats),
            )
        except Exception:  # the next refresh tries again; meanwhile the current index keeps serving
            logger.exception("switching search to entry %d failed", entry.id)
