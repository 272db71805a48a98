"""``MicroBatcher``: concurrent callers' items go to one call of a batch function (pure asyncio).

The search ingress sends its concurrent queries to the query embedder with it: one Ray call per batch.
Measured on Ray 2.60 here, ``@serve.batch`` on a deployment method saw batches of one to three items under
32 concurrent clients (whether the handler encoded or only slept), so the embedder ran at its one-query
speed; this batcher takes every item waiting when the previous batch ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """``await batcher.submit(item)`` -> its result from ``fn(items)``, which returns one result per item,
    in order. At most ``max_size`` items per call and one call at a time; a batch starts when the previous
    one has ended, after waiting up to ``wait_s`` for it to fill (not at all when it is already full). An
    exception from ``fn`` is raised to every caller of that batch."""

    def __init__(
        self, fn: Callable[[list[T]], Awaitable[Sequence[R]]], *, max_size: int, wait_s: float
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._fn = fn
        self.max_size = max_size
        self.wait_s = wait_s
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        #: Sizes of the last batches (for tests and stats).
        self.sizes: list[int] = []

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._arrived.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        while self._pending:
            deadline = asyncio.get_running_loop().time() + self.wait_s
            while len(self._pending) < self.max_size:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except TimeoutError:
                    break
            batch, self._pending = self._pending[: self.max_size], self._pending[self.max_size :]
            batch = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if not batch:
                continue
            self.sizes = [*self.sizes[-99:], len(batch)]
            try:
                results = await self._fn([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(
                        f"batch function returned {len(results)} results for {len(batch)} items"
                    )
            except Exception as exc:  # every caller of this batch gets it
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
