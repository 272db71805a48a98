"""Experiment statistics (serve_apps/recommend/experiments.py, pure): hash assignment that is stable, follows
the weights and is independent between experiments; Wilson intervals against hand-computed values; the
difference of two rates and the sign of its interval."""

from __future__ import annotations

import hashlib
import math

import pytest

from serve_apps.recommend.experiments import Rate, assign_variant, difference, wilson

HALVES = [("control", 1.0), ("treatment", 1.0)]
SUBJECTS = [f"user:{i}" for i in range(10_000)]


def test_the_same_subject_always_gets_the_same_variant() -> None:
    first = [assign_variant("exp-a", s, HALVES) for s in SUBJECTS[:500]]
    again = [assign_variant("exp-a", s, HALVES) for s in SUBJECTS[:500]]
    assert first == again
    assert set(first) == {"control", "treatment"}
    # the weights are normalised: doubling both changes nothing
    assert first == [
        assign_variant("exp-a", s, [("control", 2.0), ("treatment", 2.0)]) for s in SUBJECTS[:500]
    ]


def test_the_hash_is_sha256_of_experiment_nul_subject_read_from_its_first_8_bytes() -> None:
    """The documented recipe, recomputed: a third party (a notebook, a SQL report) can reproduce it."""
    for subject in SUBJECTS[:200]:
        digest = hashlib.sha256(f"exp-a\x00{subject}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        want = "control" if u < 0.25 else "treatment"
        if abs(u - 0.25) > 1e-12:  # far from the boundary, where the 53-bit rounding cannot matter
            assert assign_variant("exp-a", subject, [("control", 1.0), ("treatment", 3.0)]) == want


def test_two_halves_split_evenly_and_independently_of_another_experiment() -> None:
    a = [assign_variant("exp-a", s, HALVES) for s in SUBJECTS]
    b = [assign_variant("exp-b", s, HALVES) for s in SUBJECTS]
    assert 0.47 <= a.count("control") / len(a) <= 0.53
    assert 0.47 <= b.count("control") / len(b) <= 0.53
    agreement = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
    assert 0.47 <= agreement <= 0.53  # a subject's variant in A says nothing of B's


def test_weights_of_9_to_1_give_about_90_to_10() -> None:
    got = [assign_variant("exp-a", s, [("big", 0.9), ("small", 0.1)]) for s in SUBJECTS]
    assert 0.88 <= got.count("big") / len(got) <= 0.92
    three = [assign_variant("exp-c", s, [("a", 1.0), ("b", 2.0), ("c", 1.0)]) for s in SUBJECTS]
    assert 0.23 <= three.count("a") / len(three) <= 0.27
    assert 0.47 <= three.count("b") / len(three) <= 0.53


def test_one_variant_takes_everyone() -> None:
    assert {assign_variant("exp-a", s, [("only", 0.3)]) for s in SUBJECTS[:100]} == {"only"}


@pytest.mark.parametrize("weight", [0.0, -1.0, math.nan, math.inf])
def test_weights_must_be_positive_and_the_error_names_the_variant(weight: float) -> None:
    with pytest.raises(ValueError, match="'broken'"):
        assign_variant("exp-a", "user:1", [("fine", 1.0), ("broken", weight)])


def test_no_variants_or_a_repeated_name_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        assign_variant("exp-a", "user:1", [])
    with pytest.raises(ValueError, match="'a' appears twice"):
        assign_variant("exp-a", "user:1", [("a", 1.0), ("a", 1.0)])


def test_wilson_against_hand_computed_intervals() -> None:
    r = wilson(10, 100)
    assert (r.successes, r.trials, r.rate) == (10, 100, 0.1)
    assert (round(r.low, 4), round(r.high, 4)) == (0.0552, 0.1744)
    zero = wilson(0, 10)
    assert zero.rate == 0.0 and zero.low == 0.0
    assert zero.high == pytest.approx(0.2775, abs=5e-5)  # z^2 / (n + z^2)
    every = wilson(10, 10)
    assert every.high == 1.0 and every.low == pytest.approx(1 - 0.2775, abs=5e-5)
    half = wilson(50, 100)  # symmetric about 0.5
    assert half.low == pytest.approx(1 - half.high)
    assert round(half.low, 4) == 0.4038


def test_wilson_without_trials_has_no_rate_and_bad_counts_are_refused() -> None:
    assert wilson(0, 0) == Rate(0, 0, None, None, None)
    for successes, trials in ((11, 10), (-1, 10), (0, -1)):
        with pytest.raises(ValueError, match="successes"):
            wilson(successes, trials)


def test_a_wider_z_widens_the_interval() -> None:
    narrow, wide = wilson(30, 200, z=1.0), wilson(30, 200)
    assert wide.low < narrow.low < 0.15 < narrow.high < wide.high


def test_difference_is_b_minus_a_with_the_normal_interval() -> None:
    a, b = wilson(100, 1_000), wilson(150, 1_000)
    got = difference(a, b)
    assert got is not None
    diff, low, high = got
    se = math.sqrt(0.1 * 0.9 / 1_000 + 0.15 * 0.85 / 1_000)
    assert diff == pytest.approx(0.05)
    assert (low, high) == pytest.approx((0.05 - 1.959963984540054 * se, 0.05 + 1.959963984540054 * se))
    assert 0 < low < diff < high  # b is better, and clearly so
    back = difference(b, a)
    assert back is not None
    assert (
        back[0] == pytest.approx(-diff) and back[2] == pytest.approx(-low) and back[1] == pytest.approx(-high)
    )
    small = difference(wilson(1, 10), wilson(2, 10))
    assert small is not None and small[1] < 0 < small[2]  # too few trials to tell


def test_difference_without_trials_is_none() -> None:
    assert difference(wilson(0, 0), wilson(3, 10)) is None
    assert difference(wilson(3, 10), wilson(0, 0)) is None
