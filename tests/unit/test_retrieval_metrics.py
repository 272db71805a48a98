from __future__ import annotations

import math

import pytest

from bench.retrieval_metrics import evaluate, ndcg_at_k, recall_at_k

JUDGED = {10: 2, 11: 1, 12: 1, 13: 0}


def test_ndcg_hand_example() -> None:
    ranked = [11, 99, 10, 12, 13]
    dcg = 1 / math.log2(2) + 2 / math.log2(4) + 1 / math.log2(5)  # ranks 1, 3, 4
    ideal = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, JUDGED, 10) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(ranked, JUDGED, 1) == pytest.approx(1 / 2)  # gain 1 where the ideal has 2
    assert ndcg_at_k([10, 11, 12], JUDGED, 10) == pytest.approx(1.0)
    assert ndcg_at_k([], JUDGED, 10) == 0.0


def test_recall_counts_only_relevant_documents() -> None:
    assert recall_at_k([13, 11, 99], JUDGED, 100) == pytest.approx(1 / 3)
    assert recall_at_k([11, 10, 12], JUDGED, 2) == pytest.approx(2 / 3)


def test_evaluate_averages_and_skips_queries_without_relevant_documents() -> None:
    qrels = {"a": JUDGED, "b": {5: 1}, "c": {7: 0}}
    run = {"a": [10, 11, 12], "b": [6]}
    result = evaluate(run, qrels)
    assert result["queries"] == 2
    assert result["ndcg@10"] == pytest.approx(0.5)
    assert result["recall@100"] == pytest.approx(0.5)
    assert evaluate(run, qrels, ["b"])["ndcg@10"] == 0.0
