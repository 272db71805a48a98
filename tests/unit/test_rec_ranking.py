"""Ranking recommendations on constructed pools (no Ray, no database): each blend signal alone and how it is
scaled, MMR against plain sorting and on near-duplicates, exclusions and the reason given for each pick, the
example strategies on unit vectors whose cosines are known exactly, and the pool's own checks.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from actors.rec_ranking import (
    BlendParams,
    Candidates,
    Reason,
    blend,
    example_scores,
    example_vector,
    mmr,
    rank,
    signals,
)

NOW = 1_700_000_000.0
#: The weights these tests were worked out with (explicit: the defaults follow the benchmark).
WEIGHTS = BlendParams(
    content=1.0,
    collaborative=1.0,
    popularity=0.3,
    trending=0.3,
    freshness=0.3,
    freshness_half_life_s=2 * 86_400.0,
)
HALF = WEIGHTS.freshness_half_life_s
E = np.eye(4, dtype=np.float32)
NAN = math.nan
SILENT = dataclasses.replace(
    WEIGHTS, content=0.0, collaborative=0.0, popularity=0.0, trending=0.0, freshness=0.0
)


def only(signal: str, weight: float = 1.0) -> BlendParams:
    """Every weight 0 but ``signal``'s."""
    return dataclasses.replace(SILENT, **{signal: weight})


def pool(**columns: object) -> Candidates:
    """Four candidates, ids 10..13, on the four axes."""
    return Candidates.build(np.arange(10, 14), E, **columns)


def unit(*rows: list[float]) -> np.ndarray:
    a = np.asarray(rows, np.float32)
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


# ------------------------------------------------------------------------------------------------- blend
def test_content_alone_is_the_cosine_clipped_at_zero_and_unknown_counts_zero() -> None:
    c = pool(content=np.array([0.9, 0.2, NAN, -0.3]))
    np.testing.assert_allclose(blend(c, only("content"), now=NOW), [0.9, 0.2, 0.0, 0.0])
    np.testing.assert_allclose(blend(c, only("content", 2.0), now=NOW), [1.8, 0.4, 0.0, 0.0])


@pytest.mark.parametrize("signal", ["collaborative", "popularity", "trending"])
def test_collaborative_popularity_and_trending_are_scaled_by_the_pools_largest(signal: str) -> None:
    c = pool(**{signal: np.array([2.0, 4.0, 0.0, 1.0])})
    got = blend(c, only(signal), now=NOW)
    np.testing.assert_allclose(got, [0.5, 1.0, 0.0, 0.25])
    assert list(np.argsort(-got, kind="stable")) == [1, 0, 3, 2]
    # the scale is the pool's: ten times the raw values blend the same
    np.testing.assert_allclose(
        blend(pool(**{signal: np.array([20.0, 40.0, 0.0, 10.0])}), only(signal), now=NOW), got
    )
    np.testing.assert_allclose(blend(c, only(signal, 0.3), now=NOW), 0.3 * got)
    # nothing to scale by: zeros, not a division by zero
    np.testing.assert_array_equal(blend(pool(**{signal: np.zeros(4)}), only(signal), now=NOW), np.zeros(4))


def test_freshness_halves_per_half_life_and_an_unknown_date_counts_zero() -> None:
    c = pool(published=np.array([NOW, NOW - HALF, NOW - 2 * HALF, NAN]))
    np.testing.assert_allclose(blend(c, only("freshness"), now=NOW), [1.0, 0.5, 0.25, 0.0])
    future = pool(published=np.array([NOW + HALF, NAN, NAN, NAN]))
    np.testing.assert_allclose(blend(future, only("freshness"), now=NOW), [1.0, 0.0, 0.0, 0.0])
    short = dataclasses.replace(only("freshness"), freshness_half_life_s=HALF / 2)
    np.testing.assert_allclose(blend(c, short, now=NOW), [1.0, 0.25, 0.0625, 0.0])


def test_the_blend_is_the_sum_of_the_weighted_signals() -> None:
    c = pool(
        content=np.array([0.5, NAN, 0.1, 0.0]),
        collaborative=np.array([1.0, 2.0, 0.0, 0.0]),
        popularity=np.array([0.0, 0.0, 3.0, 1.0]),
        trending=np.array([0.0, 0.0, 0.0, 5.0]),
        published=np.array([NOW - HALF, NAN, NAN, NOW]),
    )
    p = WEIGHTS
    parts = signals(c, p, now=NOW)
    np.testing.assert_allclose(blend(c, p, now=NOW), sum(parts.values()))
    np.testing.assert_allclose(
        blend(c, p, now=NOW), [0.5 + 0.5 + 0.3 * 0.5, 1.0, 0.1 + 0.3, 0.3 * (1 / 3) + 0.3 + 0.3]
    )


# --------------------------------------------------------------------------------------------------- mmr
def test_mmr_without_diversity_is_a_sort_by_relevance() -> None:
    rng = np.random.default_rng(0)
    vectors = unit(*rng.standard_normal((50, 8)).tolist())
    relevance = rng.random(50)
    for k in (1, 7, 50):
        np.testing.assert_array_equal(mmr(vectors, relevance, k, 0.0), np.argsort(-relevance)[:k])


def test_mmr_takes_the_different_document_second_among_near_duplicates() -> None:
    vectors = unit([1, 0.01, 0, 0], [1, 0, 0.01, 0], [1, 0.01, 0.01, 0], [0, 0, 0, 1])
    relevance = np.array([1.0, 0.99, 0.98, 0.97])
    np.testing.assert_array_equal(mmr(vectors, relevance, 4, 0.0), [0, 1, 2, 3])
    got = mmr(vectors, relevance, 4, 0.5)
    assert list(got[:2]) == [0, 3]
    assert sorted(got.tolist()) == [0, 1, 2, 3]


def test_mmr_returns_the_whole_pool_when_k_is_larger_and_nothing_for_k_0() -> None:
    vectors = unit([1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0])
    relevance = np.array([0.2, 0.9, 0.5])
    for diversity in (0.0, 0.3, 0.9):
        got = mmr(vectors, relevance, 10, diversity)
        assert got.dtype == np.int64 and sorted(got.tolist()) == [0, 1, 2]
        assert got[0] == 1  # the most relevant first, whatever the diversity (nothing picked yet)
        assert len(mmr(vectors, relevance, 0, diversity)) == 0
    assert len(mmr(np.zeros((0, 4), np.float32), np.zeros(0), 5, 0.5)) == 0
    # equal relevance: all 1 after scaling, so without diversity the pool order is kept
    np.testing.assert_array_equal(mmr(vectors, np.full(3, 0.4), 3, 0.0), [0, 1, 2])


# -------------------------------------------------------------------------------------------------- rank
def reasons_pool(*, examples: bool = False) -> Candidates:
    ids = np.arange(100, 108)
    return Candidates.build(
        ids,
        np.eye(8, dtype=np.float32),
        content=np.array([0.9, NAN, NAN, NAN, NAN, NAN, 0.5, 0.25]),
        similar_to=np.array([7, -1, -1, -1, -1, -1, 9, 11]),
        collaborative=np.array([0, 1.0, 0, 0, 0, 0, 0.6, 0]),
        co_read_with=np.array([-1, 8, -1, -1, -1, -1, 6, -1]),
        trending=np.array([0, 0, 2.0, 0, 0, 0, 0, 0]),
        story=np.array([-1, -1, 42, -1, -1, -1, -1, -1]),
        popularity=np.array([0, 0, 0, 5.0, 0, 0, 0, 1.0]),
        published=np.array([NAN, NAN, NAN, NAN, NOW, NAN, NAN, NAN]),
        examples=examples,
    )


def test_each_picks_reason_is_its_largest_weighted_signal() -> None:
    ranking = rank(reasons_pool(), WEIGHTS, 10, now=NOW)
    reasons = {p.document_id: p.reason for p in ranking.picks}
    assert reasons == {
        100: Reason("similar", document_id=7),  # content 0.9
        101: Reason("co_read", document_id=8),  # co-read 1.0
        102: Reason("trending", story_id=42),  # trending 0.3
        103: Reason("popular"),  # popularity 0.3
        104: Reason("fresh"),  # freshness 0.3
        105: Reason("similar"),  # no signal at all: similar, to nothing known
        106: Reason("co_read", document_id=6),  # co-read 0.6 beats content 0.5
        107: Reason("similar", document_id=11),  # content 0.25 beats popularity 0.3 * 0.2 = 0.06
    }
    scores = {p.document_id: p.score for p in ranking.picks}
    assert scores == pytest.approx(
        {100: 0.9, 101: 1.0, 102: 0.3, 103: 0.3, 104: 0.3, 105: 0.0, 106: 1.1, 107: 0.31}
    )
    assert [p.document_id for p in ranking.picks[:3]] == [106, 101, 100]
    np.testing.assert_allclose(ranking.scores, blend(reasons_pool(), WEIGHTS, now=NOW))


def test_content_from_examples_gives_the_examples_reason() -> None:
    reasons = {p.document_id: p.reason for p in rank(reasons_pool(examples=True), WEIGHTS, 10, now=NOW).picks}
    assert reasons[100] == reasons[105] == reasons[107] == Reason("examples")
    assert reasons[101] == Reason("co_read", document_id=8)


def test_rank_never_picks_an_excluded_document() -> None:
    c = reasons_pool()
    got = rank(c, WEIGHTS, 3, now=NOW, exclude=frozenset({106, 100, 999}))
    assert [p.document_id for p in got.picks] == [101, 107, 102]
    assert len(got.scores) == len(c)  # scores are still the whole pool's
    assert rank(c, WEIGHTS, 3, now=NOW, exclude=frozenset(range(100, 108))).picks == []
    diverse = rank(c, dataclasses.replace(WEIGHTS, diversity=0.7), 8, now=NOW, exclude=frozenset({101}))
    assert sorted(p.document_id for p in diverse.picks) == [100, 102, 103, 104, 105, 106, 107]


# -------------------------------------------------------------------------------------------- examples
CANDIDATES = unit(
    [1, 0, 0, 0],  # 0: the positive
    [0, 1, 0, 0],  # 1: the negative
    [1, 1, 0, 0],  # 2: between them
    [0, 0, 1, 0],  # 3: unrelated
    [0.6, 0, 0.8, 0],  # 4: near the positive
    [-1, -1, 0, 0],  # 5: opposite to both
)
POS, NEG = E[:1], E[1:2]
R = 1 / math.sqrt(2)


def test_average_vector_is_cosine_to_twice_the_positive_mean_minus_the_negative_mean() -> None:
    alone = example_scores(CANDIDATES, POS, np.zeros((0, 4)), "average_vector")
    np.testing.assert_allclose(alone, [1, 0, R, 0, 0.6, -R], atol=1e-6)
    with_negative = example_scores(CANDIDATES, POS, NEG, "average_vector")
    target = np.array([2, -1, 0, 0]) / math.sqrt(5)
    np.testing.assert_allclose(with_negative, CANDIDATES @ target, atol=1e-6)
    assert with_negative[1] < alone[1] and with_negative[2] < alone[2]  # closer to the negative: lower
    two = example_scores(CANDIDATES, E[:2], np.zeros((0, 4)), "average_vector")
    np.testing.assert_allclose(two[:3], [R, R, 1.0], atol=1e-6)


def test_example_vector_without_positives_points_away_from_the_negatives() -> None:
    np.testing.assert_allclose(example_vector(np.zeros((0, 4)), NEG), -E[1], atol=1e-7)
    assert example_vector(np.zeros((0, 4)), np.zeros((0, 4))) is None
    assert example_vector(E[:1], E[:1] / 2) is not None
    assert example_vector(E[:1], 2 * E[:1]) is None  # 2 e0 - 2 e0: no direction
    np.testing.assert_array_equal(
        example_scores(CANDIDATES, np.zeros((0, 4)), np.zeros((0, 4)), "average_vector"), 0
    )


def test_best_score_sinks_what_resembles_a_negative_below_everything() -> None:
    got = example_scores(CANDIDATES, POS, NEG, "best_score")
    np.testing.assert_allclose(got, [1, -1, -R, 0, 0.6, -R], atol=1e-6)
    assert int(np.argmin(got)) == 1  # the negative example itself scores lowest
    assert got[5] < got[4]  # opposite to every example is no better than near a positive
    assert got.dtype == np.float64
    no_negatives = example_scores(CANDIDATES, POS, np.zeros((0, 4)), "best_score")
    np.testing.assert_allclose(no_negatives, [1, 0, R, 0, 0.6, -R], atol=1e-6)
    no_positives = example_scores(CANDIDATES, np.zeros((0, 4)), NEG, "best_score")
    np.testing.assert_allclose(no_positives, [-0.0, -1, -R, -0.0, -0.0, -R], atol=1e-6)
    assert (no_positives <= 0).all()


def test_a_second_negative_lowers_the_candidates_near_it() -> None:
    one = example_scores(CANDIDATES, POS, NEG, "best_score")
    two = example_scores(CANDIDATES, POS, np.concatenate([NEG, E[2:3]]), "best_score")
    assert two[3] < one[3] and two[4] < one[4]
    assert two[0] == one[0] == pytest.approx(1.0)


def test_an_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown strategy 'sum_scores'"):
        example_scores(CANDIDATES, POS, NEG, "sum_scores")


# ----------------------------------------------------------------------------------------------- the pool
def test_candidates_refuse_duplicate_ids_and_wrong_shapes() -> None:
    with pytest.raises(ValueError, match="distinct"):
        Candidates.build(np.array([1, 2, 1]), np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match=r"vectors have shape \(2, 3\)"):
        Candidates.build(np.array([1, 2, 3]), np.eye(3, dtype=np.float32)[:2])
    with pytest.raises(ValueError, match="vectors have shape"):
        Candidates.build(np.array([1, 2, 3]), np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"shape \(2,\); expected \(3,\)"):
        Candidates.build(np.array([1, 2, 3]), np.eye(3, dtype=np.float32), popularity=np.ones(2))


def test_candidates_default_to_no_signal() -> None:
    c = Candidates.build(np.array([5, 6]), np.eye(2, dtype=np.float32))
    assert len(c) == 2 and c.ids.dtype == np.int64 and c.vectors.dtype == np.float32
    assert np.isnan(c.content).all() and np.isnan(c.published).all()
    for column in (c.similar_to, c.co_read_with, c.story):
        np.testing.assert_array_equal(column, [-1, -1])
    np.testing.assert_array_equal(blend(c, WEIGHTS, now=NOW), [0.0, 0.0])
