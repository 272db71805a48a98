"""``Recommender``: gathers a recommendation's candidates from their sources and ranks them (no HTTP).

Sources, each at most ``pool_size`` documents: the documents nearest to the reader's profile vector (or to
the examples given) in the served model's index, what readers of the reader's documents also read (the
profile actor's co-reads), the most popular lately (the profile actor), and the newest documents of the
trending stories (PostgreSQL, kept per replica for ``trending_refresh_s``). The pool's vectors and
publication times come from the index in one call per shard, which also applies the request's filters to
every source. ``actors.rec_ranking.rank`` blends, diversifies and gives the reasons.

A profile vector is made here, from the vectors of the profile's documents in the index being served
(``actors.rec_profiles.profile_vector``): a model switch needs no rebuild of the profiles.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

import numpy as np
from ray.actor import ActorProxy
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from actors.filters import NO_DATE, SearchFilter
from actors.rec_actor import ProfileService, RecommendInputs
from actors.rec_profiles import UserProfile, profile_vector
from actors.rec_ranking import (
    BlendParams,
    Candidates,
    Ranking,
    assemble,
    example_scores,
    example_vector,
    rank,
)
from cluster.ground.settings import RecommendSettings
from serve_apps.search.retriever import Retriever
from storage.model_registry import ModelRow
from storage.trend_queries import TrendingDocument, trending_documents

T = TypeVar("T")

#: Newest documents taken from each trending story.
TRENDING_PER_STORY = 5
#: Most seen documents a nearest-neighbour search over-fetches to make up for (the rest are dropped).
MAX_OVERFETCH = 1000


def blend_params(s: RecommendSettings, overrides: dict[str, Any] | None = None) -> BlendParams:
    """The ranking's weights from settings, with a variant's or a request's overrides (``None`` ignored)."""
    base = BlendParams(
        content=s.content_weight,
        collaborative=s.collaborative_weight,
        popularity=s.popularity_weight,
        trending=s.trending_weight,
        freshness=s.freshness_weight,
        freshness_half_life_s=s.freshness_half_life_h * 3600,
        diversity=s.diversity,
    )
    given = {k: v for k, v in (overrides or {}).items() if v is not None and hasattr(base, k)}
    return replace(base, **given)


@dataclass(frozen=True)
class Outcome:
    strategy: str
    ranking: Ranking
    timings: dict[str, float]


class Periodic(Generic[T]):
    """A value ``load`` reads (from PostgreSQL), kept by a replica for ``every_s`` and read again after that
    by one request while the others wait for it; ``expire`` makes the next ``get`` read it."""

    def __init__(self, load: Callable[[], Awaitable[T]], every_s: float) -> None:
        self._load, self._every_s = load, every_s
        self._value: T | None = None
        self._at = -np.inf
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return time.monotonic() - self._at < self._every_s

    async def get(self) -> T:
        if self._value is None or not self._fresh():
            async with self._lock:
                if self._value is None or not self._fresh():
                    self._value = await self._load()
                    self._at = time.monotonic()
        return self._value

    def expire(self) -> None:
        self._at = -np.inf


class VectorCache:
    """Document vectors a replica fetched lately, per model entry: a reader's profile documents recur from
    one request to the next. At most ``size`` vectors (least recently used go first), each kept ``ttl_s``
    (a re-embedded document's new vector is used after at most that)."""

    def __init__(self, size: int = 20_000, ttl_s: float = 600.0) -> None:
        self._size, self._ttl_s = size, ttl_s
        self._items: OrderedDict[tuple[int, int], tuple[float, np.ndarray]] = OrderedDict()

    def get(self, entry_id: int, documents: Sequence[int]) -> dict[int, np.ndarray]:
        now = time.monotonic()
        out: dict[int, np.ndarray] = {}
        for doc in documents:
            item = self._items.get((entry_id, doc))
            if item is None:
                continue
            if now - item[0] > self._ttl_s:
                del self._items[(entry_id, doc)]
                continue
            self._items.move_to_end((entry_id, doc))
            out[doc] = item[1]
        return out

    def put(self, entry_id: int, vectors: dict[int, np.ndarray]) -> None:
        now = time.monotonic()
        for doc, vec in vectors.items():
            self._items[(entry_id, doc)] = (now, vec)
            self._items.move_to_end((entry_id, doc))
        while len(self._items) > self._size:
            self._items.popitem(last=False)


class Recommender:
    def __init__(
        self,
        retriever: Retriever,
        sessions: async_sessionmaker[AsyncSession],
        profiles: ActorProxy[ProfileService],
        settings: RecommendSettings,
    ) -> None:
        self._retriever = retriever
        self._profiles = profiles
        self._settings = settings
        self._sessions = sessions
        self._trending = Periodic(self._trending_documents, settings.trending_refresh_s)
        self._vectors = VectorCache()

    async def _trending_documents(self) -> list[TrendingDocument]:
        """The newest documents of the best-scored trending stories (none when the setting is 0)."""
        if self._settings.trending_stories <= 0:
            return []
        async with self._sessions() as session:
            return await trending_documents(
                session, stories=self._settings.trending_stories, per_story=TRENDING_PER_STORY
            )

    @property
    def settings(self) -> RecommendSettings:
        return self._settings

    async def inputs(self, subject: str | None, now: float) -> RecommendInputs:
        pool = self._settings.pool_size
        result: RecommendInputs = await self._profiles.inputs.remote(subject, pool, pool, now)
        return result

    async def _profile_vector(
        self, entry: ModelRow, profile: UserProfile
    ) -> tuple[np.ndarray | None, dict[int, np.ndarray]]:
        """The profile's vector and the vectors of its positively weighted documents (from the replica's
        cache of document vectors, the rest from the index in one call)."""
        if not profile.documents:
            return None, {}
        found = self._vectors.get(entry.id, profile.documents)
        missing = [d for d in profile.documents if d not in found]
        if missing:
            ids, vecs, _ = await self._retriever.vectors_of(entry, np.asarray(missing, np.int64))
            fetched = {int(i): v for i, v in zip(ids.tolist(), vecs, strict=True)}
            self._vectors.put(entry.id, fetched)
            found.update(fetched)
        rows = np.zeros((len(profile.documents), entry.dimension), np.float32)
        for j, doc in enumerate(profile.documents):
            if doc in found:
                rows[j] = found[doc]
        positive = {
            d: found[d]
            for d, w in zip(profile.documents, profile.weights, strict=True)
            if w > 0 and d in found
        }
        return profile_vector(profile.weights, rows), positive

    async def personal(
        self, entry: ModelRow, subject: str | None, k: int, flt: SearchFilter, params: BlendParams, now: float
    ) -> Outcome:
        """A list for ``subject``: personal when it has a profile, else trending and popular (cold start)."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        inputs, trending = await asyncio.gather(self.inputs(subject, now), self._trending.get())
        timings["profile"] = time.perf_counter() - t0
        profile = inputs.profile
        seen = profile.seen if profile is not None else frozenset()
        vector, positives = (None, {}) if profile is None else await self._profile_vector(entry, profile)
        near_ids: list[int] = []
        t1 = time.perf_counter()
        if vector is not None:
            depth = min(self._settings.pool_size + min(len(seen), MAX_OVERFETCH), MAX_OVERFETCH)
            answer = await self._retriever.nearest(entry, vector, depth, flt)
            near_ids = [i for i in answer.ids if i not in seen][: self._settings.pool_size]
        timings["vector"] = time.perf_counter() - t1
        co = {c.document_id: c for c in inputs.co_reads}
        popular = dict(inputs.popular)
        trend = {d.document_id: d for d in trending}
        ids = list(dict.fromkeys([*near_ids, *co, *popular, *trend]))
        ranking = await self._rank(
            entry,
            ids,
            flt,
            params,
            k,
            now=now,
            exclude=seen,
            target=vector,
            positives=positives,
            co=co,
            popular=popular,
            trend=trend,
            timings=timings,
        )
        return Outcome("personal" if vector is not None else "cold_start", ranking, timings)

    async def examples(
        self,
        entry: ModelRow,
        positive: np.ndarray,
        negative: np.ndarray,
        strategy: str,
        k: int,
        flt: SearchFilter,
        params: BlendParams,
        now: float,
        exclude: frozenset[int],
    ) -> Outcome:
        """Documents like ``positive`` and unlike ``negative`` (rows of vectors), Qdrant-style."""
        timings: dict[str, float] = {}
        t1 = time.perf_counter()
        depth = min(self._settings.pool_size + len(exclude), MAX_OVERFETCH)
        # best_score searches near each positive example; average_vector (or negatives alone) near one target
        target = example_vector(positive, negative)
        queries = list(positive) if strategy == "best_score" and len(positive) else [target]
        answers = await asyncio.gather(
            *(self._retriever.nearest(entry, q, depth, flt) for q in queries if q is not None)
        )
        ids = list(dict.fromkeys(i for a in answers for i in a.ids if i not in exclude))
        timings["vector"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        found, vecs, published = await self._retriever.vectors_of(entry, np.asarray(ids, np.int64), flt)
        timings["vectors"] = time.perf_counter() - t2
        candidates = Candidates.build(
            found,
            vecs,
            content=example_scores(vecs, positive, negative, strategy),
            published=_published(published),
            examples=True,
        )
        ranking = rank(
            candidates,
            replace(params, collaborative=0.0, trending=0.0, popularity=0.0),
            k,
            now=now,
            exclude=exclude,
        )
        return Outcome("examples", ranking, timings)

    async def similar(
        self,
        entry: ModelRow,
        document_id: int,
        vector: np.ndarray,
        k: int,
        flt: SearchFilter,
        params: BlendParams,
        now: float,
    ) -> Outcome:
        """More like ``document_id``: its nearest documents and what its readers also read, blended."""
        timings: dict[str, float] = {}
        t1 = time.perf_counter()
        answer, co_reads = await asyncio.gather(
            self._retriever.nearest(entry, vector, self._settings.pool_size + 1, flt),
            self._profiles.co_read.remote([document_id], self._settings.pool_size),
        )
        timings["vector"] = time.perf_counter() - t1
        co = {c.document_id: c for c in co_reads}
        ids = list(dict.fromkeys([*answer.ids, *co]))
        ranking = await self._rank(
            entry,
            ids,
            flt,
            replace(params, popularity=0.0, trending=0.0),
            k,
            now=now,
            exclude=frozenset({document_id}),
            target=vector,
            positives={document_id: vector},
            co=co,
            popular={},
            trend={},
            timings=timings,
        )
        return Outcome("similar", ranking, timings)

    async def _rank(
        self,
        entry: ModelRow,
        ids: list[int],
        flt: SearchFilter,
        params: BlendParams,
        k: int,
        *,
        now: float,
        exclude: frozenset[int],
        target: np.ndarray | None,
        positives: dict[int, np.ndarray],
        co: dict[int, Any],
        popular: dict[int, float],
        trend: dict[int, TrendingDocument],
        timings: dict[str, float],
    ) -> Ranking:
        t0 = time.perf_counter()
        found, vecs, published = await self._retriever.vectors_of(entry, np.asarray(ids, np.int64), flt)
        timings["vectors"] = time.perf_counter() - t0
        candidates = assemble(
            found,
            vecs,
            _published(published),
            target=target,
            positives=positives,
            co_reads={d: (c.score, c.because) for d, c in co.items()},
            popularity=popular,
            trending={d: (t.story_id, t.story_score) for d, t in trend.items()},
        )
        return rank(candidates, params, k, now=now, exclude=exclude)


def _published(published: np.ndarray) -> np.ndarray:
    out = np.asarray(published, np.float64)
    return np.where(np.asarray(published) == NO_DATE, np.nan, out)
