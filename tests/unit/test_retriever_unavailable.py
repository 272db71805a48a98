"""Retriever.nearest (the vector search of recommendations and "more like this") answers 503 NotReady, not a
500, when no index shard answers within the deadline: found by bench/soak.py, where ``GET /v1/recommend``
failed with 500 ("no index shard of model 1 answered in 1.0 s") while collection and embedding loaded the
machine. A fake sharded index stands in for the actors; asyncio only, nothing sleeps.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from actors.filters import SearchFilter
from serve_apps.errors import NotReady
from serve_apps.search.args import SearchArgs
from serve_apps.search.retriever import Retriever
from storage.model_registry import ModelRow

ENTRY = ModelRow(
    id=1,
    status="active",
    name="model-1",
    revision="r",
    path="",
    dimension=4,
    normalize=True,
    max_seq_length=None,
    pooling="mean",
)


class SilentIndex:
    """A sharded index none of whose shards answers in time (as ``ShardedIndex.search`` then raises)."""

    async def search(self, queries: np.ndarray, k: int, flt: Any, *, deadline_s: float) -> Any:
        raise TimeoutError(f"no index shard of model 1 answered in {deadline_s} s")


def test_nearest_is_not_ready_when_no_shard_answers_in_time() -> None:
    async def run() -> None:
        retriever = Retriever(None, SearchArgs(database_url="postgresql+psycopg://nobody@localhost/none"))  # type: ignore[arg-type]
        retriever._indexes[(ENTRY.id, "document")] = SilentIndex()  # type: ignore[assignment]
        with pytest.raises(NotReady) as caught:
            await retriever.nearest(ENTRY, np.ones(4, np.float32), 10, SearchFilter())
        assert caught.value.status_code == 503
        assert "did not answer in time" in caught.value.message

    asyncio.run(run())
