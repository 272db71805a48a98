"""``WindowArrays``: the trend clusterer's window as column arrays with room to grow (plain numpy, no Ray).

The window takes a batch of documents at a time and lets its oldest go as document time moves on. Held as
plain arrays, every batch would copy the whole window (``np.concatenate``), and every eviction again: at
1,000,000 vectors that is 1.4 GB copied per batch of 256. Here each column is a buffer with spare capacity
and the rows are ``buffer[start:start + n]``:

- **append** writes the batch after the last row; when the buffer's end is reached the rows move to its
  front once, and when they no longer fit the buffer doubles (up to ``limit`` rows, the most the window
  holds, unless a batch needs more), so appending costs the batch, amortised;
- **keep** drops rows: the oldest rows (a prefix, the usual case: documents arrive in time order) by
  moving ``start``, without copying anything; any other set by compacting the rows kept.

The columns are document ids, vectors, times (epoch s), story and topic (-1: none). The views handed out
are valid until the next ``append`` or ``keep``.
"""

from __future__ import annotations

import numpy as np

#: The fewest rows a buffer holds.
MIN_CAPACITY = 1_024


class WindowArrays:
    def __init__(self, dim: int, *, limit: int, capacity: int = MIN_CAPACITY) -> None:
        self.dim = dim
        self.limit = max(int(limit), 1)
        self.start = 0
        self.n = 0
        self._alloc(max(int(capacity), 1))

    def _alloc(self, capacity: int) -> None:
        self._ids = np.empty(capacity, np.int64)
        self._vecs = np.empty((capacity, self.dim), np.float32)
        self._times = np.empty(capacity, np.int64)
        self._story = np.empty(capacity, np.int64)
        self._topic = np.empty(capacity, np.int64)

    def _columns(self) -> list[np.ndarray]:
        return [self._ids, self._vecs, self._times, self._story, self._topic]

    @property
    def capacity(self) -> int:
        return len(self._ids)

    # ------------------------------------------------------------------------------------- views
    @property
    def ids(self) -> np.ndarray:
        return self._ids[self.start : self.start + self.n]

    @property
    def vecs(self) -> np.ndarray:
        return self._vecs[self.start : self.start + self.n]

    @property
    def times(self) -> np.ndarray:
        return self._times[self.start : self.start + self.n]

    @property
    def story(self) -> np.ndarray:
        return self._story[self.start : self.start + self.n]

    @story.setter
    def story(self, values: np.ndarray) -> None:
        self._check(values)
        self._story[self.start : self.start + self.n] = values

    @property
    def topic(self) -> np.ndarray:
        return self._topic[self.start : self.start + self.n]

    @topic.setter
    def topic(self, values: np.ndarray) -> None:
        self._check(values)
        self._topic[self.start : self.start + self.n] = values

    def _check(self, values: np.ndarray) -> None:
        if len(values) != self.n:
            raise ValueError(f"the window holds {self.n} rows; got {len(values)} values")

    # ----------------------------------------------------------------------------------- changes
    def append(
        self, ids: np.ndarray, vecs: np.ndarray, times: np.ndarray, story: np.ndarray, topic: np.ndarray
    ) -> None:
        k = len(ids)
        if not k:
            return
        if self.n + k > self.capacity:
            self._move(max(self.n + k, min(2 * self.capacity, self.limit)))
        elif self.start + self.n + k > self.capacity:
            self._move(self.capacity)
        end = self.start + self.n
        self._ids[end : end + k] = ids
        self._vecs[end : end + k] = vecs
        self._times[end : end + k] = times
        self._story[end : end + k] = story
        self._topic[end : end + k] = topic
        self.n += k

    def _move(self, capacity: int) -> None:
        """The rows to the front of buffers of ``capacity`` rows (new ones when it differs)."""
        rows = slice(self.start, self.start + self.n)
        old = self._columns()
        if capacity != self.capacity:
            self._alloc(capacity)
        for new, column in zip(self._columns(), old, strict=True):
            new[: self.n] = column[rows]  # numpy copies through a buffer where the two overlap
        self.start = 0

    def keep(self, mask: np.ndarray) -> None:
        """Keep the rows where ``mask`` is true, in their order."""
        mask = np.asarray(mask, bool)
        self._check(mask)
        dropped = int(self.n - mask.sum())
        if not dropped:
            return
        if not mask[:dropped].any():  # the first rows, and only they
            self.start += dropped
            self.n -= dropped
            return
        kept = self.start + np.flatnonzero(mask)
        for column in self._columns():
            column[self.start : self.start + len(kept)] = column[kept]
        self.n = len(kept)

    @classmethod
    def of(
        cls,
        ids: np.ndarray,
        vecs: np.ndarray,
        times: np.ndarray,
        story: np.ndarray,
        topic: np.ndarray,
        *,
        limit: int,
    ) -> WindowArrays:
        """A window holding these rows, with room for ``limit`` (at least the rows and a few batches)."""
        n = len(ids)
        window = cls(vecs.shape[1], limit=limit, capacity=max(n + 4 * MIN_CAPACITY, min(2 * n, limit)))
        window.append(ids, vecs, times, story, topic)
        return window
