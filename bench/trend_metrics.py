"""Clustering scores of the trend benchmarks: a predicted partition against reference labels.

Predicted labels are integers, ``-1`` (any negative) meaning noise: a document left out of every cluster.
Reference labels are any hashable values. Scores, all from the contingency table of the two:

- ``nmi``, ``ari``: scikit-learn's ``normalized_mutual_info_score`` (arithmetic mean) and
  ``adjusted_rand_score`` with noise counted as **one label of its own** (all noise documents together),
  as the issue's anchors were measured (BERTopic NMI 0.524 on BBC...). A method that leaves much as noise
  is penalised by it.
- ``precision``, ``recall``, ``f1`` (pairwise): over pairs of documents, a pair is predicted together
  when both are in the same cluster (noise documents are **singletons**: a noise document is claimed to be
  with no one), and truly together when both have the same reference label. precision = pairs together in
  both / pairs predicted together; recall = pairs together in both / pairs truly together. Counting noise
  as one cluster here would make every pair of noise documents a predicted pair.
- ``noise``: the share of documents left as noise; ``clusters``: the number of non-noise clusters.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Scores:
    nmi: float
    ari: float
    precision: float
    recall: float
    f1: float
    noise: float
    clusters: int
    documents: int

    def rounded(self, digits: int = 3) -> dict[str, Any]:
        return {k: round(v, digits) if isinstance(v, float) else v for k, v in asdict(self).items()}


def codes(values: Sequence[Hashable] | np.ndarray) -> np.ndarray:
    """Each value's index among the distinct values (0..m-1)."""
    _, inverse = np.unique(np.asarray(values), return_inverse=True)
    return np.asarray(inverse, np.int64).ravel()


def pairs(counts: np.ndarray) -> float:
    """Unordered pairs within groups of the given sizes: sum of n (n - 1) / 2."""
    c = np.asarray(counts, np.float64)
    return float((c * (c - 1) / 2).sum())


def contingency(truth: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-empty cells of the contingency table of two code arrays: (truth code, predicted code,
    documents) per cell."""
    width = int(predicted.max(initial=-1)) + 1
    cells, counts = np.unique(truth * width + predicted, return_counts=True)
    return cells // max(width, 1), cells % max(width, 1), counts


def pairwise(truth: Sequence[Hashable] | np.ndarray, predicted: np.ndarray) -> tuple[float, float, float]:
    """(precision, recall, F1) over document pairs, noise documents as singletons (module docstring)."""
    truth_codes = codes(truth)
    predicted = np.asarray(predicted, np.int64)
    if len(truth_codes) != len(predicted):
        raise ValueError(f"{len(truth_codes)} reference labels but {len(predicted)} predicted ones")
    clustered = predicted >= 0
    true_pairs = pairs(np.bincount(truth_codes))
    _, _, cells = contingency(truth_codes[clustered], codes(predicted[clustered]))
    together = pairs(cells)
    predicted_pairs = pairs(np.unique(predicted[clustered], return_counts=True)[1])
    precision = together / predicted_pairs if predicted_pairs else 0.0
    recall = together / true_pairs if true_pairs else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def score(truth: Sequence[Hashable] | np.ndarray, predicted: Sequence[int] | np.ndarray) -> Scores:
    """Every score of the module docstring for one predicted partition."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    labels = np.asarray(predicted, np.int64)
    truth_codes = codes(truth)
    if len(truth_codes) != len(labels):
        raise ValueError(f"{len(truth_codes)} reference labels but {len(labels)} predicted ones")
    with_noise = np.where(labels < 0, -1, labels)  # every noise document in one label
    precision, recall, f1 = pairwise(truth_codes, labels)
    return Scores(
        nmi=float(normalized_mutual_info_score(truth_codes, with_noise)),
        ari=float(adjusted_rand_score(truth_codes, with_noise)),
        precision=precision,
        recall=recall,
        f1=f1,
        noise=float((labels < 0).mean()) if len(labels) else 0.0,
        clusters=len(np.unique(labels[labels >= 0])),
        documents=len(labels),
    )


def ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    """a / b rounded, or None when either is missing or b is 0."""
    if a is None or not b:
        return None
    return round(a / b, digits)
