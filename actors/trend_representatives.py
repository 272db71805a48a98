"""Representative documents of a story: close to its centroid and unlike each other. Pure numpy.

Maximal marginal relevance (Carbonell & Goldstein 1998) over cosine similarity, as BERTopic's
``MaximalMarginalRelevance`` picks keywords: the centroid is the mean of the story's unit vectors; the
first pick is the document most similar to it, and each next one maximises

    (1 - diversity) * cos(d, centroid) - diversity * max_{s picked} cos(d, s)

A document at least ``duplicate`` similar to one already picked (a wire copy, a syndicated rewrite) is
never picked, even when nothing else is left: a story of five copies of one article has one
representative. Vectors are re-normalised (a zero vector stays zero: similarity 0 to all). Ties go to the
smaller id, and the result does not depend on the order of the input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Cosine similarity from which two documents are the same text for this purpose.
DUPLICATE_SIMILARITY = 0.95


def representatives(
    vectors: np.ndarray,
    ids: Sequence[int],
    *,
    k: int = 5,
    diversity: float = 0.3,
    duplicate: float = DUPLICATE_SIMILARITY,
) -> list[int]:
    """The ids of up to ``k`` representative documents, most representative first (module docstring).

    ``vectors`` is ``n x d`` (one row per id, L2-normalised); ``diversity`` in [0, 1]: 0 ranks by
    closeness to the centroid alone.
    """
    matrix = np.asarray(vectors, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != len(ids):
        raise ValueError(
            f"representatives needs an n x d matrix for {len(ids)} ids; got shape {matrix.shape}"
        )
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"diversity must be between 0 and 1; got {diversity}")
    if k < 1 or not ids:
        return []
    order = np.argsort(np.asarray(ids, dtype=np.int64), kind="stable")  # ties to the smaller id
    ordered_ids = [int(ids[i]) for i in order]
    norms = np.linalg.norm(matrix[order], axis=1, keepdims=True)
    unit = np.divide(matrix[order], norms, out=np.zeros_like(matrix[order]), where=norms > 0)
    centroid = unit.mean(axis=0)
    centroid_norm = float(np.linalg.norm(centroid))
    relevance = unit @ centroid / centroid_norm if centroid_norm > 0 else np.zeros(len(ordered_ids))
    closest = np.full(len(ordered_ids), -np.inf)  # max similarity to a picked document
    available = np.ones(len(ordered_ids), dtype=bool)
    picked: list[int] = []
    while len(picked) < k and available.any():
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        gain = (1.0 - diversity) * relevance - diversity * penalty
        gain[~available] = -np.inf
        best = int(np.argmax(gain))  # the first maximum: the smaller id
        picked.append(best)
        similarity = unit @ unit[best]
        closest = np.maximum(closest, similarity)
        available[best] = False
        available &= similarity < duplicate
    return [ordered_ids[i] for i in picked]
