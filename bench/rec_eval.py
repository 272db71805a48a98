"""Offline evaluation of recommenders: hide each user's last positive read, rank it among all candidates.

Pure, numpy only. The protocol (``evaluate``), for a log split by ``rec_sim.split_last_positive``:

- a method is fitted once on the training events (``Method.fit``), with the documents' unit vectors and
  the times they become available (epoch seconds);
- per held-out user, in the order of their held-out clicks' times, it is asked for ``k`` documents at
  ``now`` = the held-out click's time - 1 s, with ``exclude`` = the documents that user interacted with in
  training (any event type but ``impression``) and every document not yet published at ``now`` (a live
  feed cannot show those). Candidates: every other document. A list with more than ``k`` items, a
  repeated item, an excluded item or an unknown id is an error (``ValueError``), not a silent miss;
- metrics, one relevant item per user: HitRate@k, nDCG@k (1 / log2(rank + 1), rank from 1), catalogue
  coverage (distinct documents recommended / documents), intra-list diversity (mean over lists of the
  mean pairwise 1 - cosine), ``unpublished_share`` (recommended documents not yet available at ``now``,
  a sanity figure: a real feed cannot show them). Wall times with ``time.perf_counter``.

Note the protocol is leave-last-out, not a time split: training holds other users' events after a held-out
click, so a method fitted once on the whole log (the baselines) uses other readers' later reads. Pulse's
methods (``rec_pulse``) replay the log and use only what happened before ``now``.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

#: Event types that do not count as an interaction for ``exclude``.
NOT_INTERACTIONS = frozenset({"impression"})


class LoggedEvent(Protocol):
    """One event of the log (``rec_sim.Event`` has these fields)."""

    @property
    def event_id(self) -> str: ...
    @property
    def user(self) -> str: ...
    @property
    def doc(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def ts(self) -> float: ...
    @property
    def value(self) -> float | None: ...


class Method(Protocol):
    """A recommender under evaluation. ``fit`` is called once, then ``recommend`` per held-out user."""

    name: str

    def fit(
        self, train_events: Sequence[LoggedEvent], *, vectors: np.ndarray, doc_times: np.ndarray
    ) -> None: ...

    def recommend(self, user: str, *, now: float, k: int, exclude: set[int]) -> list[int]: ...


def hit_rate_at_k(ranked: Sequence[int], target: int, k: int) -> float:
    """1.0 if ``target`` is in the first ``k`` of ``ranked``, else 0.0."""
    return 1.0 if target in ranked[:k] else 0.0


def ndcg_at_k_single(ranked: Sequence[int], target: int, k: int) -> float:
    """nDCG@k with one relevant item: 1 / log2(rank + 1) at its rank (from 1) within the first k, else 0."""
    for rank, doc in enumerate(ranked[:k], start=1):
        if doc == target:
            return 1.0 / math.log2(rank + 1)
    return 0.0


def coverage(lists: Iterable[Sequence[int]], catalogue_size: int) -> float:
    """Distinct documents over all lists / catalogue size."""
    if catalogue_size <= 0:
        raise ValueError(f"catalogue_size must be positive, got {catalogue_size}")
    return len({d for ranked in lists for d in ranked}) / catalogue_size


def intra_list_diversity(lists: Iterable[Sequence[int]], vectors: np.ndarray) -> float:
    """Mean over lists of the mean pairwise cosine distance (1 - cos) of a list's items.

    Lists with fewer than 2 items have no pair and are skipped; 0.0 when no list has a pair."""
    values = []
    for ranked in lists:
        if len(ranked) < 2:
            continue
        v = vectors[np.asarray(ranked, dtype=np.int64)].astype(np.float64)
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        cos = v @ v.T
        n = len(ranked)
        pairs = n * (n - 1) / 2
        values.append(float((pairs - np.triu(cos, 1).sum()) / pairs))
    return float(np.mean(values)) if values else 0.0


def interacted(train_events: Iterable[LoggedEvent]) -> dict[str, set[int]]:
    """Per user, the documents of their training events of any type but ``impression``."""
    out: dict[str, set[int]] = defaultdict(set)
    for e in train_events:
        if e.type not in NOT_INTERACTIONS:
            out[e.user].add(e.doc)
    return out


def _check(name: str, user: str, ranked: list[int], *, k: int, exclude: set[int], n_docs: int) -> None:
    if len(ranked) > k:
        raise ValueError(f"{name} returned {len(ranked)} items for user {user}, more than k={k}")
    if len(set(ranked)) != len(ranked):
        raise ValueError(f"{name} returned a document twice for user {user}: {ranked}")
    if bad := [d for d in ranked if d in exclude or not 0 <= d < n_docs]:
        raise ValueError(f"{name} returned excluded or unknown documents {bad} for user {user}")


def evaluate(
    method: Method,
    train_events: Sequence[LoggedEvent],
    held_out: Mapping[str, tuple[int, float]],
    *,
    k: int = 10,
    vectors: np.ndarray,
    doc_times: np.ndarray,
) -> dict[str, Any]:
    """Fit ``method`` on ``train_events`` and score its lists for ``held_out`` (user -> (doc, ts))."""
    excluded = interacted(train_events)
    start = time.perf_counter()
    method.fit(train_events, vectors=vectors, doc_times=doc_times)
    fit_s = time.perf_counter() - start
    lists: list[list[int]] = []
    hits: list[float] = []
    gains: list[float] = []
    wall_ms: list[float] = []
    unpublished = 0
    # In time order (methods that replay the log need it); candidates are the documents out by ``now``.
    for user in sorted(held_out, key=lambda u: (held_out[u][1], u)):
        target, ts = held_out[user]
        now = ts - 1.0
        exclude = set(excluded.get(user, ())) | set(np.flatnonzero(doc_times > now).tolist())
        start = time.perf_counter()
        ranked = [int(d) for d in method.recommend(user, now=now, k=k, exclude=exclude)]
        wall_ms.append((time.perf_counter() - start) * 1000)
        _check(method.name, user, ranked, k=k, exclude=excluded.get(user, set()), n_docs=len(doc_times))
        lists.append(ranked)
        hits.append(hit_rate_at_k(ranked, target, k))
        gains.append(ndcg_at_k_single(ranked, target, k))
        unpublished += sum(1 for d in ranked if doc_times[d] > now)
    shown = sum(len(r) for r in lists)
    return {
        "hit_rate": float(np.mean(hits)) if hits else 0.0,
        "ndcg": float(np.mean(gains)) if gains else 0.0,
        "coverage": coverage(lists, len(doc_times)),
        "diversity": intra_list_diversity(lists, vectors),
        "users": len(lists),
        "fit_s": fit_s,
        "recommend_ms_p50": float(np.median(wall_ms)) if wall_ms else 0.0,
        "unpublished_share": unpublished / shown if shown else 0.0,
    }
