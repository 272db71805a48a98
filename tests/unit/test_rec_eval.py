from __future__ import annotations

import math

import numpy as np
import pytest

from bench.rec_eval import (
    coverage,
    evaluate,
    hit_rate_at_k,
    intra_list_diversity,
    ndcg_at_k_single,
)
from bench.rec_sim import Event, split_last_positive


def test_hit_rate_counts_the_target_only_within_k() -> None:
    assert hit_rate_at_k([5, 3, 9], 3, 10) == 1.0
    assert hit_rate_at_k([5, 3, 9], 3, 1) == 0.0
    assert hit_rate_at_k([], 3, 10) == 0.0


def test_ndcg_single_is_the_discount_at_the_targets_rank() -> None:
    assert ndcg_at_k_single([3, 5, 9], 3, 10) == pytest.approx(1.0)  # rank 1
    assert ndcg_at_k_single([5, 9, 3], 3, 10) == pytest.approx(1 / math.log2(4))  # rank 3: 0.5
    assert ndcg_at_k_single([5, 9, 3], 3, 2) == 0.0  # rank 3 is outside k = 2
    assert ndcg_at_k_single([5, 9], 3, 10) == 0.0


def test_coverage_is_distinct_documents_over_the_catalogue() -> None:
    assert coverage([[1, 2, 3], [3, 4], []], 10) == pytest.approx(0.4)
    assert coverage([], 10) == 0.0
    with pytest.raises(ValueError):
        coverage([[1]], 0)


def test_intra_list_diversity_by_hand() -> None:
    # 0 and 1 orthogonal, 2 = 0 (same direction, not unit length), 3 opposite to 0.
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [-1.0, 0.0]])
    # [0, 1, 2]: pairs (0,1) 1 - 0, (0,2) 1 - 1, (1,2) 1 - 0 -> 2/3. [0, 3]: 1 - (-1) = 2.
    assert intra_list_diversity([[0, 1, 2], [0, 3]], vectors) == pytest.approx((2 / 3 + 2) / 2)
    # A list of one item has no pair: skipped.
    assert intra_list_diversity([[0, 1], [2]], vectors) == pytest.approx(1.0)
    assert intra_list_diversity([[1]], vectors) == 0.0


def _log() -> list[Event]:
    rows = [
        ("a", 1, "click", 10.0),
        ("a", 1, "dwell", 40.0),
        ("a", 7, "impression", 50.0),
        ("a", 2, "click", 100.0),
        ("b", 1, "click", 110.0),
        ("a", 3, "impression", 150.0),  # an earlier impression of the document held out below
        ("a", 8, "dislike", 160.0),
        ("a", 3, "click", 200.0),  # a's last click: held out
        ("a", 3, "dwell", 230.0),
        ("a", 3, "like", 231.0),
        ("b", 2, "click", 240.0),  # b has 2 clicks only: training
        ("a", 9, "impression", 250.0),  # after a's last click: held out
    ]
    return [Event(f"e{i}", u, d, t, ts, None) for i, (u, d, t, ts) in enumerate(rows)]


def test_split_holds_out_the_last_click_and_what_follows_it() -> None:
    events = _log()
    train, held_out = split_last_positive(events)
    assert held_out == {"a": (3, 200.0)}
    assert [e.event_id for e in train] == ["e0", "e1", "e2", "e3", "e4", "e6", "e10"]
    # Three clicks are needed; a user with fewer is kept whole in training.
    assert split_last_positive(events[:5])[1] == {}


class _Spy:
    """Recommends fixed documents and records what ``evaluate`` asked."""

    name = "spy"

    def __init__(self, ranked: list[int]) -> None:
        self.ranked = ranked
        self.calls: list[tuple[str, float, int, set[int]]] = []
        self.fitted = 0

    def fit(self, train_events, *, vectors, doc_times) -> None:  # type: ignore[no-untyped-def]
        self.fitted = len(train_events)

    def recommend(self, user: str, *, now: float, k: int, exclude: set[int]) -> list[int]:
        self.calls.append((user, now, k, exclude))
        return [d for d in self.ranked if d not in exclude][:k]


def test_evaluate_asks_just_before_the_held_out_click_excluding_training_interactions() -> None:
    train, held_out = split_last_positive(_log())
    vectors = np.eye(10)
    spy = _Spy([1, 7, 3, 5])
    result = evaluate(spy, train, held_out, k=3, vectors=vectors, doc_times=np.zeros(10))
    assert spy.fitted == len(train)
    # Impressions (7) do not exclude; clicks, dwells and dislikes (1, 2, 8) do.
    assert spy.calls == [("a", 199.0, 3, {1, 2, 8})]
    assert result["hit_rate"] == 1.0
    assert result["ndcg"] == pytest.approx(1 / math.log2(3))  # [7, 3, 5]: rank 2
    assert result["coverage"] == pytest.approx(0.3)
    assert result["diversity"] == pytest.approx(1.0)
    assert result["users"] == 1


def test_evaluate_refuses_an_excluded_document() -> None:
    train, held_out = split_last_positive(_log())

    class Cheat(_Spy):
        def recommend(self, user: str, *, now: float, k: int, exclude: set[int]) -> list[int]:
            return [1, 3]

    with pytest.raises(ValueError, match="excluded"):
        evaluate(Cheat([]), train, held_out, k=3, vectors=np.eye(10), doc_times=np.zeros(10))
