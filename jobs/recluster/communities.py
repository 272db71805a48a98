"""Communities of a window of document vectors: a k-nearest-neighbour graph (FAISS) cut by Leiden.

Chosen by measurement (``bench/trend_quality.py``; MiniLM vectors on these 2 cores) over HDBSCAN
(58-100 % of documents left as noise at every setting tried), UMAP + HDBSCAN (BERTopic) and Leiden on
UMAP's fuzzy graph (no better than on the plain cosine graph, and 4-5 s more):

- the graph joins each document to its ``k`` nearest neighbours by cosine similarity (weights =
  similarity, symmetrised); exact search up to ``exact_max`` documents, HNSW beyond;
- Leiden (igraph's, the modularity quality with a resolution parameter)
  partitions it: a high resolution gives stories (events), a low one gives topics. Leiden starts from
  the previous partition when one is given, which keeps most documents where they were and makes the
  id matching that follows (the clusterer's) easy; it is seeded, so a replay gives the same
  communities.

Every document lands in a community; communities smaller than ``min_size`` are reported as ``-1``
(noise). Nothing here imports Ray. The re-cluster job runs ``window_communities`` as a Ray task; the
trend clusterer actor runs the same function for its periodic re-clusters (``cluster.top`` hands it to
the actor, as actors may not import jobs).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import faiss
import igraph as ig
import numpy as np


@dataclass(frozen=True)
class GraphParams:
    k: int = 10  #: neighbours per document
    exact_max: int = 200_000  #: exact kNN up to this many documents, HNSW beyond
    hnsw_m: int = 16
    hnsw_ef: int = 64
    threads: int = 2  #: FAISS threads
    seed: int = 1


@dataclass(frozen=True)
class Neighbours:
    """Each row's ``k`` nearest other rows and their cosine similarities."""

    ids: np.ndarray  # (n, k) int64, -1 where fewer exist
    sims: np.ndarray  # (n, k) float32


def neighbours(vectors: np.ndarray, params: GraphParams) -> Neighbours:
    n = len(vectors)
    k = min(params.k, max(n - 1, 0))
    if k == 0:
        return Neighbours(np.empty((n, 0), np.int64), np.empty((n, 0), np.float32))
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    faiss.omp_set_num_threads(max(1, params.threads))
    index: faiss.Index
    if n <= params.exact_max:
        index = faiss.IndexFlatIP(x.shape[1])
    else:
        index = faiss.IndexHNSWFlat(x.shape[1], params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = max(params.hnsw_ef, k + 1)
    index.add(x)
    sims, ids = index.search(x, k + 1)
    # Drop each row's self-match (wherever it ranks; duplicates may tie with it).
    self_hit = ids == np.arange(n)[:, None]
    keep = ~self_hit
    # Rows where self was not returned: drop the last column instead.
    no_self = ~self_hit.any(axis=1)
    keep[no_self, -1] = False
    return Neighbours(ids[keep].reshape(n, k), sims[keep].reshape(n, k).astype(np.float32))


def knn_graph(nb: Neighbours, *, times: np.ndarray | None = None, time_scale_s: float = 0.0) -> ig.Graph:
    """Undirected weighted graph of the neighbour lists (an edge kept once, weight = similarity > 0).

    With ``times`` and ``time_scale_s``, an edge's weight decays with the time between its documents
    (``exp(-|dt| / time_scale_s)``): documents about the same thing weeks apart are less likely one event.
    """
    n, k = nb.ids.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cols = nb.ids.ravel()
    weights = nb.sims.ravel().astype(np.float64)
    if times is not None and time_scale_s > 0:
        t = np.asarray(times, dtype=np.float64)
        gap = np.abs(t[rows] - t[np.maximum(cols, 0)])
        weights = weights * np.exp(-gap / time_scale_s)
    ok = (cols >= 0) & (weights > 0)
    rows, cols, weights = rows[ok], cols[ok], weights[ok]
    a, b = np.minimum(rows, cols), np.maximum(rows, cols)
    keys, first = np.unique(a * n + b, return_index=True)
    graph = ig.Graph(n=n, edges=np.stack([keys // n, keys % n], axis=1))
    graph.es["weight"] = weights[first]
    return graph


def communities(
    graph: ig.Graph,
    *,
    resolution: float,
    min_size: int,
    seed: int = 1,
    initial: np.ndarray | None = None,
) -> np.ndarray:
    """Leiden communities (0..m-1, largest first) of ``graph``; those under ``min_size`` are -1.

    ``initial``: a starting membership (any non-negative ints; -1 rows start alone).
    """
    n = graph.vcount()
    if n == 0:
        return np.empty(0, np.int64)
    start = None
    if initial is not None:
        init = np.asarray(initial, dtype=np.int64).copy()
        alone = init < 0
        init[alone] = init.max(initial=-1) + 1 + np.arange(int(alone.sum()))
        _, start_arr = np.unique(init, return_inverse=True)
        start = start_arr.tolist()
    # igraph's own Leiden (C; the same communities as the leidenalg package here, 17x faster: NMI 0.915
    # on Tweets-T in 0.4 s against 7 s), seeded through the random module it draws from.
    random.seed(seed)
    partition = graph.community_leiden(
        objective_function="modularity",
        weights="weight",
        resolution=resolution,
        n_iterations=-1,
        initial_membership=start,
    )
    raw = np.asarray(partition.membership, dtype=np.int64)
    return relabel(raw, min_size)


def relabel(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Labels renumbered 0..m-1 by decreasing size (ties by first row); groups under ``min_size`` -> -1."""
    out = np.full(len(labels), -1, dtype=np.int64)
    valid = labels >= 0
    if not valid.any():
        return out
    values, first, inverse, counts = np.unique(
        labels[valid], return_index=True, return_inverse=True, return_counts=True
    )
    order = np.lexsort((first, -counts))
    rank = np.empty(len(values), np.int64)
    rank[order] = np.arange(len(values))
    mapped = rank[inverse]
    mapped[counts[inverse] < min_size] = -1
    out[valid] = mapped
    # Re-pack so kept groups are 0..m-1 with no gaps.
    kept = np.unique(out[out >= 0])
    lookup = np.full(len(values), -1, np.int64)
    lookup[kept] = np.arange(len(kept))
    out[out >= 0] = lookup[out[out >= 0]]
    return out


@dataclass(frozen=True)
class CommunityParams:
    """What a re-cluster of a window needs: the graph and the two Leiden resolutions."""

    graph: GraphParams = field(default_factory=GraphParams)
    story_resolution: float = 2.0
    topic_resolution: float = 1.0
    #: topics: neighbours per document in their graph (broader than the stories' ``graph.k``)
    topic_k: int = 30
    min_size: int = 3
    #: stories only: edges decay with the time between their documents (0: no decay)
    time_scale_days: float = 3.0


def window_communities(
    vectors: np.ndarray, current: np.ndarray, times: np.ndarray, params: CommunityParams
) -> tuple[np.ndarray, np.ndarray]:
    """(story communities, topic communities) of a window, the stories' Leiden started from ``current``.

    Stories are cut from the time-decayed graph (events are bounded in time), topics from the plain one.
    """
    wide = neighbours(vectors, replace(params.graph, k=max(params.graph.k, params.topic_k)))
    # The neighbour lists are sorted by similarity: the stories' graph takes the first ``graph.k``.
    nb = Neighbours(wide.ids[:, : params.graph.k], wide.sims[:, : params.graph.k])
    topic_nb = Neighbours(wide.ids[:, : params.topic_k], wide.sims[:, : params.topic_k])
    graph = knn_graph(topic_nb)
    story_graph = knn_graph(nb, times=times, time_scale_s=params.time_scale_days * 86_400)
    stories = communities(
        story_graph,
        resolution=params.story_resolution,
        min_size=params.min_size,
        seed=params.graph.seed,
        initial=current if (np.asarray(current) >= 0).any() else None,
    )
    topics = communities(
        graph, resolution=params.topic_resolution, min_size=params.min_size, seed=params.graph.seed
    )
    return stories, topics
