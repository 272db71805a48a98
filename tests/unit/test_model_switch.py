"""ModelSwitch: search follows the registry's active entry, and moves to a new one only once its document
index holds every file committed when the move began (fakes for the registry and the indexes, a manual
clock; asyncio only, nothing sleeps)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from actors.index_stats import ShardStats
from actors.vector_index import IndexStats
from serve_apps.errors import NotReady
from serve_apps.search.model_switch import ModelSwitch
from storage.model_registry import ModelRow

REFRESH_S = 5.0


def entry(entry_id: int) -> ModelRow:
    return ModelRow(
        id=entry_id,
        status="active",
        name=f"model-{entry_id}",
        revision="r",
        path="",
        dimension=8,
        normalize=True,
        max_seq_length=None,
        pooling="mean",
    )


def shard(shard_no: int, *, ready: bool, watermark: int, size: int = 10) -> ShardStats:
    index = IndexStats(
        dimension=8,
        size=size,
        watermark=watermark,
        deletion_watermark=0,
        factory="Flat",
        main_rows=size,
        delta_rows=0,
        dead_rows=0,
        rebuilds=1,
        huge_page_bytes=0,
    )
    return ShardStats(
        index=index,
        model_id=2,
        level="document",
        shard=shard_no,
        shards=2,
        pid=1,
        node_id="node",
        ready=ready,
        restored_from=None,
        snapshots_written=0,
        last_error=None,
    )


@dataclass
class Registry:
    active: ModelRow | None = None
    committed_files: dict[int, int] = field(default_factory=dict)
    reads: int = 0

    async def active_entry(self) -> ModelRow | None:
        self.reads += 1
        return self.active

    async def committed(self, entry: ModelRow) -> int:
        return self.committed_files.get(entry.id, 0)


@dataclass
class Indexes:
    shards: dict[int, list[ShardStats]] = field(default_factory=dict)
    warmed: list[int] = field(default_factory=list)
    fail_warm_up: bool = False

    async def warm_up(self, entry: ModelRow) -> None:
        self.warmed.append(entry.id)
        if self.fail_warm_up:
            raise ConnectionError("the embedder is gone")

    async def document_shards(self, entry: ModelRow) -> Sequence[ShardStats]:
        return self.shards.get(entry.id, [])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def switch_for(registry: Registry, indexes: Indexes, clock: Clock) -> ModelSwitch:
    return ModelSwitch(registry, indexes, refresh_s=REFRESH_S, poll_s=0, clock=clock)


async def settle() -> None:
    """Let the background move run a few rounds (it polls without sleeping here)."""
    for _ in range(20):
        await asyncio.sleep(0)


def test_no_active_entry_is_not_ready_and_the_first_one_is_served_at_once() -> None:
    async def main() -> None:
        registry, indexes, clock = Registry(), Indexes(), Clock()
        switch = switch_for(registry, indexes, clock)
        with pytest.raises(NotReady) as caught:
            await switch.entry()
        assert caught.value.headers == {"Retry-After": "30"}
        registry.active = entry(1)
        assert (await switch.entry()).id == 1  # no active entry yet: the registry is read every call
        assert indexes.warmed == []  # the first entry is served without waiting for its index

    asyncio.run(main())


def test_the_registry_is_read_once_per_refresh_interval() -> None:
    async def main() -> None:
        registry, indexes, clock = Registry(active=entry(1)), Indexes(), Clock()
        switch = switch_for(registry, indexes, clock)
        await asyncio.gather(*(switch.entry() for _ in range(10)))
        assert registry.reads == 1
        clock.now += REFRESH_S - 0.1
        await switch.entry()
        assert registry.reads == 1
        clock.now += 0.1
        await switch.entry()
        assert registry.reads == 2

    asyncio.run(main())


def test_a_new_entry_is_served_only_once_every_shard_holds_the_committed_files() -> None:
    async def main() -> None:
        registry, indexes, clock = Registry(active=entry(1)), Indexes(), Clock()
        switch = switch_for(registry, indexes, clock)
        assert (await switch.entry()).id == 1
        registry.active, registry.committed_files[2] = entry(2), 7
        indexes.shards[2] = [shard(0, ready=False, watermark=0), shard(1, ready=False, watermark=0)]
        clock.now += REFRESH_S
        assert (await switch.entry()).id == 1  # the move starts in the background
        await settle()
        assert indexes.warmed == [2] and (await switch.entry()).id == 1  # loading
        indexes.shards[2] = [shard(0, ready=True, watermark=7), shard(1, ready=True, watermark=6)]
        await settle()
        assert (await switch.entry()).id == 1  # one shard has not read the last committed file yet
        indexes.shards[2] = [shard(0, ready=True, watermark=7), shard(1, ready=True, watermark=9)]
        await settle()
        assert (await switch.entry()).id == 2
        clock.now += REFRESH_S
        assert (await switch.entry()).id == 2 and indexes.warmed == [2]  # moved once

    asyncio.run(main())


def test_one_move_at_a_time_and_a_later_activation_follows_it() -> None:
    async def main() -> None:
        registry, indexes, clock = Registry(active=entry(1)), Indexes(), Clock()
        switch = switch_for(registry, indexes, clock)
        await switch.entry()
        registry.active = entry(2)
        indexes.shards[2] = [shard(0, ready=False, watermark=0)]
        clock.now += REFRESH_S
        await switch.entry()
        await settle()
        registry.active = entry(3)  # activated while the move to 2 waits for its index
        clock.now += REFRESH_S
        assert (await switch.entry()).id == 1
        assert indexes.warmed == [2]
        indexes.shards[2] = [shard(0, ready=True, watermark=0)]
        indexes.shards[3] = [shard(0, ready=True, watermark=0)]
        await settle()
        assert (await switch.entry()).id == 2  # within the interval: no read, no second move yet
        clock.now += REFRESH_S
        await switch.entry()
        await settle()
        assert (await switch.entry()).id == 3 and indexes.warmed == [2, 3]

    asyncio.run(main())


def test_a_failed_move_keeps_the_current_entry_and_is_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        registry, indexes, clock = Registry(active=entry(1)), Indexes(fail_warm_up=True), Clock()
        switch = switch_for(registry, indexes, clock)
        await switch.entry()
        registry.active = entry(2)
        indexes.shards[2] = [shard(0, ready=True, watermark=0)]
        clock.now += REFRESH_S
        await switch.entry()
        await settle()
        assert (await switch.entry()).id == 1
        indexes.fail_warm_up = False
        clock.now += REFRESH_S
        await switch.entry()
        await settle()
        assert (await switch.entry()).id == 2 and indexes.warmed == [2, 2]

    with caplog.at_level(logging.ERROR, logger="serve_apps.search.model_switch"):
        asyncio.run(main())
    assert "switching search to entry 2 failed" in caplog.text


def test_an_entry_deactivated_without_a_successor_keeps_being_served() -> None:
    async def main() -> None:
        registry, indexes, clock = Registry(active=entry(1)), Indexes(), Clock()
        switch = switch_for(registry, indexes, clock)
        await switch.entry()
        registry.active = None
        clock.now += REFRESH_S
        assert (await switch.entry()).id == 1

    asyncio.run(main())
