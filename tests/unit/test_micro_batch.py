"""MicroBatcher: concurrent items share calls, results go to their callers, failures to a whole batch."""

from __future__ import annotations

import asyncio

import pytest

from serve_apps.search.micro_batch import MicroBatcher


def test_concurrent_items_share_calls_and_get_their_own_results() -> None:
    calls: list[list[int]] = []

    async def double(items: list[int]) -> list[int]:
        calls.append(list(items))
        await asyncio.sleep(0.02)  # while this batch runs, the others queue up
        return [2 * i for i in items]

    async def main() -> list[int]:
        batcher = MicroBatcher(double, max_size=8, wait_s=0.001)
        return await asyncio.gather(*(batcher.submit(i) for i in range(20)))

    assert asyncio.run(main()) == [2 * i for i in range(20)]
    assert sorted(i for call in calls for i in call) == list(range(20))
    assert max(len(c) for c in calls) == 8  # capped
    assert len(calls) == 3  # 20 items: 8 + 8 + 4


def test_items_arriving_during_a_batch_form_the_next_one() -> None:
    sizes: list[int] = []

    async def slow(items: list[int]) -> list[int]:
        sizes.append(len(items))
        await asyncio.sleep(0.03)
        return items

    async def client(batcher: MicroBatcher[int, int], n: int) -> None:
        for i in range(n):
            assert await batcher.submit(i) == i

    async def main() -> None:
        batcher = MicroBatcher(slow, max_size=32, wait_s=0.002)
        await asyncio.gather(*(client(batcher, 5) for _ in range(16)))  # a closed loop of 16 clients

    asyncio.run(main())
    # Every client waits on each batch, so after the first ones every batch holds all 16.
    assert sizes.count(16) >= 3 and sum(sizes) == 80


def test_a_failing_batch_fails_its_callers_only() -> None:
    async def fn(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("unlucky")
        return items

    async def main() -> tuple[object, int]:
        batcher = MicroBatcher(fn, max_size=1, wait_s=0)
        bad = await asyncio.gather(batcher.submit(13), return_exceptions=True)
        return bad[0], await batcher.submit(7)

    bad, good = asyncio.run(main())
    assert isinstance(bad, ValueError) and good == 7


def test_a_wrong_number_of_results_is_an_error() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    async def main() -> None:
        batcher = MicroBatcher(short, max_size=4, wait_s=0.01)
        await asyncio.gather(*(batcher.submit(i) for i in range(3)))

    with pytest.raises(RuntimeError, match="2 results for 3 items"):
        asyncio.run(main())


def test_max_size_must_be_positive() -> None:
    async def fn(items: list[int]) -> list[int]:
        return items

    with pytest.raises(ValueError, match="max_size"):
        MicroBatcher(fn, max_size=0, wait_s=0)
