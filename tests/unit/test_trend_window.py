"""WindowArrays against plain arrays: the same rows after any run of appends and drops, and appends that
copy only the batch (no Ray, no database)."""

from __future__ import annotations

import numpy as np
import pytest

from actors.trend_window import MIN_CAPACITY, WindowArrays

DIM = 4


def rows(start: int, k: int) -> tuple[np.ndarray, ...]:
    ids = np.arange(start, start + k, dtype=np.int64)
    vecs = np.repeat(ids[:, None].astype(np.float32), DIM, axis=1)
    return ids, vecs, ids * 10, ids % 7 - 1, ids % 3 - 1


def columns(w: WindowArrays) -> tuple[np.ndarray, ...]:
    return w.ids, w.vecs, w.times, w.story, w.topic


def test_the_same_rows_as_plain_arrays_after_random_appends_and_drops() -> None:
    rng = np.random.default_rng(7)
    w = WindowArrays(DIM, limit=3_000)
    plain = [np.empty((0, *c.shape[1:]), c.dtype) for c in rows(0, 0)]
    next_id = 0
    for _ in range(400):
        if rng.random() < 0.6:
            k = int(rng.integers(0, 300))
            batch = rows(next_id, k)
            next_id += k
            w.append(*batch)
            plain = [np.concatenate([p, b]) for p, b in zip(plain, batch, strict=True)]
        elif len(plain[0]):
            if rng.random() < 0.7:  # the oldest rows, as eviction by time drops them
                mask = np.arange(len(plain[0])) >= int(rng.integers(0, len(plain[0]) + 1))
            else:
                mask = rng.random(len(plain[0])) < 0.8
            w.keep(mask)
            plain = [p[mask] for p in plain]
        if rng.random() < 0.1 and w.n:
            labels = rng.integers(-1, 5, w.n)
            w.story = labels
            plain[3] = labels.copy()
        for got, want in zip(columns(w), plain, strict=True):
            np.testing.assert_array_equal(got, want)


def test_dropping_the_oldest_rows_copies_nothing_and_appends_reuse_the_room() -> None:
    w = WindowArrays.of(*rows(0, 5_000), limit=10_000)
    capacity = w.capacity
    w.keep(np.arange(5_000) >= 1_000)
    assert (w.start, w.n, int(w.ids[0])) == (1_000, 4_000, 1_000)
    for i in range(20):  # stays within the room it has: moves to the front once, never grows
        w.append(*rows(5_000 + 256 * i, 256))
        w.keep(np.arange(w.n) >= 256)
    assert w.capacity == capacity and w.n == 4_000 and int(w.ids[-1]) == 5_000 + 256 * 20 - 1


def test_growth_stops_at_the_limit_unless_a_batch_needs_more() -> None:
    w = WindowArrays(DIM, limit=3_000)
    assert w.capacity == MIN_CAPACITY
    w.append(*rows(0, MIN_CAPACITY + 1))
    assert w.capacity == 2 * MIN_CAPACITY
    w.append(*rows(MIN_CAPACITY + 1, MIN_CAPACITY))
    assert w.capacity == 3_000  # doubling would pass the limit
    w.append(*rows(2 * MIN_CAPACITY + 1, 2_000))
    assert w.capacity == w.n == 2 * MIN_CAPACITY + 2_001
    with pytest.raises(ValueError, match="holds"):
        w.topic = np.zeros(3, np.int64)
