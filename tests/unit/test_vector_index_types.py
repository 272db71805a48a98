"""VectorIndex over every index type: upserts, deletes, filters, rebuilds, snapshots (no Ray, no database)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from actors.filters import NO_DATE, MetaBatch, SearchFilter
from actors.vector_index import VectorIndex
from actors.vector_search import IndexConfig, SearchHits, factory_for, ivf_lists, merge_hits

D = 32
N = 4_000
LANGS = ("en", "ar", "fr")
CATEGORIES = ("POLITICS", "SPORTS", "TECH", "ARTS", "CRIME")


def clustered(n: int, seed: int = 0) -> np.ndarray:
    """Vectors around 40 centres, like real embeddings (uniform vectors make ANN recall meaningless)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, D))
    v = centres[rng.integers(0, 40, n)] + 0.35 * rng.normal(size=(n, D))
    v = v.astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def meta_of(ids: np.ndarray) -> MetaBatch:
    return MetaBatch(
        languages=[LANGS[i % 3] for i in ids.tolist()],
        sources=[f"source-{i % 7}" for i in ids.tolist()],
        categories=[CATEGORIES[i % 5] if i % 11 else None for i in ids.tolist()],
        published=np.where(ids % 13 == 0, NO_DATE, 1_500_000_000 + ids * 3600),
    )


KINDS = {
    "flat": IndexConfig(kind="flat"),
    "hnsw": IndexConfig(kind="hnsw", hnsw_m=16, ef_search=64, exact_filter_max=50),
    "ivf": IndexConfig(kind="ivf", nprobe=8, exact_filter_max=50),
    "ivfsq": IndexConfig(kind="IVF16,SQ8", nprobe=16, exact_filter_max=50),
}


def built(kind: str, n: int = N) -> tuple[VectorIndex, np.ndarray, np.ndarray]:
    ids = np.arange(1, n + 1, dtype=np.int64) * 10
    vectors = clustered(n)
    index = VectorIndex(dimension=D, config=KINDS[kind])
    index.upsert(ids, vectors, meta=meta_of(ids))
    assert index.rebuild()
    return index, ids, vectors


def test_factory_by_size() -> None:
    config = IndexConfig(exact_max=50_000, hnsw_max=5_000_000)
    assert factory_for(10_000, 384, config) == "Flat"
    assert factory_for(100_000, 384, config) == "HNSW32,Flat"
    assert factory_for(10_000_000, 384, config) == f"IVF{ivf_lists(10_000_000)},PQ64x8"
    assert factory_for(100_000, 384, IndexConfig(kind="ivf")) == "IVF1024,Flat"
    assert factory_for(100_000, 384, IndexConfig(kind="IVF256,SQ8")) == "IVF256,SQ8"
    assert factory_for(500, 384, IndexConfig(kind="hnsw")) == "Flat"  # too small for a graph
    assert ivf_lists(1_000_000) == 4096


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_type_finds_stored_vectors_and_sees_upserts_and_deletes(kind: str) -> None:
    index, ids, vectors = built(kind)
    assert index.stats().factory == factory_for(N, D, KINDS[kind])
    hits = index.search(vectors[:200], 1)
    found = np.mean([row[0] == i for row, i in zip(hits.ids, ids[:200].tolist(), strict=True)])
    lossy = kind == "ivfsq"  # scalar quantisation approximates the vectors themselves
    assert found >= (0.8 if lossy else 1.0)
    top = 5 if lossy else 1

    # Delete from the built index: never returned by the next search (tombstones inside the search).
    gone = ids[:50]
    assert index.delete(gone.tolist()) == 50
    hits = index.search(vectors[:50], 10)
    assert all(not set(row) & set(gone.tolist()) for row in hits.ids)
    assert all(len(row) == 10 for row in hits.ids)

    # Upsert: a new vector for an existing document replaces the old one; a new document is findable.
    moved = clustered(1, seed=9)
    index.upsert(np.array([ids[100]]), moved, meta=meta_of(ids[100:101]))
    index.upsert(np.array([7]), clustered(1, seed=10), meta=meta_of(np.array([7])))
    assert int(ids[100]) in index.search(moved, top).ids[0]
    assert 7 in index.search(clustered(1, seed=10), top).ids[0]
    old_hits = index.search(vectors[100:101], 50).ids[0]
    assert old_hits.count(int(ids[100])) <= 1  # never two vectors for one document
    assert index.size == N - 50 + 1

    # A rebuild compacts; results stay the same (a lossy index is retrained: nearly the same).
    before = index.search(vectors[200:220], 5)
    assert index.rebuild()
    after = index.search(vectors[200:220], 5)
    same = np.mean([b[0] == a[0] for b, a in zip(before.ids, after.ids, strict=True)])
    assert same >= (0.7 if lossy else 1.0)
    assert index.stats().dead_rows == 0 and index.stats().delta_rows == 0


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize(
    "flt",
    [
        SearchFilter(languages=("ar",)),
        SearchFilter(categories=("sports", "TECH")),
        SearchFilter(sources=("source-3",), languages=("fr",)),
        SearchFilter(since=1_500_000_000 + 3600 * 30_000, until=1_500_000_000 + 3600 * 30_400),
    ],
    ids=["lang", "categories", "source+lang", "dates"],
)
def test_filters_never_return_outside_and_still_return_k(kind: str, flt: SearchFilter) -> None:
    index, ids, vectors = built(kind)
    meta = meta_of(ids)
    passing = {
        int(i)
        for j, i in enumerate(ids.tolist())
        if (not flt.languages or meta.languages[j] in flt.languages)
        and (not flt.sources or meta.sources[j] in flt.sources)
        and (not flt.categories or (meta.categories[j] or "").lower() in {c.lower() for c in flt.categories})
        and (flt.since is None or (meta.published[j] != NO_DATE and meta.published[j] >= flt.since))
        and (flt.until is None or (meta.published[j] != NO_DATE and meta.published[j] < flt.until))
    }
    k = 10
    hits = index.search(vectors[:30], k, filter=flt)
    for row in hits.ids:
        assert set(row) <= passing
        assert len(row) == min(k, len(passing))


def test_unknown_filter_values_match_nothing() -> None:
    index, _, vectors = built("flat", n=500)
    assert index.search(vectors[:2], 5, filter=SearchFilter(categories=("no-such",))).ids == [[], []]
    assert index.search(vectors[:1], 5, filter=SearchFilter(languages=("EN",))).ids[0]  # case-insensitive


def test_delta_rows_are_searched_and_rebuild_is_triggered() -> None:
    config = IndexConfig(kind="hnsw", hnsw_m=16, rebuild_min_rows=100, rebuild_fraction=0.05)
    index = VectorIndex(dimension=D, config=config)
    vectors = clustered(3_000)
    index.upsert(np.arange(3_000), vectors[:3_000])
    assert index.needs_rebuild()
    index.rebuild()
    assert not index.needs_rebuild()
    extra = clustered(200, seed=5)
    index.upsert(np.arange(10_000, 10_200), extra)
    assert index.stats().delta_rows == 200
    assert [r[0] for r in index.search(extra[:20], 1).ids] == list(range(10_000, 10_020))
    assert index.needs_rebuild()


def test_searches_run_during_a_rebuild_and_writes() -> None:
    index, ids, vectors = built("hnsw")
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        try:
            while not stop.is_set():
                hits = index.search(vectors[:8], 5)
                assert all(len(row) == 5 for row in hits.ids)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(2)]
    for t in threads:
        t.start()
    index.upsert(ids[:500], clustered(500, seed=3))
    index.rebuild()
    index.delete(ids[500:600].tolist())
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert index.size == N - 100


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_snapshot_restores_exactly(kind: str) -> None:
    index, ids, vectors = built(kind)
    index.delete(ids[:10].tolist())
    index.upsert(np.array([99_999]), clustered(1, seed=4))
    snap = index.snapshot(shard=0)
    copy = VectorIndex(dimension=D, config=KINDS[kind])
    copy.restore(snap)
    queries = vectors[:40]
    assert copy.search(queries, 5) == index.search(queries, 5)
    flt = SearchFilter(languages=("ar",))
    assert copy.search(queries, 5, filter=flt) == index.search(queries, 5, filter=flt)
    assert copy.size == index.size
    assert copy.stats().factory == index.stats().factory


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_deleted_rows_stay_hidden_when_the_store_grows_rebuilds_or_restores(kind: str) -> None:
    """A search without a filter skips the live mask only while no row is dead; the count of dead rows
    must follow the rows into a grown store, a rebuilt one and a restored one."""
    index, ids, vectors = built(kind, n=3_000)
    gone = ids[:5].tolist()
    assert index.delete(gone) == 5
    more = np.arange(1, 2_001, dtype=np.int64) + 10 * 3_000 + 10  # past the store's capacity: it grows
    index.upsert(more, clustered(2_000, seed=9), meta=meta_of(more))
    assert index.stats().delta_rows == 2_000

    def hidden(ix: VectorIndex) -> bool:
        return all(not set(row) & set(gone) for row in ix.search(vectors[:5], 20).ids)

    assert hidden(index)
    copy = VectorIndex(dimension=D, config=KINDS[kind])
    copy.restore(index.snapshot(shard=0))
    assert hidden(copy)
    assert index.rebuild()
    assert hidden(index)
    index.delete([int(more[0])])
    assert int(more[0]) not in index.search(clustered(2_000, seed=9)[:1], 5).ids[0]
    alive = VectorIndex(dimension=D, config=KINDS[kind])
    alive.upsert(ids, vectors)  # nothing dead: every row of the fast path is live
    alive.rebuild()
    first = np.array([row[0] for row in alive.search(vectors[:200], 1).ids])
    assert np.mean(first == ids[:200]) >= (1.0 if kind == "flat" else 0.95)


def test_chunk_keys_replaced_per_document_and_deleted_together() -> None:
    index = VectorIndex(dimension=D)
    v = clustered(5)
    index.upsert(np.array([1, 1, 1, 2, 2]), v, keys=np.array([1024, 1025, 1026, 2048, 2049]))
    index.upsert(np.array([1]), v[:1], keys=np.array([1024]))  # re-embedded with one chunk
    assert index.size == 3
    assert index.delete([2]) == 2
    assert index.search(v, 10).ids[0] == [1024]


def test_merge_hits_takes_the_best_across_shards() -> None:
    a = SearchHits(ids=[[1, 3]], scores=[[0.9, 0.5]])
    b = SearchHits(ids=[[2, 4]], scores=[[0.7, 0.6]])
    assert merge_hits([a, b], 3) == SearchHits(ids=[[1, 2, 4]], scores=[[0.9, 0.7, 0.6]])
