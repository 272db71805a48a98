"""Pulse's recommenders as ``rec_eval.Method``s: the product's cores, run in process (the core figures; the
front door of ``recommend_quality.py --front-door`` asks the running platform the same over HTTP).

Unlike the baselines, which are fitted once on the whole training log, these replay it: before each
request at ``now`` the profile book (``actors.rec_profiles.ProfileBook``, exactly what the profile actor
holds) has taken every training event before ``now`` and none after, as a live system would. Requests come
in time order (``rec_eval.evaluate`` asks the held-out users by the time of their held-out click).

Candidates and ranking are the product's (``serve_apps/recommend/engine.py``): the ``pool`` documents
nearest to the profile vector (exact cosine over the documents published by ``now``, as the index's exact
search), the co-reads of the reader's documents, the most popular; ``actors.rec_ranking.assemble`` and
``rank``. There are no trend stories in this bench (the trending signal is off). The variants differ only
in ``BlendParams``:

- ``pulse_content``: similarity to the profile alone (candidates: nearest only);
- ``pulse_collaborative``: co-reads alone (candidates: co-reads only);
- ``pulse_blend``: the settings' default weights, every source;
- ``pulse_blend_mmr``: the same with MMR diversity 0.3.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rec_eval import LoggedEvent

from actors.rec_profiles import Interaction, ProfileBook, ProfileParams, profile_vector
from actors.rec_ranking import BlendParams, assemble, rank
from cluster.ground.settings import RecommendSettings
from serve_apps.recommend.engine import blend_params

#: Candidates per source, as ``PULSE_RECOMMEND__POOL_SIZE``.
POOL = RecommendSettings().pool_size


def settings_blend(s: RecommendSettings | None = None) -> BlendParams:
    """The product's ranking weights (``serve_apps.recommend.engine.blend_params``), default settings."""
    return blend_params(s or RecommendSettings())


def settings_profile(s: RecommendSettings | None = None) -> ProfileParams:
    return ProfileParams.from_settings(s or RecommendSettings())


class PulseMethod:
    def __init__(
        self,
        name: str,
        blend: BlendParams,
        *,
        sources: tuple[str, ...] = ("near", "co_read", "popular"),
        profile: ProfileParams | None = None,
        pool: int = POOL,
    ) -> None:
        self.name = name
        self._blend = blend
        self._sources = sources
        self._profile_params = profile or settings_profile()
        self._pool = pool

    def fit(self, train_events: Sequence[LoggedEvent], *, vectors: np.ndarray, doc_times: np.ndarray) -> None:
        self._events = sorted(train_events, key=lambda e: e.ts)
        self._next = 0
        self._vectors = np.asarray(vectors, np.float32)
        self._times = np.asarray(doc_times, np.float64)
        self._book = ProfileBook(self._profile_params)
        self._now = -np.inf

    def _advance(self, now: float) -> None:
        if now < self._now:
            raise ValueError("requests must come in time order (rec_eval.evaluate asks them so)")
        self._now = now
        start = self._next
        while self._next < len(self._events) and self._events[self._next].ts < now:
            self._next += 1
        self._book.add(
            Interaction(e.user, int(e.doc), e.type, float(e.ts), e.value)
            for e in self._events[start : self._next]
        )

    def recommend(self, user: str, *, now: float, k: int, exclude: set[int]) -> list[int]:
        self._advance(now)
        profile = self._book.user(user)
        seen = set(profile.seen) if profile is not None else set()
        banned = seen | exclude
        out = np.asarray(sorted(banned), np.int64)
        published = self._times <= now
        vector, positives = None, {}
        if profile is not None and profile.documents:
            docs = np.asarray(profile.documents, np.int64)
            vector = profile_vector(profile.weights, self._vectors[docs])
            positives = {
                int(d): self._vectors[d] for d, w in zip(docs, profile.weights, strict=True) if w > 0
            }
        pool: list[int] = []
        if "near" in self._sources and vector is not None:
            scores = self._vectors @ vector
            scores[~published] = -np.inf
            scores[out] = -np.inf
            top = np.argpartition(-scores, min(self._pool, len(scores) - 1))[: self._pool]
            pool.extend(int(i) for i in top[np.argsort(-scores[top])] if np.isfinite(scores[i]))
        co: dict[int, tuple[float, int]] = {}
        if "co_read" in self._sources and profile is not None:
            for c in self._book.co_read(list(profile.positives), limit=self._pool + len(banned)):
                if c.document_id not in banned and published[c.document_id] and len(co) < self._pool:
                    co[c.document_id] = (c.score, c.because)
            pool.extend(co)
        popular: dict[int, float] = {}
        if "popular" in self._sources:
            for doc, score in self._book.popular(now=now, limit=self._pool + len(banned), exclude=banned):
                if published[doc] and len(popular) < self._pool:
                    popular[doc] = score
            pool.extend(popular)
        ids = np.asarray(list(dict.fromkeys(pool)), np.int64)
        if not len(ids):
            return []
        candidates = assemble(
            ids,
            self._vectors[ids],
            self._times[ids],
            target=vector,
            positives=positives,
            co_reads=co,
            popularity=popular,
            trending={},
        )
        return [
            p.document_id for p in rank(candidates, self._blend, k, now=now, exclude=frozenset(banned)).picks
        ]


def methods() -> dict[str, type[object] | object]:
    """Factories of the Pulse methods, by name."""
    blend = settings_blend()
    only = BlendParams(
        content=0,
        collaborative=0,
        popularity=0,
        trending=0,
        freshness=0,
        freshness_half_life_s=blend.freshness_half_life_s,
    )
    return {
        "pulse_content": lambda: PulseMethod("pulse_content", replace(only, content=1.0), sources=("near",)),
        "pulse_collaborative": lambda: PulseMethod(
            "pulse_collaborative", replace(only, collaborative=1.0), sources=("co_read",)
        ),
        "pulse_blend": lambda: PulseMethod("pulse_blend", blend),
        "pulse_blend_mmr": lambda: PulseMethod("pulse_blend_mmr", replace(blend, diversity=0.3)),
    }
