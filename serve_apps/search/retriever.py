"""``Retriever``: keyword, vector and hybrid retrieval over a model entry's index actors, fused; no HTTP.

It holds handles to the index shard actors (``ShardedIndex``, per entry and level) and the keyword
(BM25) actors of the entries in use, never copies of the indexes. Concurrent requests share calls
(``MicroBatcher``s): queries go to the embedder as one call, the vectors of concurrent searches of one
index and filter to the shards as one matrix, and concurrent keyword queries to the keyword actor as
one call. A part that fails is left out of the answer, which then says it is partial; when every part
fails, the error says why (``NotReady`` while indexes load or do not answer in time).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import ray
from ray import ObjectRef
from ray.actor import ActorProxy
from ray.serve.handle import DeploymentHandle

from actors.errors import IndexNotReady
from actors.filters import SearchFilter
from actors.index_actor import ShardedHits, ShardedIndex
from actors.index_stats import KeywordStats, ShardStats
from actors.keyword_actor import KeywordIndexService, get_or_create_keyword_actor
from actors.vector_search import SearchHits
from serve_apps.errors import NotReady
from serve_apps.search.args import SearchArgs, fusion_params
from serve_apps.search.fusion import fuse
from serve_apps.search.micro_batch import MicroBatcher
from serve_apps.search.query_cache import QueryVectorCache
from serve_apps.search.query_embedder import QueryModel, query_model
from storage.model_registry import ModelRow

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
#: What retrieval can meet and still answer (partially) or say "retry shortly".
_UNAVAILABLE = (IndexNotReady, TimeoutError, ray.exceptions.RayError)


@dataclass(frozen=True)
class _VectorAsk:
    entry_id: int
    level: str
    vector: np.ndarray
    depth: int
    flt: SearchFilter


@dataclass(frozen=True)
class _KeywordAsk:
    entry_id: int
    query: str
    depth: int
    flt: SearchFilter
    languages: tuple[str, ...]  # the lang filter's: they choose how the query is analysed
    normalize: bool  # scores divided by the query's upper bound, as hybrid fusion expects


@dataclass(frozen=True)
class Answer:
    """One ranked run and how many of the index's parts (shards) answered."""

    ids: list[int]
    scores: list[float]
    answered: int = 1
    shards: int = 1


@dataclass(frozen=True)
class Ranked:
    """The ranking of a search (fused in hybrid mode) and how many parts answered of how many."""

    ids: list[int]
    scores: list[float]
    answered: int
    total: int


def _raise_or(answer: Answer | BaseException) -> Answer:
    if isinstance(answer, BaseException):
        raise answer
    return answer


async def _await(ref: ObjectRef[_T]) -> _T:
    return await ref


class Retriever:
    """Ranks documents for a query against one entry's indexes: vector, keyword, or both fused."""

    def __init__(self, embedder: DeploymentHandle[Any], args: SearchArgs) -> None:
        self._args = args
        self._embedder = embedder
        self._embed_batch: MicroBatcher[tuple[str, QueryModel], np.ndarray] = MicroBatcher(
            self._embed_many, max_size=args.max_batch_size, wait_s=args.batch_wait_timeout_s
        )
        self._vector_batch: MicroBatcher[_VectorAsk, Answer | BaseException] = MicroBatcher(
            self._vector_many, max_size=32, wait_s=0.002
        )
        self._keyword_batch: MicroBatcher[_KeywordAsk, Answer | BaseException] = MicroBatcher(
            self._keyword_many, max_size=32, wait_s=0.002
        )
        self.query_vectors = QueryVectorCache(args.query_cache_size)
        self._fusion = fusion_params(args.search)
        self._deadline_s = args.search.deadline_ms / 1000
        self._indexes: dict[tuple[int, str], ShardedIndex] = {}
        self._keywords: dict[int, ActorProxy[KeywordIndexService]] = {}

    # ------------------------------------------------------------------------------- index handles
    def _index(self, entry: ModelRow, level: str) -> ShardedIndex:
        key = (entry.id, level)
        if key not in self._indexes:
            self._indexes[key] = ShardedIndex(self._args.shard_config(entry, level))
        return self._indexes[key]

    def _keyword(self, entry_id: int) -> ActorProxy[KeywordIndexService]:
        if entry_id not in self._keywords:
            self._keywords[entry_id] = get_or_create_keyword_actor(self._args.keyword_config(entry_id))
        return self._keywords[entry_id]

    async def warm_up(self, entry: ModelRow) -> None:
        """Start loading an entry's document and keyword indexes, and its query model."""
        self._index(entry, "document")
        self._keyword(entry.id)
        await self._embedder.prepare.remote(query_model(entry))

    async def document_shards(self, entry: ModelRow) -> list[ShardStats]:
        return await self._index(entry, "document").stats()

    async def keyword_stats(self, entry: ModelRow) -> KeywordStats:
        return await _await(self._keyword(entry.id).stats.remote())

    async def vector_of(self, entry: ModelRow, document_id: int) -> np.ndarray | None:
        """A document's vector in the entry's document index (``None``: not in it)."""
        try:
            return await self._index(entry, "document").vector_of(document_id)
        except IndexNotReady as exc:
            raise NotReady("the index is loading; retry shortly", retry_after_s=5) from exc

    async def vectors_of(
        self, entry: ModelRow, document_ids: np.ndarray, flt: SearchFilter | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, vectors, publication times) of those of ``document_ids`` in the entry's document index
        that pass ``flt`` (order not kept)."""
        try:
            return await self._index(entry, "document").vectors_of(document_ids, flt)
        except IndexNotReady as exc:
            raise NotReady("the index is loading; retry shortly", retry_after_s=5) from exc

    async def embed(self, entry: ModelRow, texts: list[str]) -> np.ndarray:
        """The query vectors of ``texts`` (the entry's query model, batched with concurrent searches)."""
        model = query_model(entry)
        rows = await asyncio.gather(*(self._query_vector(t, model) for t in texts))
        return np.vstack(rows) if rows else np.zeros((0, entry.dimension), np.float32)

    async def nearest(self, entry: ModelRow, vector: np.ndarray, k: int, flt: SearchFilter) -> Answer:
        """The ``k`` documents nearest to ``vector`` in the entry's document index; ``NotReady`` (503) when
        no shard answers in time, as for a search (recommendations and "more like this" call this)."""
        answer = await self._vector_batch.submit(_VectorAsk(entry.id, "document", vector, k, flt))
        if isinstance(answer, TimeoutError | ray.exceptions.RayError):
            raise NotReady(
                "the search index did not answer in time; retry shortly", retry_after_s=2
            ) from answer
        return _raise_or(answer)

    async def _query_vector(self, query: str, model: QueryModel) -> np.ndarray:
        """The query's vector: from the replica's cache of recent queries, else embedded (batched)."""
        vector = self.query_vectors.get((query, model))
        if vector is None:
            vector = await self._embed_batch.submit((query, model))
            self.query_vectors.put((query, model), vector)
        return vector

    # ------------------------------------------------------------------------------------ batching
    async def _embed_many(self, asks: list[tuple[str, QueryModel]]) -> list[np.ndarray]:
        """Concurrent queries go to the embedder as one call (one encode per model there)."""
        vectors: list[np.ndarray] = await self._embedder.embed_many.remote(asks)
        return vectors

    async def _vector_many(self, asks: list[_VectorAsk]) -> list[Answer | BaseException]:
        """Concurrent searches of one index and filter go to the shards as one query matrix."""
        groups: dict[tuple[int, str, SearchFilter], list[int]] = {}
        for i, ask in enumerate(asks):
            groups.setdefault((ask.entry_id, ask.level, ask.flt), []).append(i)
        out: list[Answer | BaseException] = [RuntimeError("not answered")] * len(asks)

        async def run(key: tuple[int, str, SearchFilter], rows: list[int]) -> None:
            entry_id, level, flt = key
            index = self._indexes[(entry_id, level)]
            queries = np.stack([asks[i].vector for i in rows]).astype(np.float32)
            depth = max(asks[i].depth for i in rows)
            try:
                result: ShardedHits = await index.search(
                    queries, depth, None if flt.is_empty else flt, deadline_s=self._deadline_s
                )
            except _UNAVAILABLE as exc:
                for i in rows:
                    out[i] = exc
                return
            for j, i in enumerate(rows):
                out[i] = Answer(
                    result.hits.ids[j][: asks[i].depth],
                    result.hits.scores[j][: asks[i].depth],
                    result.answered,
                    result.shards,
                )

        await asyncio.gather(*(run(key, rows) for key, rows in groups.items()))
        return out

    async def _keyword_many(self, asks: list[_KeywordAsk]) -> list[Answer | BaseException]:
        groups: dict[tuple[int, SearchFilter, tuple[str, ...], bool], list[int]] = {}
        for i, ask in enumerate(asks):
            groups.setdefault((ask.entry_id, ask.flt, ask.languages, ask.normalize), []).append(i)
        out: list[Answer | BaseException] = [RuntimeError("not answered")] * len(asks)

        async def run(key: tuple[int, SearchFilter, tuple[str, ...], bool], rows: list[int]) -> None:
            entry_id, flt, languages, normalize = key
            depth = max(asks[i].depth for i in rows)
            ref = self._keyword(entry_id).search.remote(
                [asks[i].query for i in rows], depth, None if flt.is_empty else flt, languages, normalize
            )
            try:
                hits: SearchHits = await asyncio.wait_for(_await(ref), timeout=self._deadline_s)
            except _UNAVAILABLE as exc:
                for i in rows:
                    out[i] = exc
                return
            for j, i in enumerate(rows):
                out[i] = Answer(hits.ids[j][: asks[i].depth], hits.scores[j][: asks[i].depth])

        await asyncio.gather(*(run(key, rows) for key, rows in groups.items()))
        return out

    # ----------------------------------------------------------------------------------- retrieval
    async def rank(
        self,
        entry: ModelRow,
        query: str,
        mode: str,
        level: str,
        flt: SearchFilter,
        depth: int,
        timings: dict[str, float],
    ) -> Ranked:
        """The ``depth`` best documents for ``query``: the ranked runs the mode needs (keyword first, then
        vector; each stage's seconds into ``timings``), in hybrid mode fused, and how many parts answered."""
        fetch = max(depth, self._fusion.depth) if mode == "hybrid" else depth
        self._index(entry, level)  # the batch looks the index up by key

        async def vector_run() -> Answer:
            t0 = time.perf_counter()
            vector = await self._query_vector(query, query_model(entry))
            t1 = time.perf_counter()
            timings["embed"] = t1 - t0
            answer = await self._vector_batch.submit(
                _VectorAsk(entry.id, level, np.asarray(vector, dtype=np.float32), fetch, flt)
            )
            timings["vector"] = time.perf_counter() - t1
            return _raise_or(answer)

        async def keyword_run() -> Answer:
            t0 = time.perf_counter()
            answer = await self._keyword_batch.submit(
                _KeywordAsk(entry.id, query, fetch, flt, tuple(flt.languages), normalize=mode == "hybrid")
            )
            timings["keyword"] = time.perf_counter() - t0
            return _raise_or(answer)

        wanted = {"vector": [vector_run], "keyword": [keyword_run], "hybrid": [keyword_run, vector_run]}[mode]
        outcomes = await asyncio.gather(*(run() for run in wanted), return_exceptions=True)
        runs: list[tuple[list[int], list[float]]] = []
        answered = total = 0
        failures: list[BaseException] = []
        for outcome in outcomes:
            if isinstance(outcome, Answer):
                runs.append((outcome.ids, outcome.scores))
                answered += outcome.answered
                total += outcome.shards
            else:
                failures.append(outcome)
                runs.append(([], []))
                total += 1
        if len(failures) == len(outcomes):  # nothing answered: say why
            failure = failures[0]
            if isinstance(failure, IndexNotReady):
                raise NotReady(f"the index of model {entry.name} is loading; retry shortly", retry_after_s=5)
            if isinstance(failure, TimeoutError | ray.exceptions.RayError):
                raise NotReady("the search index did not answer in time; retry shortly", retry_after_s=2)
            raise failure
        for failure in failures:
            if not isinstance(failure, _UNAVAILABLE):
                raise failure
            logger.warning("search part failed, answering partially: %s", failure)
        t0 = time.perf_counter()
        if mode == "hybrid":
            ids, scores = fuse(runs, k=depth, params=self._fusion)
        else:
            ids, scores = list(runs[0][0]), list(runs[0][1])
        timings["fuse"] = time.perf_counter() - t0
        return Ranked(ids, scores, answered, total)
