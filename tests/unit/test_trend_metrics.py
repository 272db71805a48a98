from __future__ import annotations

import numpy as np
import pytest

from bench.trend_metrics import pairwise, ratio, score

TRUTH = ["a", "a", "a", "b", "b", "c"]


def test_pairwise_by_hand() -> None:
    # clusters {0,1} {2,3,4}; document 5 noise. True pairs: aa 3, bb 1 -> 4.
    # predicted pairs: 1 + 3 = 4; together in both: (0,1) and (3,4) -> 2.
    precision, recall, f1 = pairwise(TRUTH, np.array([0, 0, 1, 1, 1, -1]))
    assert precision == pytest.approx(2 / 4)
    assert recall == pytest.approx(2 / 4)
    assert f1 == pytest.approx(0.5)


def test_noise_documents_are_singletons_in_pairs() -> None:
    # All noise: no predicted pair, so precision 0 and recall 0 (not one big cluster).
    assert pairwise(TRUTH, np.full(6, -1)) == (0.0, 0.0, 0.0)
    # The reference itself: every pair right.
    assert pairwise(TRUTH, np.array([0, 0, 0, 1, 1, 2])) == pytest.approx((1.0, 1.0, 1.0))
    # Splitting a class costs recall, never precision.
    p, r, _ = pairwise(TRUTH, np.array([0, 0, 3, 1, 1, 2]))
    assert (p, r) == pytest.approx((1.0, 2 / 4))


def test_score_counts_noise_as_one_label_for_nmi_and_ari() -> None:
    perfect = score(TRUTH, [7, 7, 7, 4, 4, 9])
    assert (perfect.nmi, perfect.ari, perfect.f1) == pytest.approx((1.0, 1.0, 1.0))
    assert perfect.noise == 0.0 and perfect.clusters == 3 and perfect.documents == 6
    # Class c left as noise: noise is a label of its own, so the partition is still the reference.
    one_noise = score(TRUTH, [7, 7, 7, 4, 4, -1])
    assert one_noise.nmi == pytest.approx(1.0)
    assert one_noise.noise == pytest.approx(1 / 6) and one_noise.clusters == 2
    # Noise documents from two classes share one label: no longer perfect.
    mixed = score(TRUTH, [7, 7, -1, 4, -1, -1])
    assert mixed.nmi < 1.0 and mixed.ari < 1.0
    assert mixed.noise == pytest.approx(0.5)


def test_lengths_must_agree() -> None:
    with pytest.raises(ValueError, match="reference labels"):
        score(TRUTH, [0, 1])


def test_ratio() -> None:
    assert ratio(1.5, 0.5) == 3.0
    assert ratio(None, 1.0) is None and ratio(1.0, 0.0) is None
