"""The reindex job (``python -m jobs.reindex`` / `pulse reindex`): rebuild a model entry's vector index
shards from the storage URI's vector files and the manifest, and write each shard's snapshot.

Each shard (one level, one of ``shards``) is built by a Ray task exactly as its actor would build it on a
start without snapshot: a ``VectorIndex`` over a ``ManifestVectorSource`` catches up from watermark 0,
builds its main FAISS index, and the result is written as the shard's current snapshot
(``storage.index_snapshots``: written aside, made current by one rename), so a killed run leaves every
shard's previous snapshot current and a rerun simply goes on.

Idempotent: a shard whose current snapshot already holds every committed file and deletion and was
built with the same index configuration is skipped (``--force`` rebuilds it anyway), so rerunning after a
partial run builds only the shards left. Running shard actors keep serving what they hold (they follow the
manifest themselves); ``restart=True`` restarts them (``ray.kill`` without ``no_restart``: Ray starts each
again, and it loads the new snapshot). It lives in ``cluster.top`` because it drives the index actors'
own code (``jobs`` never import ``actors``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow.fs as pafs
import ray

from actors.index_actor import IndexActorConfig, snapshot_arrays
from actors.vector_index import VectorIndex
from cluster.ground.constants import index_actor_name
from jobs.placement import Ask, wait_placeable
from storage.database import make_engine, make_session_factory, session_scope
from storage.embeddings import EmbeddingRepository
from storage.index_snapshots import SNAPSHOT_DIR, SnapshotStore
from storage.vector_source import LEVELS, ManifestVectorSource

logger = logging.getLogger(__name__)

#: Key of the snapshot description that records the index configuration a shard was built with.
CONFIG_KEY = "index_config"


@dataclass(frozen=True)
class ShardResult:
    """One shard's outcome: ``stamp`` of the snapshot written, or None when it was up to date."""

    name: str
    vectors: int
    watermark: int
    stamp: str | None
    seconds: float

    def line(self) -> str:
        if self.stamp is None:
            return f"{self.name}: up to date ({self.vectors} vectors, watermark {self.watermark}), skipped"
        return (
            f"{self.name}: {self.vectors} vectors up to watermark {self.watermark}, snapshot {self.stamp} "
            f"in {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class ReindexSummary:
    model_id: int
    shards: list[ShardResult]
    restarted: int
    seconds: float

    def line(self) -> str:
        built = [s for s in self.shards if s.stamp is not None]
        vectors = sum(s.vectors for s in self.shards)
        return (
            f"reindex: model {self.model_id}: {len(built)} shard(s) rebuilt, {len(self.shards) - len(built)} "
            f"up to date, {vectors} vectors, {self.restarted} running actor(s) restarted, "
            f"{self.seconds:.1f} s"
        )


def _config_fingerprint(config: IndexActorConfig) -> dict[str, Any]:
    return asdict(config.index)


def shard_is_current(config: IndexActorConfig, store: SnapshotStore) -> tuple[bool, dict[str, Any] | None]:
    """Whether the shard's current snapshot holds every committed file and deletion, built with this
    configuration; and its description."""
    info = store.current_info(config.snapshot_name)
    if info is None or info.get(CONFIG_KEY) != _config_fingerprint(config):
        return False, info
    if int(info.get("dimension", -1)) != config.dimension:
        return False, info
    engine = make_engine(config.database_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            latest = EmbeddingRepository(session).latest_watermark(model_id=config.model_id)
    finally:
        engine.dispose()
    if int(info.get("watermark", -1)) < latest:
        return False, info
    source = _source(config)
    try:
        _, deleted = source.deletions_after(int(info.get("deletion_watermark", 0)))
    finally:
        source.close()
    return len(deleted) == 0, info


def _source(config: IndexActorConfig) -> ManifestVectorSource:
    return ManifestVectorSource(
        database_url=config.database_url,
        storage_uri=config.storage_uri,
        model_id=config.model_id,
        level=config.level,
        shard=config.shard,
        shards=config.shards,
    )


def build_shard(config: IndexActorConfig, force: bool) -> ShardResult:
    """Build one shard from the manifest and write its snapshot (a Ray task; plain values in and out)."""
    started = time.perf_counter()
    store = SnapshotStore(config.storage_uri)
    current, info = shard_is_current(config, store)
    if current and not force and info is not None:
        vectors = int(info.get("live_vectors", -1))
        return ShardResult(config.snapshot_name, vectors, int(info["watermark"]), None, 0.0)
    source = _source(config)
    try:
        index = VectorIndex(dimension=config.dimension, source=source, config=config.index)
        while index.catch_up():  # deletions come in pages: until nothing is left to apply
            pass
        if index.needs_rebuild():
            index.rebuild()
        snap = index.snapshot(
            model_id=config.model_id,
            level=config.level,
            live_vectors=index.size,
            **{CONFIG_KEY: _config_fingerprint(config)},
        )
    finally:
        source.close()
    arrays, described = snapshot_arrays(snap)
    stamp = store.save(config.snapshot_name, arrays, described)
    result = ShardResult(
        config.snapshot_name, index.size, snap.watermark, stamp, time.perf_counter() - started
    )
    logger.info("reindex %s", result.line())
    return result


def snapshot_levels(storage_uri: str, model_id: int) -> list[str]:
    """The levels of a model entry's index that have snapshots (the document level always)."""
    store = SnapshotStore(storage_uri)
    levels = ["document"]
    for level in LEVELS:
        folder = f"{store.root}/{SNAPSHOT_DIR}/model={model_id}/{level}"
        if level not in levels and store.fs.get_file_info(folder).type == pafs.FileType.Directory:
            levels.append(level)
    return levels


def restart_actors(configs: list[IndexActorConfig]) -> int:
    """Restart the running actors of these shards (Ray starts each again; it loads its new snapshot)."""
    restarted = 0
    for config in configs:
        name = index_actor_name(config.model_id, config.shard, level=config.level, shards=config.shards)
        try:
            actor = ray.get_actor(name, namespace=config.namespace)
        except ValueError:
            continue  # not running: it loads the new snapshot when it starts
        ray.kill(actor, no_restart=False)
        restarted += 1
    return restarted


def run_reindex(
    configs: list[IndexActorConfig],
    *,
    force: bool = False,
    restart: bool = False,
    num_cpus: float = 1.0,
    placement_timeout_s: float = 10.0,
) -> ReindexSummary:
    """Build every shard of ``configs`` as Ray tasks (Ray must be initialised); then restart the running
    actors of the shards rebuilt when ``restart``."""
    if not configs:
        raise ValueError("run_reindex needs at least one shard config")
    started = time.perf_counter()
    wait_placeable(
        "reindex", [Ask("reindex task", num_cpus, setting="--num-cpus")], timeout_s=placement_timeout_s
    )
    task = ray.remote(build_shard).options(num_cpus=num_cpus, max_retries=1)
    results: list[ShardResult] = ray.get([task.remote(config, force) for config in configs])
    rebuilt = [c for c, r in zip(configs, results, strict=True) if r.stamp is not None]
    restarted = restart_actors(rebuilt) if restart else 0
    return ReindexSummary(configs[0].model_id, results, restarted, time.perf_counter() - started)
