from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from actors.trend_lifecycle import Lifecycle, LifecycleParams, burst_flags, lifecycle, lifecycle_of_many

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
START = datetime(2018, 3, 1, tzinfo=UTC)


def daily(counts: Sequence[int], start: datetime = START) -> list[tuple[datetime, int]]:
    return [(start + i * DAY, count) for i, count in enumerate(counts)]


def at_end_of_last_day(counts: Sequence[int]) -> datetime:
    """The clock a minute before the last bucket ends: that bucket is (almost) complete."""
    return START + len(counts) * DAY - timedelta(minutes=1)


def of(counts: Sequence[int], **params: object) -> Lifecycle:
    return lifecycle(daily(counts), now=at_end_of_last_day(counts), params=LifecycleParams(**params))  # type: ignore[arg-type]


def test_a_young_rising_story_is_emerging() -> None:
    result = of([3, 8])
    assert result.state == "emerging"
    assert result.emerging_at == START
    assert result.volume == 8
    assert result.velocity > 0


def test_a_story_cut_with_a_few_older_documents_is_emerging_when_most_of_it_is_new() -> None:
    counts = [2] + [0] * 10 + [4, 12]  # two stray older mentions, then the event
    result = of(counts)
    assert result.state == "emerging"
    assert result.emerging_at == START + 11 * DAY  # the first of its young days
    mostly_old = of([6, 5, 4] + [0] * 8 + [1, 4])
    assert mostly_old.state != "emerging"
    assert mostly_old.emerging_at == START
    with pytest.raises(ValueError, match="young_share"):
        LifecycleParams(young_share=0)


def test_one_then_three_documents_is_no_burst() -> None:
    result = of([1, 3])
    assert result.burst is False and result.burst_at is None
    assert result.state == "emerging"  # young and rising all the same


def test_steady_growth_is_growing_without_a_burst() -> None:
    counts = [20] * 10 + [20 + 4 * i for i in range(1, 11)]  # +4 a day for ten days
    result = of(counts)
    assert result.state == "growing"
    assert result.burst is False
    assert result.velocity == pytest.approx(4.0, rel=0.1)
    assert result.acceleration == pytest.approx(0.0, abs=0.5)


def test_a_jump_over_the_baseline_is_a_burst() -> None:
    counts = [10, 11, 9, 10, 12, 8, 10, 11, 9, 10] * 2 + [60]
    result = of(counts)
    assert result.burst is True
    assert result.state == "growing"
    assert result.burst_at == at_end_of_last_day(counts)  # the run began at the latest window
    assert result.peak_at == at_end_of_last_day(counts)
    assert result.velocity > 20 and result.acceleration > 20
    steady = of([*counts[:-1], 12])
    assert steady.burst is False
    assert result.score > 3 * steady.score  # the burst ranks first


def test_the_same_growth_from_a_higher_level_is_no_burst() -> None:
    # +50 from 10 is a burst (above); +50 from a noisy 300 is within the story's own variation.
    counts = [300, 340, 260, 310, 290, 330, 270, 300] * 3 + [350]
    assert of(counts).burst is False


def test_a_story_at_its_maximum_on_a_plateau_is_peaking() -> None:
    counts = [2] * 5 + [10, 20, 30, 31, 30, 30, 31]
    result = of(counts)
    assert result.state == "peaking"
    assert abs(result.velocity) < 0.05 * 31
    assert result.peak_at == at_end_of_last_day(counts)  # the latest of the busiest windows


def test_a_burst_that_levels_off_is_peaking() -> None:
    counts = [5] * 10 + [40, 41, 40, 41, 40]
    result = of(counts)
    assert result.state == "peaking"
    assert result.burst is False
    assert result.burst_at == at_end_of_last_day(counts) - 4 * DAY  # the jump
    assert of(counts[:-2]).state == "growing"  # the day after the jump the smoothed rate still climbs


def test_a_story_far_below_its_peak_is_fading() -> None:
    counts = [2] * 10 + [40, 30, 15, 8, 5]
    result = of(counts)
    assert result.state == "fading"
    assert result.velocity < 0
    assert result.burst is False
    assert result.burst_at == at_end_of_last_day(counts) - 4 * DAY  # the past burst on the spike
    assert result.peak_at == result.burst_at
    assert result.volume == 5


def test_a_story_without_documents_for_three_buckets_is_dormant() -> None:
    counts = [5, 10, 5, 0, 0, 0]
    result = of(counts)
    assert result.state == "dormant"
    assert result.volume == 0
    assert of([5, 10, 5, 0, 0]).state != "dormant"  # two empty buckets only
    assert of(counts, dormant_buckets=4).state != "dormant"


def test_the_clock_is_the_partition_clock_not_the_wall_clock() -> None:
    # A historical corpus: the same counts read the same whatever year it is evaluated in.
    counts = [3, 8]
    old = lifecycle(daily(counts, datetime(2011, 1, 1, tzinfo=UTC)), now=datetime(2011, 1, 2, 23, tzinfo=UTC))
    new = lifecycle(daily(counts), now=START + DAY + timedelta(hours=23))
    assert old.state == new.state == "emerging"
    assert old.score == pytest.approx(new.score)
    # Later on the partition's clock, with nothing new in this story, it falls dormant.
    later = lifecycle(daily(counts), now=START + 10 * DAY)
    assert later.state == "dormant"


def test_a_new_day_that_has_just_begun_does_not_make_a_growing_story_fade() -> None:
    counts = [20] * 10 + [20 + 4 * i for i in range(1, 11)] + [3]  # 3 documents in the new day's first hour
    now = START + (len(counts) - 1) * DAY + HOUR
    result = lifecycle(daily(counts), now=now)
    assert result.state == "growing"
    assert result.volume == pytest.approx(3 + 60 * 23 / 24, abs=1)  # the last 24 hours, pro rata


def test_hour_buckets_and_naive_datetimes() -> None:
    start = datetime(2018, 3, 1, 8)
    counts = [1, 0, 2, 1, 1, 0, 1, 2, 1, 1, 0, 1, 25]
    series = [(start + i * HOUR, count) for i, count in enumerate(counts)]
    result = lifecycle(
        series, now=start + 12 * HOUR + timedelta(minutes=59), params=LifecycleParams(bucket=HOUR)
    )
    assert result.burst is True
    assert result.state == "growing"
    assert result.emerging_at == start
    assert result.burst_at == start + 12 * HOUR + timedelta(minutes=59)


def test_counts_in_any_order_with_gaps_and_after_the_clock() -> None:
    counts = [2] * 10 + [40, 30, 15, 8, 5]
    expected = of(counts)
    shuffled = [*reversed(daily(counts)), (START + 30 * DAY, 99)]  # after the clock: not read yet
    sparse = [(day, count) for day, count in shuffled if count]
    assert lifecycle(sparse, now=at_end_of_last_day(counts)) == expected


def test_many_stories_at_one_clock() -> None:
    series = {7: daily([3, 8]), 8: daily([5, 10, 5, 0, 0, 0]), 9: []}
    result = lifecycle_of_many(series, now=at_end_of_last_day([0] * 6))
    assert set(result) == {7, 8, 9}
    assert result[8].state == "dormant" and result[7].state == "dormant"
    assert result[9] == Lifecycle("dormant", 0, 0.0, 0.0, 0.0, False, None, None, None)
    ranked = sorted(result, key=lambda story: -result[story].score)
    assert ranked[0] == 8  # more and more recent documents


def test_bad_parameters_and_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="bucket"):
        LifecycleParams(bucket=timedelta(0))
    with pytest.raises(ValueError, match="window"):
        LifecycleParams(history=10, window=11)
    with pytest.raises(ValueError, match="negative"):
        lifecycle([(START, -1)], now=START)


def test_each_bucket_is_flagged_by_the_story_burst_rule_read_at_its_end() -> None:
    counts = [2, 3, 2, 3, 2, 14, 16, 3, 2, 0, 0, 2]
    series = [(START + i * DAY, c) for i, c in enumerate(counts) if c]  # buckets without documents left out
    flags = burst_flags(series)
    assert len(flags) == len(series)
    flagged = [start for (start, _), flag in zip(series, flags, strict=True) if flag]
    assert flagged == [START + 5 * DAY]  # the jump; the next day is above a baseline the jump already raised
    # The same verdict as the story's own burst flag, with the clock at the end of each bucket.
    for n in range(1, len(counts) + 1):
        upto = [(s, c) for s, c in series if s < START + n * DAY]
        if upto and upto[-1][0] == START + (n - 1) * DAY:
            assert flags[len(upto) - 1] == lifecycle(upto, now=START + n * DAY).burst, n
    assert burst_flags([]) == []
    climb = burst_flags(daily([20] * 10 + [20 + 4 * i for i in range(1, 11)]))
    assert climb[0] and not any(climb[1:])  # 20 a day out of nothing is a burst; the steady climb is none
    hourly = [(START + i * HOUR, c) for i, c in enumerate([1, 1, 9, 1])]
    assert burst_flags(hourly, LifecycleParams(bucket=HOUR)) == [False, False, True, False]
