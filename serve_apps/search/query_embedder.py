"""``QueryEmbedder``: the Serve deployment that embeds queries, batching concurrent ones (``@serve.batch``).

It serves several models at once (one per registry entry in use), so a model switch never stalls
queries: the new entry's model is loaded ahead (``prepare``) while the old one keeps answering.
"""

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
from ray import serve

from jobs.embed.encode import describe_model, encode, load_model
from storage.model_registry import ModelRow


@dataclass(frozen=True)
class QueryModel:
    """Which model embeds a query, and how (its registry entry's recipe)."""

    entry_id: int
    ref: str
    normalize: bool
    query_prefix: str = ""


class _BatchSettings(Protocol):
    """The setters ``@serve.batch`` puts on the method it wraps (Ray's type hints leave them out)."""

    def set_max_batch_size(self, new_max_batch_size: int) -> None: ...

    def set_batch_wait_timeout_s(self, new_batch_wait_timeout_s: float) -> None: ...


def query_model(entry: ModelRow) -> QueryModel:
    return QueryModel(
        entry_id=entry.id,
        ref=entry.path or entry.name,
        normalize=entry.normalize,
        query_prefix=str(entry.recipe.get("query_prefix") or ""),
    )


class QueryEmbedder:
    """Embeds queries with the model of the index being searched; concurrent queries share encode calls.

    Models are loaded on first use (``prepare`` loads one ahead of a switch) and kept by reference, so
    during a model switch queries for the old and the new index are both served.
    """

    def __init__(
        self, model_name: str, device: str, max_batch_size: int, batch_wait_timeout_s: float
    ) -> None:
        self._device = device
        self._models: dict[str, Any] = {}
        self._load(model_name)  # the configured model, ready before the first query
        batching = cast(_BatchSettings, self.embed)
        batching.set_max_batch_size(max_batch_size)
        batching.set_batch_wait_timeout_s(batch_wait_timeout_s)

    def _load(self, ref: str) -> Any:
        if ref not in self._models:
            self._models[ref] = load_model(describe_model(ref), device=self._device, threads=1)
        return self._models[ref]

    async def prepare(self, model: QueryModel) -> bool:
        await asyncio.to_thread(self._load, model.ref)
        return True

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def embed(self, requests: list[tuple[str, QueryModel]]) -> list[np.ndarray]:
        """One ``(query, model)`` pair per call -> its vector; concurrent calls share encode calls."""
        return await self.embed_many(requests)

    async def embed_many(self, requests: list[tuple[str, QueryModel]]) -> list[np.ndarray]:
        """``(query, model)`` pairs -> vectors; one encode call per model. The search ingress batches its
        concurrent queries itself and sends them here in one call (one Ray call per batch, not per query)."""
        texts = [text for text, _ in requests]
        out: list[np.ndarray | None] = [None] * len(texts)
        groups: dict[QueryModel, list[int]] = {}
        for i, (_, m) in enumerate(requests):
            groups.setdefault(m, []).append(i)
        for m, rows in groups.items():
            model = await asyncio.to_thread(self._load, m.ref)
            batch = [m.query_prefix + texts[i] for i in rows]
            vectors = await asyncio.to_thread(
                encode, model, batch, batch_size=len(batch), normalize=m.normalize
            )
            for i, v in zip(rows, vectors, strict=True):
                out[i] = v
        return [v for v in out if v is not None]
