"""Representatives on constructed unit vectors: the geometry (centroid, duplicates, spread) is known
exactly, which is what MMR is tested on; the vectors stand in for no model."""

from __future__ import annotations

import numpy as np
import pytest

from actors.trend_representatives import representatives


def unit(rows: list[list[float]]) -> np.ndarray:
    matrix = np.asarray(rows, dtype=np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


# A story about one event told from two angles: four documents near "a" (x axis), two near "b" (y axis),
# one of the "a" documents copied twice (a wire story) and one outlier.
VECTORS = unit(
    [
        [1.0, 0.30, 0.00],  # 10: a
        [1.0, 0.30, 0.00],  # 11: copy of 10
        [1.0, 0.31, 0.01],  # 12: near copy of 10 (cos > 0.99)
        [1.0, -0.20, 0.30],  # 13: a, another wording (cos 0.85 with 10)
        [0.2, 1.00, 0.00],  # 14: b
        [0.2, 0.80, 0.60],  # 15: b, another wording (cos 0.81 with 14)
        [0.0, 0.10, 1.00],  # 16: outlier
    ]
)
IDS = [10, 11, 12, 13, 14, 15, 16]


def test_the_first_pick_is_closest_to_the_centroid() -> None:
    centroid = VECTORS.mean(axis=0)
    closest = IDS[int(np.argmax(VECTORS @ centroid))]
    assert representatives(VECTORS, IDS, k=1) == [closest]


def test_a_duplicate_is_never_picked_twice() -> None:
    picked = representatives(VECTORS, IDS, k=7, diversity=0.0)
    assert len({10, 11, 12} & set(picked)) == 1  # copies and the near copy: one of them
    assert len(picked) == 5  # 7 documents, 2 of them duplicates of a picked one
    assert sorted(picked) == sorted(set(picked))


def test_diversity_reaches_the_other_angle_before_a_second_document_of_the_first() -> None:
    by_relevance = representatives(VECTORS, IDS, k=2, diversity=0.0)
    diverse = representatives(VECTORS, IDS, k=2)  # diversity 0.3
    assert by_relevance[0] == diverse[0] in {10, 11, 12}
    # Without diversity the second pick is the first's neighbour on the same angle; with it, the other angle.
    assert by_relevance[1] == 13
    assert diverse[1] in {14, 15}


def test_the_result_does_not_depend_on_input_order_and_ties_go_to_the_smaller_id() -> None:
    expected = representatives(VECTORS, IDS, k=4)
    rng = np.random.default_rng(0)
    for _ in range(5):
        order = rng.permutation(len(IDS))
        assert representatives(VECTORS[order], [IDS[i] for i in order], k=4) == expected
    # 10 and 11 are the same vector (and first to be picked of the three copies): the smaller id wins.
    copies = [VECTORS[0], VECTORS[1], VECTORS[3]]
    assert representatives(np.stack(copies), [11, 10, 13], k=3, diversity=0.0)[:2] == [10, 13]


def test_vectors_are_renormalised_and_zero_vectors_tolerated() -> None:
    scaled = VECTORS * np.array([[3.0], [1.0], [2.0], [0.5], [4.0], [1.0], [7.0]], dtype=np.float32)
    assert representatives(scaled, IDS, k=3) == representatives(VECTORS, IDS, k=3)
    with_zero = np.vstack([VECTORS, np.zeros((1, 3), dtype=np.float32)])
    assert 99 not in representatives(with_zero, [*IDS, 99], k=3)


def test_small_and_bad_inputs() -> None:
    assert representatives(np.zeros((0, 3)), [], k=5) == []
    assert representatives(VECTORS[:1], [42], k=5) == [42]
    assert representatives(VECTORS, IDS, k=0) == []
    with pytest.raises(ValueError, match="n x d"):
        representatives(VECTORS, IDS[:3])
    with pytest.raises(ValueError, match="diversity"):
        representatives(VECTORS, IDS, diversity=1.5)
