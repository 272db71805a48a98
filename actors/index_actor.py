"""The Ray shell around ``VectorIndex``: named, detached shard actors restarted by Ray, durable by snapshot.

A model entry's index at one level is ``shards`` actors; document ``d`` lives in shard
``shard_of(d, shards)``. Each shard, on (re)start, loads its latest snapshot from the storage URI
(FAISS index, rows, watermarks) in a background thread, answering ``ready()`` and ``stats()`` meanwhile,
then catches up from the manifest and the deletion log after the snapshot's watermarks. Afterwards it
polls every ``poll_interval_s``, rebuilds its FAISS index in the background when the delta or the
tombstones have grown, and writes a new snapshot every ``snapshot_interval_s`` when something changed.
``catch_up()`` is a hint writers send after committing files or deleting documents; a lost hint only
delays, since the poll catches up anyway.

``ShardedIndex`` is the caller's side: it fans a search out to every shard in parallel and merges the
top-k, and a shard that misses the deadline is left out (the result says it is partial).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import faiss
import numpy as np
import ray
from ray import ObjectRef
from ray.actor import ActorClass, ActorProxy

from actors.errors import IndexNotReady
from actors.filters import SearchFilter
from actors.index_stats import ShardStats
from actors.vector_index import IndexSnapshot, VectorIndex
from actors.vector_search import IndexConfig, SearchHits, merge_hits
from cluster.ground import ray_metrics
from cluster.ground.constants import index_actor_name
from cluster.ground.metrics import ERRORS, INDEX_APPLIED, INDEX_VECTORS
from storage.errors import SnapshotError
from storage.index_snapshots import SnapshotStore
from storage.vector_files import CHUNK_SLOTS
from storage.vector_source import ManifestVectorSource, shard_of

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


@dataclass(frozen=True)
class IndexActorConfig:
    """Everything a shard actor needs; plain values so the actor never reads settings itself."""

    database_url: str
    storage_uri: str
    model_id: int
    dimension: int
    namespace: str
    level: str = "document"  # or "chunk": one vector per chunk, results collapsed to documents
    shard: int = 0
    shards: int = 1
    num_cpus: float = 0.25
    omp_threads: int = 1
    poll_interval_s: float = 10.0
    snapshot_interval_s: float = 300.0  # 0 disables snapshots
    index: IndexConfig = field(default_factory=IndexConfig)
    label_selector: Mapping[str, str] = field(default_factory=dict)  # node labels required; empty: any

    @property
    def snapshot_name(self) -> str:
        return f"model={self.model_id}/{self.level}/shard-{self.shard}-of-{self.shards}"


#: Chunks fetched per wanted document in an index of chunks (several chunks of one document may lead).
CHUNK_OVERSAMPLE = 4


def collapse_chunks(hits: SearchHits, k: int) -> SearchHits:
    """Chunk hits -> document hits: each document once, at its best chunk's score, best first."""
    out_ids: list[list[int]] = []
    out_scores: list[list[float]] = []
    for keys, scores in zip(hits.ids, hits.scores, strict=True):
        seen: dict[int, float] = {}
        for key, score in zip(keys, scores, strict=True):
            doc = key // CHUNK_SLOTS
            if doc not in seen:
                seen[doc] = score
                if len(seen) == k:
                    break
        out_ids.append(list(seen))
        out_scores.append(list(seen.values()))
    return SearchHits(ids=out_ids, scores=out_scores)


def snapshot_arrays(snap: IndexSnapshot) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays = {
        "keys": snap.keys,
        "docs": snap.docs,
        "vectors": snap.vectors,
        "live": snap.live,
        "codes": snap.codes,
        "published": snap.published,
    }
    if snap.main_index is not None:
        arrays["main_index"] = snap.main_index
    info = {
        "dimension": snap.dimension,
        "vocabularies": snap.vocabularies,
        "factory": snap.factory,
        "main_rows": snap.main_rows,
        "watermark": snap.watermark,
        "deletion_watermark": snap.deletion_watermark,
        "chunked": snap.chunked,
        **snap.extra,
    }
    return arrays, info


def snapshot_from(arrays: dict[str, np.ndarray], info: dict[str, Any]) -> IndexSnapshot:
    return IndexSnapshot(
        dimension=int(info["dimension"]),
        keys=arrays["keys"],
        docs=arrays["docs"],
        vectors=arrays["vectors"],
        live=arrays["live"],
        codes=arrays["codes"],
        published=arrays["published"],
        vocabularies={k: list(v) for k, v in info["vocabularies"].items()},
        factory=str(info["factory"]),
        main_rows=int(info["main_rows"]),
        main_index=arrays.get("main_index"),
        watermark=int(info["watermark"]),
        deletion_watermark=int(info["deletion_watermark"]),
        chunked=bool(info["chunked"]),
    )


class VectorIndexService:
    """Hosts one shard's ``VectorIndex`` inside an actor: snapshot load, catch-up, rebuilds, snapshots."""

    def __init__(self, config: IndexActorConfig) -> None:
        faiss.omp_set_num_threads(config.omp_threads)
        # In FAISS 1.15 exact search uses BLAS only from nq*d >= 128,000; small batches on one thread are
        # far faster through BLAS (a probe measured 82 -> 974 queries/s on 100k x 384).
        faiss.cvar.distance_compute_blas_threshold = 7680
        self._config = config
        self._source = ManifestVectorSource(
            database_url=config.database_url,
            storage_uri=config.storage_uri,
            model_id=config.model_id,
            level=config.level,
            shard=config.shard,
            shards=config.shards,
        )
        self._snapshots = SnapshotStore(config.storage_uri)
        self._index = VectorIndex(dimension=config.dimension, source=self._source, config=config.index)
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._search_thread: int | None = None
        self._error: str | None = None
        self._restored_from: str | None = None
        self._snapshot_marks = (-1, -1)
        self._snapshot_at = time.monotonic()
        self._snapshots_written = 0
        self._tags = {"model_id": config.model_id, "level": config.level, "shard": config.shard}
        self._thread = threading.Thread(target=self._run, name="index-maintenance", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------------------- background work
    def _restore(self) -> None:
        try:
            loaded = self._snapshots.load(self._config.snapshot_name)
        except SnapshotError as exc:
            logger.warning("%s", exc)
            return
        if loaded is None:
            return
        arrays, info = loaded
        if int(info.get("dimension", -1)) != self._config.dimension:
            logger.warning("snapshot %s has another dimension; rebuilding", self._config.snapshot_name)
            return
        self._index.restore(snapshot_from(arrays, info))
        self._restored_from = str(info.get("stamp"))
        self._snapshot_marks = (self._index.watermark, self._index.stats().deletion_watermark)
        logger.info(
            "shard %s restored from snapshot %s (%d vectors, watermark %d)",
            self._config.snapshot_name,
            self._restored_from,
            self._index.size,
            self._index.watermark,
        )

    def _threads(self) -> None:
        """OpenMP's thread count is per calling thread (OMP_NUM_THREADS, set from the actor's CPUs, applies
        elsewhere), so it is set on the search thread and on the maintenance thread."""
        faiss.omp_set_num_threads(self._config.omp_threads)

    def _run(self) -> None:
        self._threads()  # builds and catch-up on this thread
        self._restore()
        while not self._stop.is_set():
            try:
                self._measure(self._index.catch_up())
                if self._index.needs_rebuild():
                    self._index.rebuild()
                self._error = None
                self._ready.set()
                self._maybe_snapshot()
            except Exception as exc:  # keep serving what is loaded; report and retry
                self._error = f"{type(exc).__name__}: {exc}"
                ray_metrics.inc(ERRORS, component="index", kind=type(exc).__name__)
                logger.exception("index shard %s maintenance failed", self._config.snapshot_name)
            self._stop.wait(self._config.poll_interval_s)

    def _measure(self, applied: int) -> None:
        """Metrics after a catch-up: the vectors it applied, the shard's size."""
        ray_metrics.inc(INDEX_APPLIED, applied, **self._tags)
        ray_metrics.set_gauge(INDEX_VECTORS, self._index.size, **self._tags)

    def _maybe_snapshot(self, force: bool = False) -> bool:
        interval = self._config.snapshot_interval_s
        if interval <= 0 and not force:
            return False
        stats = self._index.stats()
        marks = (stats.watermark, stats.deletion_watermark)
        due = force or time.monotonic() - self._snapshot_at >= interval
        if marks == self._snapshot_marks or not due:
            return False
        arrays, info = snapshot_arrays(
            self._index.snapshot(model_id=self._config.model_id, level=self._config.level)
        )
        self._snapshots.save(self._config.snapshot_name, arrays, info)
        self._snapshot_marks = marks
        self._snapshot_at = time.monotonic()
        self._snapshots_written += 1
        logger.info("shard %s snapshot written at watermark %d", self._config.snapshot_name, marks[0])
        return True

    # ----------------------------------------------------------------------------------- remote API
    # ``@ray.method`` types the calls through a handle (``handle.stats.remote()`` is an
    # ``ObjectRef[ShardStats]``). Remote methods have no default arguments: Ray's typed ``.remote``
    # is chosen by the smallest number of arguments the method accepts.
    @ray.method
    def wait_ready(self, timeout_s: float) -> bool:
        return self._ready.wait(timeout_s)

    @ray.method
    def catch_up(self) -> int:
        """Hint from a writer: apply new files and deletions now. Returns the vectors changed."""
        if not self._ready.is_set():
            return 0  # still loading: the loader applies them
        applied = self._index.catch_up()
        self._measure(applied)
        return applied

    @ray.method
    def snapshot(self) -> bool:
        """Write a snapshot now if anything changed since the last one (operators, tests)."""
        if not self._ready.is_set():
            raise IndexNotReady(self._config.model_id)
        return self._maybe_snapshot(force=True)

    @ray.method(concurrency_group="search")
    def search(self, queries: np.ndarray, k: int, flt: SearchFilter | None) -> SearchHits:
        """The ``k`` best documents per query; in an index of chunks, each document by its best chunk.

        Searches run one at a time on the "search" concurrency group's one thread: OpenMP keeps a team of
        worker threads per calling thread, and a team goes cold when calls move between Ray's pool
        threads (measured at 1M vectors: 5.5 ms more per batch of 32 than raw FAISS). A dedicated
        executor did the same at the cost of one more thread hop per call.
        """
        if not self._ready.is_set():
            raise IndexNotReady(self._config.model_id)
        if self._search_thread != threading.get_ident():
            self._threads()
            self._search_thread = threading.get_ident()
        if self._config.level == "document":
            return self._index.search(queries, k, filter=flt)
        hits = self._index.search(queries, k * CHUNK_OVERSAMPLE, filter=flt)
        return collapse_chunks(hits, k)

    @ray.method
    def vector_of(self, document_id: int) -> np.ndarray | None:
        if not self._ready.is_set():
            raise IndexNotReady(self._config.model_id)
        return self._index.vector_of(document_id)

    @ray.method
    def vectors_of(
        self, document_ids: np.ndarray, flt: SearchFilter | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, vectors, publication times) of the given documents this shard holds that pass ``flt``."""
        if not self._ready.is_set():
            raise IndexNotReady(self._config.model_id)
        return self._index.vectors_of(document_ids, flt)

    @ray.method
    def stats(self) -> ShardStats:
        return ShardStats(
            index=self._index.stats(),
            model_id=self._config.model_id,
            level=self._config.level,
            shard=self._config.shard,
            shards=self._config.shards,
            pid=os.getpid(),
            node_id=ray.get_runtime_context().get_node_id(),
            ready=self._ready.is_set(),
            restored_from=self._restored_from,
            snapshots_written=self._snapshots_written,
            last_error=self._error,
        )


#: Ray options of the index actor, in one place.
INDEX_ACTOR_OPTIONS: dict[str, Any] = {
    "max_restarts": -1,  # always come back; state is rebuilt from snapshot + storage
    "max_task_retries": 3,
    "max_concurrency": 16,  # searches run while the maintenance thread loads or rebuilds
    "lifetime": "detached",
    "scheduling_strategy": "SPREAD",  # shards of one index spread across nodes
}

#: Searches run in their own concurrency group of one thread (see ``search``); Ray takes concurrency
#: groups only here, not in ``.options()`` (and its overloads of ``ray.remote`` do not list them).
VectorIndexActor: ActorClass[VectorIndexService] = ray.remote(  # type: ignore[call-overload]
    concurrency_groups={"search": 1}
)(VectorIndexService)


def get_or_create_index_actor(config: IndexActorConfig) -> ActorProxy[VectorIndexService]:
    """One shard's actor, created if it does not exist yet (safe to call from many replicas)."""
    return VectorIndexActor.options(
        name=index_actor_name(config.model_id, config.shard, level=config.level, shards=config.shards),
        namespace=config.namespace,
        get_if_exists=True,
        num_cpus=config.num_cpus,
        **INDEX_ACTOR_OPTIONS,
        **({"label_selector": dict(config.label_selector)} if config.label_selector else {}),
    ).remote(config)


@dataclass(frozen=True)
class ShardedHits:
    hits: SearchHits
    answered: int  # shards that answered before the deadline
    shards: int
    loading: int  # shards still loading their index

    @property
    def partial(self) -> bool:
        return self.answered < self.shards


class ShardedIndex:
    """The shards of one model entry and level, seen as one index by a caller (the search app)."""

    def __init__(self, config: IndexActorConfig) -> None:
        self.config = config
        self.actors = [get_or_create_index_actor(replace(config, shard=s)) for s in range(config.shards)]

    async def search(
        self, queries: np.ndarray, k: int, flt: SearchFilter | None, *, deadline_s: float
    ) -> ShardedHits:
        """Fan out, wait up to ``deadline_s``, merge what came back. Raises ``IndexNotReady`` when no
        shard could answer because shards are loading."""
        refs = [actor.search.remote(queries, k, flt) for actor in self.actors]
        tasks = [asyncio.ensure_future(_awaitable(ref)) for ref in refs]
        done, pending = await asyncio.wait(tasks, timeout=deadline_s)
        for task in pending:
            task.cancel()
        parts: list[SearchHits] = []
        loading = 0
        for task in done:
            exc = task.exception()
            if exc is None:
                parts.append(task.result())
            elif isinstance(exc, IndexNotReady) or isinstance(getattr(exc, "cause", None), IndexNotReady):
                loading += 1
            else:
                logger.warning("index shard failed: %s", exc)
        if not parts:
            if loading:
                raise IndexNotReady(self.config.model_id)
            raise TimeoutError(f"no index shard of model {self.config.model_id} answered in {deadline_s} s")
        return ShardedHits(merge_hits(parts, k), len(parts), len(self.actors), loading)

    async def vector_of(self, document_id: int) -> np.ndarray | None:
        shard = int(shard_of(np.array([document_id]), self.config.shards)[0])
        result: np.ndarray | None = await self.actors[shard].vector_of.remote(document_id)
        return result

    async def vectors_of(
        self, document_ids: np.ndarray, flt: SearchFilter | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, vectors, publication times) of the given documents the index holds and that pass ``flt``
        (each shard asked for its own; order not kept)."""
        ids = np.unique(np.asarray(document_ids, dtype=np.int64))
        shard = shard_of(ids, self.config.shards)
        asks = [(s, ids[shard == s]) for s in range(self.config.shards)]
        parts = await asyncio.gather(
            *(_awaitable(self.actors[s].vectors_of.remote(part, flt)) for s, part in asks if len(part))
        )
        if not parts:
            return ids[:0], np.zeros((0, self.config.dimension), np.float32), np.zeros(0, np.int64)
        return (
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
        )

    async def stats(self) -> list[ShardStats]:
        return list(await asyncio.gather(*(_awaitable(a.stats.remote()) for a in self.actors)))

    def notify(self) -> None:
        for actor in self.actors:
            actor.catch_up.remote()


async def _awaitable(ref: ObjectRef[_T]) -> _T:
    return await ref
