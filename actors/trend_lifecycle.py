"""Story lifecycle: volume, velocity, acceleration, burst detection, state and trend score, from a story's
document counts per time bucket. Pure numpy (no Ray, no database).

The trend clusterer keeps each story's counts per bucket (``story_buckets``: hour and day) and calls
``lifecycle_of_many`` with the partition's clock ``now``: the time of the latest document the partition
has seen, not the wall clock, so a historical corpus replayed today reads as it did then.

**The series, aligned to now.** Buckets are ``params.bucket`` long (a day by default; an hour works
alike) on the UTC grid, as ``date_trunc`` makes them. The bucket holding ``now`` is only partly over, so
reading it as a whole bucket would make every story seem to fall at each midnight. Instead the counts
are re-cut into windows of one bucket's length that end at ``now``: the latest window holds all of the
current bucket (its documents all precede ``now``) and the rest of the bucket before, pro rata; each
earlier window a share of two buckets. This assumes documents spread evenly within a bucket; it is
exact when ``now`` is a bucket's end, and the total is kept. Only the last ``params.history`` windows
are read (before a story's first document they hold zeros). Times reported (``burst_at``, ``peak_at``)
are ends of these windows: when the rule first held. ``emerging_at`` is the start of the first bucket
that has a document (of the young buckets, for a story new by its share of documents there).

**Quantities** (y: documents per window, oldest first; the last is the window ending at ``now``):

| quantity | rule |
| --- | --- |
| rate r | EWMA of y, ``alpha`` 0.5: r_t = sum_k (1-a)^(t-k) y_k / sum_k (1-a)^(t-k) |
| volume | documents in the last ``window`` windows (1: the last 24 h of day buckets), rounded |
| velocity | r_now - r_before: change of the rate per bucket |
| acceleration | velocity_now - velocity_before |
| baseline | EWMA mean m and std s of y over the windows *before* t (``baseline_alpha`` 0.1: ~10 buckets) |
| burst at t | r_t > m + ``z`` * max(s, sqrt(max(m, 1))) and r_t >= ``min_burst_rate``: the rate is ``z`` |
| | standard deviations over the story's own baseline, the deviation at least Poisson noise's, and a |
| | few documents at least, so 1 -> 3 documents is no burst and a steady climb (its own past deviations |
| | raise s) is none either |
| burst | a burst at the latest window; ``burst_at``: where the latest run of bursting windows began |
| | (ongoing or past, within the history), ``None`` if none |
| peak | the highest rate in the history; ``peak_at``: the busiest window (the latest of equals), |
| | ``None`` without documents in the history |

**States**, the first rule that holds:

| state | rule |
| --- | --- |
| dormant | no document in the last ``dormant_buckets`` buckets (the current one included) |
| emerging | new, and rising or bursting. New: its first document within the last ``young_buckets`` |
| | buckets, or at least ``young_share`` of its documents there (a story a re-cluster cuts out of |
| | the window may carry a few older documents; it is still new if most of it is) |
| growing | rising and above its baseline (r > m); a burst that stops rising is peaking |
| peaking | the rate is at least ``near_peak`` of the peak (at or near its maximum, not rising) |
| fading | otherwise: not rising and below ``near_peak`` of the peak, the rate falling from it |

Rising means velocity > ``flat`` * max(r, 1): a change under 5 % of the rate is noise ("velocity ~0").
A story steady for long sits at its peak, so it reads as peaking (a plateau).

**Score** (sort stories by it): recency-decayed volume times burstiness,

    score = (sum_j y_(now-j) * 0.5^(j / half_life)) * (1 + burst_weight * min(zscore, max_zscore))

where zscore = max(0, (r - m) / max(s, sqrt(max(m, 1)))) at the latest window: recent documents count
most (``half_life`` 1 bucket), and a story far above its own baseline ranks up to ``1 + burst_weight *
max_zscore`` (3x by default) over a steady one of the same volume.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)

State = Literal["emerging", "growing", "peaking", "fading", "dormant"]
#: Every state, in the order the rules try them.
STATES: tuple[State, ...] = ("dormant", "emerging", "growing", "peaking", "fading")

_EPOCH_AWARE = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)


@dataclass(frozen=True)
class LifecycleParams:
    """The parameters of the rules in the module docstring."""

    bucket: timedelta = timedelta(days=1)
    history: int = 60  # windows read
    window: int = 1  # windows summed into volume
    alpha: float = 0.5  # rate smoothing
    baseline_alpha: float = 0.1  # baseline smoothing
    z: float = 3.0
    min_burst_rate: float = 4.0  # documents per bucket
    flat: float = 0.05  # relative velocity under which the rate is flat
    young_buckets: int = 3
    young_share: float = 0.8  # share of a story's documents in its young buckets that makes it new
    dormant_buckets: int = 3
    near_peak: float = 0.8
    half_life: float = 1.0  # buckets
    burst_weight: float = 0.25
    max_zscore: float = 8.0

    def __post_init__(self) -> None:
        if self.bucket <= timedelta(0):
            raise ValueError(f"bucket must be a positive duration; got {self.bucket}")
        if self.history < 3 or not 1 <= self.window <= self.history:
            raise ValueError(
                f"history must be at least 3 windows and window between 1 and history; "
                f"got history {self.history}, window {self.window}"
            )
        if not 0 < self.young_share <= 1:
            raise ValueError(f"young_share must be in (0, 1]; got {self.young_share}")
        if not (0 < self.alpha <= 1 and 0 < self.baseline_alpha <= 1):
            raise ValueError(
                f"alpha and baseline_alpha must be in (0, 1]; got {self.alpha}, {self.baseline_alpha}"
            )


@dataclass(frozen=True)
class Lifecycle:
    """Where a story stands at the partition's clock (module docstring)."""

    state: State
    volume: int
    velocity: float
    acceleration: float
    score: float
    burst: bool
    burst_at: datetime | None
    emerging_at: datetime | None
    peak_at: datetime | None


def lifecycle(
    counts: Sequence[tuple[datetime, int]], *, now: datetime, params: LifecycleParams | None = None
) -> Lifecycle:
    """The lifecycle of one story from its ``(bucket start, documents)`` counts (any order, gaps are 0)."""
    return lifecycle_of_many({0: counts}, now=now, params=params)[0]


def lifecycle_of_many(
    series: Mapping[int, Sequence[tuple[datetime, int]]],
    *,
    now: datetime,
    params: LifecycleParams | None = None,
) -> dict[int, Lifecycle]:
    """The lifecycle of each story (keyed by its id) at the same clock ``now``."""
    p = params or LifecycleParams()
    epoch = _EPOCH_NAIVE if now.tzinfo is None else _EPOCH_AWARE
    now_index, phase = divmod((now - epoch) / p.bucket, 1.0)
    result: dict[int, Lifecycle] = {}
    for story_id, counts in series.items():
        result[story_id] = _one(counts, now=now, now_index=int(now_index), phase=phase, epoch=epoch, p=p)
    logger.debug("lifecycle of %d stories at %s", len(result), now.isoformat())
    return result


def _one(
    counts: Sequence[tuple[datetime, int]],
    *,
    now: datetime,
    now_index: int,
    phase: float,
    epoch: datetime,
    p: LifecycleParams,
) -> Lifecycle:
    raw: dict[int, int] = {}
    starts: dict[int, datetime] = {}
    for start, count in counts:
        if count < 0:
            raise ValueError(f"a bucket count cannot be negative; got {count} at {start.isoformat()}")
        index = math.floor((start - epoch) / p.bucket)
        if index > now_index or count == 0:
            continue  # after the clock (an as-of evaluation) or empty
        raw[index] = raw.get(index, 0) + count
        starts[index] = min(start, starts.get(index, start))
    if not raw:
        return Lifecycle("dormant", 0, 0.0, 0.0, 0.0, False, None, None, None)
    first, last = min(raw), max(raw)
    recent = [i for i in raw if now_index - i < p.young_buckets]
    young = sum(raw[i] for i in recent) / sum(raw.values())
    # A story new by its share of recent documents emerged with its young buckets.
    emerged = first if now_index - first < p.young_buckets or young < p.young_share else min(recent)
    y = _windows(raw, now_index=now_index, phase=phase, history=p.history)
    rate, mean, noise, bursting = _burst_signals(y, p)
    velocity = float(rate[-1] - rate[-2])
    acceleration = float(velocity - (rate[-2] - rate[-3]))
    peak = float(rate.max())

    def window_end(i: int) -> datetime:
        return now - (p.history - 1 - i) * p.bucket

    burst_at = None
    if bursting.any():
        end = int(np.flatnonzero(bursting)[-1])
        begin = end
        while begin > 0 and bursting[begin - 1]:
            begin -= 1
        burst_at = window_end(begin)
    peak_at = window_end(int(np.flatnonzero(y == y.max())[-1])) if peak > 0 else None
    rising = velocity > p.flat * max(float(rate[-1]), 1.0)
    burst = bool(bursting[-1])
    state: State
    if now_index - last >= p.dormant_buckets:
        state = "dormant"
    elif (rising or burst) and (now_index - first < p.young_buckets or young >= p.young_share):
        state = "emerging"
    elif rising and rate[-1] > mean[-1]:
        state = "growing"
    elif rate[-1] >= p.near_peak * peak:
        state = "peaking"
    else:
        state = "fading"
    zscore = max(0.0, float((rate[-1] - mean[-1]) / noise[-1]))
    decay = 0.5 ** (np.arange(p.history)[::-1] / p.half_life)
    score = float(y @ decay) * (1.0 + p.burst_weight * min(zscore, p.max_zscore))
    return Lifecycle(
        state=state,
        volume=round(float(y[-p.window :].sum())),
        velocity=velocity,
        acceleration=acceleration,
        score=score,
        burst=burst,
        burst_at=burst_at,
        emerging_at=starts[emerged],
        peak_at=peak_at,
    )


def _burst_signals(
    y: np.ndarray, p: LifecycleParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rate, baseline mean, noise and the burst rule of each window of ``y`` (the module docstring)."""
    rate = _ewma_matrix(len(y), p.alpha) @ y
    mean, std = _baseline(y, p.baseline_alpha)
    noise = np.maximum(std, np.sqrt(np.maximum(mean, 1.0)))
    bursting = (rate > mean + p.z * noise) & (rate >= p.min_burst_rate)
    return rate, mean, noise, bursting


def burst_flags(counts: Sequence[tuple[datetime, int]], params: LifecycleParams | None = None) -> list[bool]:
    """For each ``(bucket start, documents)`` of a story's series (ascending; missing buckets hold no
    documents), whether it was a burst when it ended: the rule that sets a story's ``burst``, read with
    ``now`` at that bucket's end over the ``history`` buckets before it. What a chart marks in red."""
    p = params or LifecycleParams()
    if not counts:
        return []
    epoch = _EPOCH_NAIVE if counts[0][0].tzinfo is None else _EPOCH_AWARE
    indices = [math.floor((start - epoch) / p.bucket) for start, _ in counts]
    first = min(indices)
    dense = np.zeros(max(indices) - first + p.history)  # history - 1 empty buckets before the first
    for index, (_, count) in zip(indices, counts, strict=True):
        dense[index - first + p.history - 1] += count
    flags = []
    for index in indices:
        end = index - first + p.history  # the window of history buckets ending with this one
        flags.append(bool(_burst_signals(dense[end - p.history : end], p)[3][-1]))
    return flags


def _windows(raw: Mapping[int, int], *, now_index: int, phase: float, history: int) -> np.ndarray:
    """Documents per bucket-long window ending at now, oldest first (module docstring)."""
    x = np.zeros(history + 1)  # buckets now_index - history .. now_index
    for index, count in raw.items():
        offset = index - (now_index - history)
        if offset >= 0:  # older buckets only tell when the story began
            x[offset] += count
    y = phase * x[1:] + (1.0 - phase) * x[:-1]
    y[-1] += (1.0 - phase) * x[-1]
    return y


@functools.cache
def _ewma_matrix(n: int, alpha: float) -> np.ndarray:
    """Row t: the normalised weights (1-alpha)^(t-k), k <= t, of an adjusted EWMA (pandas ``adjust``)."""
    lags = np.subtract.outer(np.arange(n), np.arange(n)).astype(float)
    weights = np.where(lags >= 0, (1.0 - alpha) ** np.maximum(lags, 0.0), 0.0)
    normalised: np.ndarray = weights / weights.sum(axis=1, keepdims=True)
    return normalised


def _baseline(y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """EWMA mean and std of ``y`` over the windows before each one (0 and 0 before the first)."""
    weights = _ewma_matrix(len(y), alpha)
    mean_to = weights @ y  # over windows 0..t
    var_to = np.maximum(weights @ (y * y) - mean_to * mean_to, 0.0)
    mean = np.concatenate(([0.0], mean_to[:-1]))
    std = np.sqrt(np.concatenate(([0.0], var_to[:-1])))
    return mean, std
