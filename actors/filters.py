"""Metadata filters of a search: language, source, category and a date range, applied inside the index.

Plain Python and NumPy. An index keeps each row's metadata as small integer codes (one ``Vocabulary``
per field, code 0 = unknown) plus the publication time in epoch seconds, so a filter becomes one boolean
mask over the rows. A filter value the index has never seen matches nothing (empty results, not an
error); a date bound excludes documents without a date.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from storage.index_feed import NO_DATE, MetaBatch

__all__ = ["FIELDS", "NO_DATE", "MetaBatch", "MetaColumns", "SearchFilter", "Vocabulary", "normalise"]

#: The categorical fields, in the column order of ``MetaColumns.codes``.
FIELDS = ("language", "source", "category")


def normalise(value: str | None) -> str | None:
    """Filter values and stored values compare case-insensitively, without surrounding blanks."""
    if value is None:
        return None
    value = value.strip().casefold()
    return value or None


@dataclass(frozen=True)
class SearchFilter:
    """What a search may return. Empty tuples and ``None`` bounds mean "no constraint"."""

    languages: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    since: int | None = None  # epoch seconds, inclusive
    until: int | None = None  # epoch seconds, exclusive

    @property
    def is_empty(self) -> bool:
        return not (self.languages or self.sources or self.categories) and (
            self.since is None and self.until is None
        )

    def values(self, name: str) -> tuple[str, ...]:
        return {"language": self.languages, "source": self.sources, "category": self.categories}[name]


@dataclass
class Vocabulary:
    """String <-> code of one field; code 0 is "unknown"."""

    values: list[str] = field(default_factory=list)
    _codes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._codes = {v: i + 1 for i, v in enumerate(self.values)}

    def encode(self, items: Iterable[str | None]) -> np.ndarray:
        out = []
        for item in items:
            key = normalise(item)
            if key is None:
                out.append(0)
                continue
            code = self._codes.get(key)
            if code is None:
                self.values.append(key)
                code = self._codes[key] = len(self.values)
            out.append(code)
        return np.asarray(out, dtype=np.int32)

    def lookup(self, items: Iterable[str]) -> np.ndarray:
        """Codes of known values only (unknown values have no code and so match nothing)."""
        codes = [self._codes[k] for k in (normalise(i) for i in items) if k is not None and k in self._codes]
        return np.asarray(codes, dtype=np.int32)


class MetaColumns:
    """Growable columns of row metadata: ``codes`` (rows x 3 int32) and ``published`` (int64)."""

    def __init__(self, capacity: int = 0, vocabularies: dict[str, Vocabulary] | None = None) -> None:
        self.codes = np.zeros((capacity, len(FIELDS)), dtype=np.int32)
        self.published = np.full(capacity, NO_DATE, dtype=np.int64)
        self.vocabularies = vocabularies or {name: Vocabulary() for name in FIELDS}

    def grown(self, capacity: int) -> MetaColumns:
        out = MetaColumns(capacity, self.vocabularies)
        n = min(len(self.published), capacity)
        out.codes[:n] = self.codes[:n]
        out.published[:n] = self.published[:n]
        return out

    def write(self, start: int, batch: MetaBatch) -> None:
        n = len(batch.published)
        for j, name in enumerate(FIELDS):
            self.codes[start : start + n, j] = self.vocabularies[name].encode(batch.column(name))
        self.published[start : start + n] = np.asarray(batch.published, dtype=np.int64)

    def take(self, rows: np.ndarray, capacity: int) -> MetaColumns:
        out = MetaColumns(capacity, self.vocabularies)
        out.codes[: len(rows)] = self.codes[rows]
        out.published[: len(rows)] = self.published[rows]
        return out

    def mask(self, flt: SearchFilter, n: int) -> np.ndarray | None:
        """Rows ``[0, n)`` that pass ``flt``; ``None`` when the filter constrains nothing."""
        if flt.is_empty:
            return None
        return self._keep(flt, self.codes[:n], self.published[:n])

    def rows_pass(self, flt: SearchFilter, rows: np.ndarray) -> np.ndarray:
        """Which of ``rows`` pass ``flt`` (all of them when it constrains nothing)."""
        if flt.is_empty:
            return np.ones(len(rows), dtype=bool)
        return self._keep(flt, self.codes[rows], self.published[rows])

    def _keep(self, flt: SearchFilter, codes: np.ndarray, published: np.ndarray) -> np.ndarray:
        keep = np.ones(len(published), dtype=bool)
        for j, name in enumerate(FIELDS):
            wanted = flt.values(name)
            if wanted:
                keep &= np.isin(codes[:, j], self.vocabularies[name].lookup(wanted))
        if flt.since is not None or flt.until is not None:
            keep &= published != NO_DATE
            if flt.since is not None:
                keep &= published >= flt.since
            if flt.until is not None:
                keep &= published < flt.until
        return keep


class MetaTable:
    """Metadata by document id (for indexes whose rows are not positions, such as the keyword index)."""

    def __init__(self) -> None:
        self._columns = MetaColumns(1024)
        self._row_of: dict[int, int] = {}
        self._n = 0

    def upsert(self, ids: Sequence[int], meta: MetaBatch) -> None:
        if self._n + len(ids) > len(self._columns.published):
            self._columns = self._columns.grown(max(2 * len(self._columns.published), self._n + len(ids)))
        self._columns.write(self._n, meta)
        for i, doc in enumerate(ids):
            self._row_of[int(doc)] = self._n + i  # a document's old row is simply unreferenced
        self._n += len(ids)

    def delete(self, ids: Iterable[int]) -> None:
        for doc in ids:
            self._row_of.pop(int(doc), None)

    def matches(self, ids: np.ndarray, flt: SearchFilter) -> np.ndarray:
        """Which of ``ids`` pass ``flt`` (unknown documents never do)."""
        rows = np.fromiter((self._row_of.get(int(i), -1) for i in ids), dtype=np.int64, count=len(ids))
        known = rows >= 0
        passing = self._columns.mask(flt, self._n)
        if passing is None:
            return known
        out: np.ndarray = known & passing[np.maximum(rows, 0)]
        return out
