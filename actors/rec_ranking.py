"""Ranking recommendations (pure numpy, no Ray): blend a candidate pool's signals, diversify by MMR, and say
why each document was chosen.

A request gathers candidates from several sources (the documents nearest to the reader's profile or to the
examples given, what readers of their documents also read, trending stories, the most popular) into one
``Candidates`` table: one row per document, one column per signal, each in [0, 1]:

- ``content``: cosine to the profile (or examples), clipped at 0;
- ``collaborative``: co-read score, divided by the pool's largest (the best co-read is 1);
- ``popularity``: decayed popularity, divided by the pool's largest;
- ``trending``: the score of the trending story the document belongs to, divided by the largest;
- freshness, from ``published``: ``2 ** (-age / freshness_half_life_s)``, 0 when the date is unknown.

``blend`` is the weighted sum (``BlendParams``); ``mmr`` picks ``k`` rows greedily by
``(1 - diversity) * relevance - diversity * (largest cosine to a row already picked)``, relevance being the
blend scaled to [0, 1] over the pool (``diversity`` 0: by relevance alone). ``rank`` does both and names each
pick's reason: the signal that contributed most to its score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

ReasonKind = Literal["similar", "examples", "co_read", "trending", "popular", "fresh"]


@dataclass(frozen=True)
class BlendParams:
    content: float = 1.0
    collaborative: float = 1.0
    popularity: float = 0.3
    trending: float = 0.3
    freshness: float = 1.0
    freshness_half_life_s: float = 4 * 86_400.0
    diversity: float = 0.0


@dataclass(frozen=True)
class Reason:
    """Why a document was chosen: ``kind`` and the document or story it points to."""

    kind: ReasonKind
    document_id: int | None = None  # similar: the document read; co_read: the document its readers read
    story_id: int | None = None  # trending


@dataclass(frozen=True)
class Pick:
    document_id: int
    score: float
    reason: Reason


def _column(n: int, values: np.ndarray | None, dtype: type, fill: float) -> np.ndarray:
    if values is None:
        return np.full(n, fill, dtype)
    out: np.ndarray = np.asarray(values, dtype)
    if out.shape != (n,):
        raise ValueError(f"a candidate column has shape {out.shape}; expected ({n},)")
    return out


@dataclass(frozen=True)
class Candidates:
    """The pool: one row per distinct document. Build it with ``Candidates.build``."""

    ids: np.ndarray  # int64
    vectors: np.ndarray  # (n, d) float32, unit rows (zeros: unknown)
    content: np.ndarray  # cosine to the profile or examples; nan: none
    similar_to: np.ndarray  # int64: the reader's document it is nearest to; -1 none
    collaborative: np.ndarray
    co_read_with: np.ndarray  # int64, -1 none
    popularity: np.ndarray
    trending: np.ndarray
    story: np.ndarray  # int64, -1 none
    published: np.ndarray  # float64 epoch seconds; nan unknown
    examples: bool = False  # content is similarity to given examples, not to a reader's profile

    @classmethod
    def build(
        cls,
        ids: np.ndarray,
        vectors: np.ndarray,
        *,
        content: np.ndarray | None = None,
        similar_to: np.ndarray | None = None,
        collaborative: np.ndarray | None = None,
        co_read_with: np.ndarray | None = None,
        popularity: np.ndarray | None = None,
        trending: np.ndarray | None = None,
        story: np.ndarray | None = None,
        published: np.ndarray | None = None,
        examples: bool = False,
    ) -> Candidates:
        ids = np.asarray(ids, np.int64)
        n = len(ids)
        if len(np.unique(ids)) != n:
            raise ValueError("candidate ids must be distinct")
        vecs = np.asarray(vectors, np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != n:
            raise ValueError(f"candidate vectors have shape {vecs.shape}; expected ({n}, d)")
        return cls(
            ids=ids,
            vectors=vecs,
            content=_column(n, content, np.float64, np.nan),
            similar_to=_column(n, similar_to, np.int64, -1),
            collaborative=_column(n, collaborative, np.float64, 0.0),
            co_read_with=_column(n, co_read_with, np.int64, -1),
            popularity=_column(n, popularity, np.float64, 0.0),
            trending=_column(n, trending, np.float64, 0.0),
            story=_column(n, story, np.int64, -1),
            published=_column(n, published, np.float64, np.nan),
            examples=examples,
        )

    def __len__(self) -> int:
        return len(self.ids)


def _scaled(values: np.ndarray) -> np.ndarray:
    v = np.nan_to_num(np.clip(values, 0.0, None), nan=0.0)
    top = float(v.max()) if len(v) else 0.0
    scaled: np.ndarray = v / top if top > 0 else v
    return scaled


def signals(c: Candidates, p: BlendParams, *, now: float) -> dict[str, np.ndarray]:
    """Each signal of each candidate, weighted: the parts of its blended score."""
    age = np.clip(now - c.published, 0.0, None)
    fresh = np.where(np.isnan(c.published), 0.0, 2.0 ** (-age / max(p.freshness_half_life_s, 1e-9)))
    return {
        "content": p.content * np.nan_to_num(np.clip(c.content, 0.0, None), nan=0.0),
        "collaborative": p.collaborative * _scaled(c.collaborative),
        "popularity": p.popularity * _scaled(c.popularity),
        "trending": p.trending * _scaled(c.trending),
        "freshness": p.freshness * fresh,
    }


def blend(c: Candidates, p: BlendParams, *, now: float) -> np.ndarray:
    """The blended score of each candidate."""
    parts = signals(c, p, now=now)
    total = np.zeros(len(c), np.float64)
    for part in parts.values():
        total += part
    return total


def mmr(vectors: np.ndarray, relevance: np.ndarray, k: int, diversity: float) -> np.ndarray:
    """Maximal marginal relevance: the indices of ``k`` rows picked greedily by ``(1 - diversity) * relevance
    - diversity * max cosine to the rows already picked``; relevance is scaled to [0, 1] first."""
    n = len(relevance)
    k = min(k, n)
    if k <= 0:
        return np.empty(0, np.int64)
    rel = np.asarray(relevance, np.float64)
    lo, hi = float(rel.min()), float(rel.max())
    rel = (rel - lo) / (hi - lo) if hi > lo else np.ones(n)
    if diversity <= 0:
        return np.argsort(-rel, kind="stable")[:k].astype(np.int64)
    vecs = np.asarray(vectors, np.float32)
    closest = np.full(n, -np.inf)
    taken = np.zeros(n, bool)
    picks: list[int] = []
    for _ in range(k):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        score = (1 - diversity) * rel - diversity * penalty
        score[taken] = -np.inf
        i = int(np.argmax(score))
        picks.append(i)
        taken[i] = True
        closest = np.maximum(closest, vecs @ vecs[i])
    return np.asarray(picks, np.int64)


_REASONS: dict[str, ReasonKind] = {
    "content": "similar",
    "collaborative": "co_read",
    "popularity": "popular",
    "trending": "trending",
    "freshness": "fresh",
}


def _reason(c: Candidates, parts: dict[str, np.ndarray], i: int) -> Reason:
    name = max(parts, key=lambda key: float(parts[key][i]))
    if float(parts[name][i]) <= 0.0:
        name = "content"
    kind = _REASONS[name]
    if kind == "similar":
        if c.examples:
            return Reason("examples")
        doc = int(c.similar_to[i])
        return Reason("similar", document_id=doc if doc >= 0 else None)
    if kind == "co_read":
        return Reason("co_read", document_id=int(c.co_read_with[i]))
    if kind == "trending":
        return Reason("trending", story_id=int(c.story[i]))
    return Reason(kind)


@dataclass(frozen=True)
class Ranking:
    picks: list[Pick]
    scores: np.ndarray = field(repr=False)  # the blend of every candidate


def rank(
    c: Candidates, p: BlendParams, k: int, *, now: float, exclude: frozenset[int] = frozenset()
) -> Ranking:
    """The ``k`` best candidates by blended score, diversified by MMR (``p.diversity``), each with its reason;
    documents in ``exclude`` are never picked."""
    parts = signals(c, p, now=now)
    scores = np.zeros(len(c), np.float64)
    for part in parts.values():
        scores += part
    allowed = (
        np.flatnonzero(~np.isin(c.ids, np.fromiter(exclude, np.int64, len(exclude)))) if exclude else None
    )
    pool = np.arange(len(c)) if allowed is None else allowed
    chosen = pool[mmr(c.vectors[pool], scores[pool], k, p.diversity)]
    picks = [Pick(int(c.ids[i]), float(scores[i]), _reason(c, parts, int(i))) for i in chosen]
    return Ranking(picks, scores)


def example_scores(
    vectors: np.ndarray, positives: np.ndarray, negatives: np.ndarray, strategy: str
) -> np.ndarray:
    """Similarity of each row of ``vectors`` to examples (Qdrant's recommend strategies):

    - ``average_vector``: cosine to ``normalise(mean(positives) + (mean(positives) - mean(negatives)))``
      (to ``mean(positives)`` without negatives);
    - ``best_score``: the best cosine to a positive when it beats the best to a negative, else minus the
      best cosine to a negative, in absolute value (what resembles a negative example sinks below everything
      else; a row opposite to every example does not score above those near a positive).
    """
    vecs = np.asarray(vectors, np.float32)
    pos = np.asarray(positives, np.float32).reshape(-1, vecs.shape[1])
    neg = np.asarray(negatives, np.float32).reshape(-1, vecs.shape[1])
    if strategy == "average_vector":
        target = example_vector(pos, neg)
        return (vecs @ target).astype(np.float64) if target is not None else np.zeros(len(vecs))
    if strategy == "best_score":
        best_pos = (vecs @ pos.T).max(axis=1) if len(pos) else np.full(len(vecs), -1.0)
        if not len(neg):
            return best_pos.astype(np.float64)
        best_neg = (vecs @ neg.T).max(axis=1)
        return np.where(best_pos > best_neg, best_pos, -np.abs(best_neg)).astype(np.float64)
    raise ValueError(f"unknown strategy {strategy!r}; one of average_vector, best_score")


def example_vector(positives: np.ndarray, negatives: np.ndarray) -> np.ndarray | None:
    """``average_vector``'s target: unit ``2 mean(pos) - mean(neg)``; ``-mean(neg)`` without positives
    (away from the negatives); ``None`` without either."""
    pos = np.asarray(positives, np.float64)
    neg = np.asarray(negatives, np.float64)
    if len(pos) and len(neg):
        target = 2 * pos.mean(axis=0) - neg.mean(axis=0)
    elif len(pos):
        target = pos.mean(axis=0)
    elif len(neg):
        target = -neg.mean(axis=0)
    else:
        return None
    norm = float(np.linalg.norm(target))
    return (target / norm).astype(np.float32) if norm > 1e-9 else None


def assemble(
    ids: np.ndarray,
    vectors: np.ndarray,
    published: np.ndarray,
    *,
    target: np.ndarray | None,
    positives: dict[int, np.ndarray],
    co_reads: dict[int, tuple[float, int]],
    popularity: dict[int, float],
    trending: dict[int, tuple[int, float]],
) -> Candidates:
    """The pool of a request from its sources.

    ``ids`` with their ``vectors`` and publication times (epoch s, nan unknown); ``target`` the profile or
    example vector (content = cosine to it); ``positives`` the reader's documents (each candidate's
    ``similar_to`` is the nearest of them); ``co_reads`` document -> (score, the reader's document it was
    co-read with); ``popularity`` document -> decayed popularity; ``trending`` document -> (story, score).
    """
    order = np.asarray(ids, np.int64).tolist()
    vecs = np.asarray(vectors, np.float32)
    similar_to = np.full(len(order), -1, np.int64)
    content = None
    if target is not None:
        content = vecs @ np.asarray(target, np.float32)
        if positives and len(order):
            pos_ids = np.fromiter(positives, np.int64, len(positives))
            similar_to = pos_ids[np.argmax(vecs @ np.vstack(list(positives.values())).T, axis=1)]
    return Candidates.build(
        np.asarray(order, np.int64),
        vecs,
        content=content,
        similar_to=similar_to,
        collaborative=np.array([co_reads[d][0] if d in co_reads else 0.0 for d in order]),
        co_read_with=np.array([co_reads[d][1] if d in co_reads else -1 for d in order], np.int64),
        popularity=np.array([popularity.get(d, 0.0) for d in order]),
        trending=np.array([trending[d][1] if d in trending else 0.0 for d in order]),
        story=np.array([trending[d][0] if d in trending else -1 for d in order], np.int64),
        published=np.asarray(published, np.float64),
    )
