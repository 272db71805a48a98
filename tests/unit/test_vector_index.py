from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from actors.errors import DimensionMismatch
from actors.filters import MetaBatch
from actors.vector_index import VectorIndex


@dataclass(frozen=True)
class Update:
    watermark: int
    document_ids: np.ndarray
    vectors: np.ndarray
    keys: np.ndarray | None = None
    meta: MetaBatch | None = None


class ListSource:
    """A fake vector source: manifest files kept in a list."""

    def __init__(self) -> None:
        self.files: list[Update] = []
        self.asked: list[int] = []
        self.deleted: list[int] = []

    def add(self, ids: list[int], vectors: np.ndarray) -> None:
        self.files.append(Update(len(self.files) + 1, np.asarray(ids, dtype=np.int64), vectors))

    def updates_after(self, watermark: int) -> list[Update]:
        self.asked.append(watermark)
        return [f for f in self.files if f.watermark > watermark]

    def deletions_after(self, sequence: int) -> tuple[int, np.ndarray]:
        return len(self.deleted), np.asarray(self.deleted[sequence:], dtype=np.int64)


def unit_vectors(n: int, d: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_each_vector_finds_itself_first() -> None:
    source = ListSource()
    vectors = unit_vectors(50, 16)
    source.add(list(range(100, 150)), vectors)
    index = VectorIndex(dimension=16, source=source)
    assert index.catch_up() == 50
    hits = index.search(vectors, k=3)
    assert [row[0] for row in hits.ids] == list(range(100, 150))
    assert all(abs(row[0] - 1.0) < 1e-5 for row in hits.scores)
    assert all(row[0] >= row[1] >= row[2] for row in hits.scores)


def test_catch_up_reads_only_after_the_watermark_and_upserts_replace() -> None:
    source = ListSource()
    first = unit_vectors(10, 8, seed=1)
    source.add(list(range(10)), first)
    index = VectorIndex(dimension=8, source=source)
    index.catch_up()
    replacement = unit_vectors(1, 8, seed=2)
    source.add([3], replacement)
    assert index.catch_up() == 1
    assert source.asked == [0, 1]
    assert index.size == 10  # replaced, not duplicated
    assert index.watermark == 2
    hits = index.search(replacement, k=1)
    assert hits.ids[0] == [3]
    assert index.catch_up() == 0


def test_repeated_id_in_one_batch_keeps_the_last_vector() -> None:
    index = VectorIndex(dimension=4, source=ListSource())
    v = unit_vectors(2, 4, seed=3)
    index.upsert(np.array([7, 7]), v)
    assert index.size == 1
    assert index.search(v[1:], k=1).ids == [[7]]


def test_k_larger_than_index_and_empty_index() -> None:
    index = VectorIndex(dimension=4, source=ListSource())
    assert index.search(unit_vectors(1, 4), k=5).ids == [[]]
    index.upsert(np.array([1, 2]), unit_vectors(2, 4))
    assert len(index.search(unit_vectors(1, 4), k=5).ids[0]) == 2


def test_dimension_mismatch_is_refused() -> None:
    index = VectorIndex(dimension=4, source=ListSource())
    with pytest.raises(DimensionMismatch):
        index.search(np.zeros((1, 5), dtype=np.float32), k=1)
    with pytest.raises(DimensionMismatch):
        index.upsert(np.array([1]), np.zeros((1, 3), dtype=np.float32))


def test_chunk_keys_of_a_document_are_replaced_together() -> None:
    index = VectorIndex(dimension=8, source=ListSource())
    vectors = unit_vectors(5, 8, seed=3)
    # Document 7 has three chunks, document 9 two.
    index.upsert(np.array([7, 7, 7, 9, 9]), vectors, keys=np.array([7168, 7169, 7170, 9216, 9217]))
    assert index.size == 5
    # Re-embedded with one chunk: its old chunks all leave, document 9 is untouched.
    index.upsert(np.array([7]), vectors[:1], keys=np.array([7168]))
    assert index.size == 3
    hits = index.search(vectors[2:3], k=3)
    assert 7170 not in hits.ids[0]


def test_collapse_chunks_keeps_each_document_once_at_its_best_score() -> None:
    from actors.index_actor import collapse_chunks
    from actors.vector_search import SearchHits

    hits = SearchHits(ids=[[7169, 7168, 9216, 3072]], scores=[[0.9, 0.8, 0.7, 0.6]])
    collapsed = collapse_chunks(hits, k=2)
    assert collapsed.ids == [[7, 9]]
    assert collapsed.scores == [[0.9, 0.7]]
