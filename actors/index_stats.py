"""What the index actors report about themselves (their ``stats()``), as frozen dataclasses.

Plain Python (no Ray), so the search app, the CLI and tests read the reports by attribute, and the
activation that retires an old index reads the same type as the app that waits for the new one.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.vector_index import IndexStats


@dataclass(frozen=True)
class ShardStats:
    """One vector index shard (``actors.index_actor``): its index's figures and the actor's state."""

    index: IndexStats
    model_id: int
    level: str
    shard: int
    shards: int
    pid: int  # changes when Ray restarts the actor
    node_id: str
    ready: bool  # the snapshot is loaded and the first catch-up done
    restored_from: str | None  # the snapshot's stamp, if it started from one
    snapshots_written: int
    last_error: str | None


@dataclass(frozen=True)
class KeywordStats:
    """The keyword (BM25) index actor of one model entry (``actors.keyword_actor``)."""

    model_id: int
    size: int  # documents indexed
    pending: int  # changes not in the BM25 index yet
    watermark: int  # the last manifest file read
    deletion_watermark: int
    ready: bool
    pid: int
    last_error: str | None
