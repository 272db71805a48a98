from __future__ import annotations

import pytest

from serve_apps.search.fusion import DEFAULT_METHOD, DEFAULT_PARAMS, FusionParams, fuse, normalise

RRF = FusionParams(method="rrf", rrf_k=60)


def test_rrf_hand_example() -> None:
    keyword = ([1, 2, 3], [9.0, 8.0, 7.0])
    vector = ([3, 1, 4], [0.9, 0.8, 0.7])
    ids, scores = fuse([keyword, vector], k=10, params=RRF)
    # 1: 1/61 + 1/62, 3: 1/63 + 1/61, 2: 1/62, 4: 1/63
    assert ids == [1, 3, 2, 4]
    assert scores == pytest.approx([1 / 61 + 1 / 62, 1 / 61 + 1 / 63, 1 / 62, 1 / 63])


def test_rrf_ignores_scores_and_honours_weights() -> None:
    a = ([1, 2], [100.0, -5.0])
    b = ([2, 1], [0.1, 0.0])
    ids, _ = fuse([a, b], k=2, params=FusionParams(method="rrf", rrf_k=0, weights=(1.0, 3.0)))
    assert ids == [2, 1]  # 2: 1/2 + 3/1 beats 1: 1/1 + 3/2


def test_minmax_with_a_document_missing_from_one_run() -> None:
    keyword = ([1, 2, 3], [10.0, 5.0, 0.0])  # -> 1, 0.5, 0
    vector = ([4, 1], [0.9, 0.5])  # -> 1, 0
    ids, scores = fuse([keyword, vector], k=10, params=FusionParams(method="minmax", weights=(0.5, 0.5)))
    # 1: .5 + 0, 4: 0 (missing) + .5, 2: .25 + 0 (missing), 3: 0 + 0 (missing)
    assert ids == [1, 4, 2, 3]  # 1 and 4 tie at 0.5: the smaller id first
    assert scores == pytest.approx([0.5, 0.5, 0.25, 0.0])


def test_zscore_missing_zero_or_run_minimum() -> None:
    keyword = ([1, 2, 3], [3.0, 2.0, 1.0])  # cut at depth 2: z +1, -1
    vector = ([3, 4], [2.0, 1.0])  # z: +1, -1
    _, zero = fuse([keyword, vector], k=10, params=FusionParams(method="zscore", missing="zero", depth=2))
    ids, low = fuse([keyword, vector], k=10, params=FusionParams(method="zscore", missing="min", depth=2))
    assert sorted(zero, reverse=True) == pytest.approx([1.0, 1.0, -1.0, -1.0])
    # With "min" a document absent from a run gets that run's lowest value: 1 gets -1 from vector.
    assert dict(zip(ids, low, strict=True)) == pytest.approx({1: 0.0, 2: -2.0, 3: 0.0, 4: -2.0})


def test_dbsf_maps_into_unit_interval() -> None:
    values = normalise([10.0, 9.0, 1.0, 0.0], "dbsf").tolist()
    assert all(0.0 <= v <= 1.0 for v in values)
    assert values == sorted(values, reverse=True)
    assert normalise([2.0, 2.0], "dbsf").tolist() == [0.5, 0.5]
    assert normalise([2.0, 2.0], "minmax").tolist() == [1.0, 1.0]
    assert normalise([2.0, 2.0], "zscore").tolist() == [0.0, 0.0]


def test_convex_sums_scores_as_given_with_missing_at_the_run_minimum() -> None:
    keyword = ([1, 2], [0.9, 0.2])  # normalised BM25
    vector = ([3, 1, 4], [0.8, 0.5, 0.4])  # cosine; cut at depth 2
    params = FusionParams(method="convex", weights=(0.5, 0.5), missing="min", depth=2)
    ids, scores = fuse([keyword, vector], k=10, params=params)
    # 1: .45 + .25, 3: .1 (keyword min) + .4, 2: .1 + .25 (vector min)
    assert ids == [1, 3, 2]
    assert scores == pytest.approx([0.7, 0.5, 0.35])
    zero = FusionParams(method="convex", weights=(0.5, 0.5), missing="zero", depth=2)
    assert fuse([keyword, vector], k=10, params=zero)[1] == pytest.approx([0.7, 0.4, 0.1])


def test_a_run_shorter_than_depth_holds_every_match_so_the_absent_score_zero_there() -> None:
    # One document has the query's rare word: the keyword run is complete. Were the absent given its
    # minimum (1.0), the keyword evidence would add nothing and a closer vector would win.
    keyword = ([7], [1.0])
    vector = ([8, 7], [0.9, 0.2])
    ids, scores = fuse(
        [keyword, vector], k=10, params=FusionParams(method="convex", weights=(0.5, 0.5), missing="min")
    )
    assert ids == [7, 8] and scores == pytest.approx([0.6, 0.45])


@pytest.mark.parametrize("method", ["rrf", "convex", "minmax", "zscore", "dbsf"])
def test_ties_are_broken_by_id_whatever_the_input_order(method: str) -> None:
    params = FusionParams(method=method)  # type: ignore[arg-type]
    a = ([5, 2], [1.0, 0.0])
    b = ([2, 5], [1.0, 0.0])
    first, _ = fuse([a, b], k=10, params=params)
    second, _ = fuse([b, a], k=10, params=params)
    assert first == second == [2, 5]


def test_k_cuts_and_depth_limits_each_run() -> None:
    run = (list(range(10)), [float(10 - i) for i in range(10)])
    assert fuse([run], k=3, params=RRF)[0] == [0, 1, 2]
    assert fuse([run], k=0, params=RRF) == ([], [])
    shallow = FusionParams(method="rrf", depth=4)
    assert fuse([run, run], k=10, params=shallow)[0] == [0, 1, 2, 3]


def test_repeated_id_in_a_run_keeps_its_best_place() -> None:
    ids, scores = fuse([([7, 7, 8], [3.0, 2.0, 1.0])], k=5, params=RRF)
    assert ids == [7, 8]
    assert scores == pytest.approx([1 / 61, 1 / 62])


def test_empty_runs() -> None:
    assert fuse([([], []), ([], [])], k=5) == ([], [])
    assert fuse([([], []), ([3], [0.2])], k=5, params=RRF)[0] == [3]
    assert fuse([], k=5, params=FusionParams(method="minmax")) == ([], [])


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fusion method"):
        FusionParams(method="borda")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one weight per run"):
        fuse([([1], [1.0])], k=1, params=FusionParams(weights=(1.0, 1.0)))
    with pytest.raises(ValueError, match="ids but"):
        fuse([([1, 2], [1.0])], k=1, params=RRF)


def test_default_is_a_known_method() -> None:
    assert DEFAULT_PARAMS.method == DEFAULT_METHOD
    assert DEFAULT_PARAMS.weights is None or len(DEFAULT_PARAMS.weights) == 2
