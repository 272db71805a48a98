"""Fusion of ranked lists (keyword, vector, ...) into one ranking: pure functions, no Ray, no index.

A *run* is ``(ids, scores)`` best first, as one row of ``SearchHits``. ``fuse`` takes the first
``params.depth`` entries of each run and combines them by one of:

- ``"convex"``: a weighted sum of the scores as they come, for runs whose scores already mean the same
  across queries: cosine similarity, and keyword scores from ``KeywordIndex.search(..., normalize=True)``
  (BM25 divided by the query's upper bound, in (0, 1]). Bruch et al. 2023 ("An Analysis of Fusion
  Functions for Hybrid Retrieval") found such fixed-scale convex combinations beat per-query min-max
  and RRF; it keeps a weak keyword match weak, where min-max stretches any query's best match to 1.
  **Raw BM25 scores (10-50) would swamp cosine here: callers must ask for normalised keyword scores.**
- ``"rrf"``: reciprocal rank fusion, ``sum(w / (rrf_k + rank))`` with ranks from 1 (Cormack et al. 2009).
  Scores are ignored; a document absent from a run gets nothing from it.
- ``"minmax"``: each run's scores mapped to [0, 1] by its own minimum and maximum, then a weighted sum.
- ``"zscore"``: each run's scores standardised by its mean and standard deviation, then a weighted sum.
- ``"dbsf"``: distribution-based score fusion (Qdrant's): scores mapped to [0, 1] between mean - 3 sd
  and mean + 3 sd of the run, clipped, then a weighted sum.

A document absent from a run (it ranked below ``depth`` there, or matched nothing) scores ``missing``
there: ``"zero"`` (normalised 0: the run's minimum for minmax, its mean for zscore, 0 for convex) or
``"min"`` (the lowest value the run returned, as if it ranked just below the run's last entry; the same
as ``"zero"`` for minmax). ``"min"`` applies only to a run cut at ``depth``: a run with fewer entries
holds every document that matched, and the others score ``"zero"`` there. Results are sorted by fused
score, ties by smaller id.

``DEFAULT_PARAMS`` is Pulse's hybrid default, measured by ``bench/search_quality.py`` on SciFact's 809
train claims (nDCG@10, document-level vectors; keyword = ``KeywordIndex`` 0.701, vector 0.660):

==========================================  =====  ==========  ============
fusion (keyword, vector)                    all    tune half   held-out half
==========================================  =====  ==========  ============
convex 0.5/0.5, depth 200, missing "min"    0.745  0.762       0.727
min-max 0.5/0.5, depth 100 (plain bm25s)    0.731  0.750       0.713
RRF k=60, depth 100                         0.714  0.728       0.699
==========================================  =====  ==========  ============

Chosen as the best of 162 fusions (rrf / convex / minmax / zscore, keyword weight 0.30-0.70, depth
100 / 200 / 1000, missing zero / min) by mean nDCG@10 over document and chunk level on the tune half
(queries at even positions sorted by id); the odd half was not looked at when choosing. Best of the
other methods on the tune half: zscore 0.756, minmax 0.754, rrf 0.735. Missing "min" beat "zero" for
convex at depth 100-200 (0.745 vs 0.742 all) and tied at depth 1000.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

FusionMethod = Literal["rrf", "convex", "minmax", "zscore", "dbsf"]
MissingScore = Literal["zero", "min"]
#: Every fusion method ``fuse`` knows.
FUSION_METHODS: tuple[FusionMethod, ...] = ("rrf", "convex", "minmax", "zscore", "dbsf")

Run = tuple[Sequence[int], Sequence[float]]


@dataclass(frozen=True)
class FusionParams:
    """How runs are fused. ``weights`` has one weight per run (``None``: all 1); ``depth`` is how many
    entries of each run are used, and so how many a caller should fetch from each side."""

    method: FusionMethod = "rrf"
    weights: tuple[float, ...] | None = None
    rrf_k: float = 60.0
    missing: MissingScore = "zero"
    depth: int = 100

    def __post_init__(self) -> None:
        if self.method not in FUSION_METHODS:
            raise ValueError(f"unknown fusion method {self.method!r}; use one of {', '.join(FUSION_METHODS)}")
        if self.rrf_k < 0:
            raise ValueError(f"rrf_k must be 0 or more; got {self.rrf_k}")
        if self.depth < 1:
            raise ValueError(f"depth must be at least 1; got {self.depth}")
        if self.weights is not None and any(not math.isfinite(w) or w < 0 for w in self.weights):
            raise ValueError(f"weights must be finite and 0 or more; got {list(self.weights)}")


#: Plain reciprocal rank fusion, equal weights, k = 60 (the common baseline).
RRF = FusionParams(method="rrf", rrf_k=60.0)
#: Min-max normalisation, equal weights (the common score-fusion baseline).
MINMAX = FusionParams(method="minmax", weights=(0.5, 0.5))

#: Pulse's hybrid default: runs (keyword with ``normalize=True``, vector); see the module docstring.
DEFAULT_PARAMS = FusionParams(method="convex", weights=(0.5, 0.5), missing="min", depth=200)
DEFAULT_METHOD: FusionMethod = DEFAULT_PARAMS.method


def _first(run: Run, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """A run's first ``depth`` distinct ids (a repeated id keeps its best, first, place) and scores."""
    ids, scores = run
    if len(ids) != len(scores):
        raise ValueError(f"a run has {len(ids)} ids but {len(scores)} scores")
    id_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
    score_arr = np.asarray(scores, dtype=np.float64).reshape(-1)
    _, first = np.unique(id_arr, return_index=True)
    if len(first) < len(id_arr):
        keep = np.sort(first)
        id_arr, score_arr = id_arr[keep], score_arr[keep]
    return id_arr[:depth], score_arr[:depth]


def normalise(scores: Sequence[float] | np.ndarray, method: FusionMethod) -> np.ndarray:
    """One run's scores on the scale ``method`` fuses them on (``rrf`` uses ranks, not scores)."""
    values = np.asarray(scores, dtype=np.float64)
    if len(values) == 0 or method == "convex":
        return values
    if method == "minmax":
        low, high = values.min(), values.max()
        return (values - low) / (high - low) if high > low else np.ones_like(values)
    mean, sd = values.mean(), values.std()
    if method == "zscore":
        return (values - mean) / sd if sd > 0 else np.zeros_like(values)
    if method == "dbsf":
        return np.clip((values - mean + 3 * sd) / (6 * sd), 0.0, 1.0) if sd > 0 else np.full_like(values, 0.5)
    raise ValueError(f"no score normalisation for method {method!r}")


def fuse(
    runs: Sequence[Run], *, k: int, params: FusionParams = DEFAULT_PARAMS
) -> tuple[list[int], list[float]]:
    """The ``k`` best documents of the fused runs: ``(ids, fused scores)``, best first."""
    weights = params.weights if params.weights is not None else (1.0,) * len(runs)
    if len(weights) != len(runs):
        raise ValueError(f"{len(weights)} weights for {len(runs)} runs: give one weight per run")
    if k <= 0:
        return [], []
    ids: list[np.ndarray] = []
    gains: list[np.ndarray] = []  # what being in the run adds over being absent from it, weighted
    base = 0.0  # what a document absent from every run would get
    for run, weight in zip(runs, weights, strict=True):
        run_ids, scores = _first(run, params.depth)
        if len(run_ids) == 0:
            continue
        if params.method == "rrf":
            values = 1.0 / (params.rrf_k + np.arange(1, len(run_ids) + 1, dtype=np.float64))
            absent = 0.0
        else:
            values = normalise(scores, params.method)
            # "min" stands for "ranked just below the run's last entry", which holds only for a run
            # cut at ``depth``; a shorter run holds every document that matched, so the absent matched
            # nothing and score as "zero" (a query term only one document has must still count).
            cut = len(run_ids) >= params.depth
            absent = float(values.min()) if params.missing == "min" and cut else 0.0
        base += weight * absent
        ids.append(run_ids)
        gains.append(weight * (values - absent))
    if not ids:
        return [], []
    every, where = np.unique(np.concatenate(ids), return_inverse=True)
    fused = base + np.bincount(where, weights=np.concatenate(gains), minlength=len(every))
    order = np.lexsort((every, -fused))[:k]  # best first, ties by smaller id
    return [int(i) for i in every[order]], [float(s) for s in fused[order]]
