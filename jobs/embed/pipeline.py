"""The embedding pipeline: pending documents -> encode on an actor pool -> vector files -> manifest.

``run_embed`` is the whole job; ``build`` only wires the Ray Data stages. The actor pool loads the model
once per actor (``EmbedBatch.__init__``), encodes a block, writes it to one Parquet file under the storage
URI and returns the file's manifest entry; the driver commits each manifest row as it arrives, so a crash
loses at most the files not yet committed (their documents are simply embedded again on the next run).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import ray
import ray.data

from jobs.embed.encode import ModelInfo, describe_model, encode, load_model
from jobs.embed.text import embedding_text
from jobs.progress import JobProgress
from storage.database import make_engine, make_session_factory, session_scope
from storage.embeddings import EmbeddingRepository
from storage.vector_files import VectorFileStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedJobConfig:
    database_url: str
    storage_uri: str
    model_name: str
    device: str = "auto"
    batch_size: int = 64
    min_actors: int = 1
    max_actors: int | None = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    rows_per_file: int = 4096
    full: bool = False
    progress: bool = True


@dataclass(frozen=True)
class EmbedSummary:
    model_id: int
    model_name: str
    pending: int
    embedded: int
    skipped_empty: int
    files: int
    actors: int
    seconds: float
    actor_encode_s: float = 0.0  # summed over actors: time inside encode + write
    actor_load_s: float = 0.0  # summed over actors: model loading

    def line(self) -> str:
        rate = self.embedded / self.seconds if self.seconds > 0 else 0.0
        return (
            f"embed: model {self.model_name} (id {self.model_id}): {self.embedded} embedded, "
            f"{self.skipped_empty} skipped (empty text), {self.files} files, "
            f"{self.seconds:.1f} s ({rate:,.0f} docs/s, {self.actors} actors)"
        )


class EmbedBatch:
    """``map_batches`` callable: one model per actor; each block becomes one durable vector file."""

    def __init__(
        self,
        *,
        model: dict[str, Any],
        model_id: int,
        storage_uri: str,
        device: str,
        batch_size: int,
        threads: int,
    ) -> None:
        started = time.perf_counter()
        self._info = ModelInfo(**model)
        self._model = load_model(self._info, device=device, threads=threads)
        self._load_s = time.perf_counter() - started
        self._model_id = model_id
        self._store = VectorFileStore(storage_uri)
        self._batch_size = batch_size

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.perf_counter()
        ids = batch.column("id").to_numpy()
        hashes = batch.column("content_hash").to_pylist()
        vectors = encode(
            self._model,
            batch.column("text").to_pylist(),
            batch_size=self._batch_size,
            normalize=self._info.normalize,
        )
        path = self._store.write(
            model_id=self._model_id, document_ids=ids, content_hashes=hashes, vectors=vectors
        )
        load_s, self._load_s = self._load_s, 0.0  # reported once per actor
        return pa.table(
            {
                "path": [path],
                "encode_s": [time.perf_counter() - started],
                "load_s": [load_s],
                "document_ids": pa.array([ids.tolist()], type=pa.list_(pa.int64())),
                "content_hashes": pa.array([hashes], type=pa.list_(pa.string())),
            }
        )


#: Blocks per actor the job aims for: small enough that the last blocks do not leave actors idle.
BLOCKS_PER_ACTOR = 16


def plan_blocks(n_rows: int, *, actors: int, rows_per_file: int, min_rows: int) -> int:
    """Rows per block (one block, one encode call, one file): ~16 blocks per actor, within bounds."""
    if n_rows == 0:
        return min_rows
    per_block = math.ceil(n_rows / max(1, actors * BLOCKS_PER_ACTOR))
    return max(min_rows, min(rows_per_file, per_block))


def build(
    blocks: list[pa.Table], *, info: ModelInfo, model_id: int, cfg: EmbedJobConfig, actors: int
) -> ray.data.Dataset:
    """Wire the stages: blocks of pending rows -> EmbedBatch on an autoscaling actor pool."""
    return ray.data.from_arrow(blocks).map_batches(
        EmbedBatch,
        batch_size=None,  # one block, one encode call, one file
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(
            min_size=min(cfg.min_actors, actors),
            max_size=actors,
            # One block running and one queued per actor: dynamic balance, no static split of the tail.
            max_tasks_in_flight_per_actor=2,
        ),
        num_cpus=cfg.cpus_per_actor,
        num_gpus=cfg.gpus_per_actor or None,
        fn_constructor_kwargs={
            "model": asdict(info),
            "model_id": model_id,
            "storage_uri": cfg.storage_uri,
            "device": cfg.device,
            "batch_size": cfg.batch_size,
            "threads": max(1, int(cfg.cpus_per_actor)),
        },
    )


def _pool_size(cfg: EmbedJobConfig) -> int:
    if cfg.max_actors:
        return cfg.max_actors
    resource = "GPU" if cfg.gpus_per_actor else "CPU"
    per_actor = cfg.gpus_per_actor or cfg.cpus_per_actor
    total = float(ray.cluster_resources().get(resource, 1.0))  # type: ignore[no-untyped-call]
    return max(1, int(total // per_actor))


def run_embed(cfg: EmbedJobConfig) -> EmbedSummary:
    """Embed every document lacking a current vector for the model; needs Ray only if there is work."""
    start = time.perf_counter()
    info = describe_model(cfg.model_name)  # fails fast, before any work, on an unknown model
    engine = make_engine(cfg.database_url, pool_size=1)
    sessions = make_session_factory(engine)
    try:
        with session_scope(sessions) as session:
            repo = EmbeddingRepository(session)
            model = repo.register_model(
                name=info.name, revision=info.revision, dimension=info.dimension, normalize=info.normalize
            )
            ids: list[int] = []
            hashes: list[str] = []
            texts: list[str] = []
            skipped = 0
            after = 0
            while True:
                page = repo.pending_documents(model_id=model.id, after_id=after, full=cfg.full)
                if not page:
                    break
                after = page[-1].id
                for doc in page:
                    text = embedding_text(doc.title, doc.text)
                    if not text:
                        skipped += 1
                        continue
                    ids.append(doc.id)
                    hashes.append(doc.content_hash)
                    texts.append(text)
        if not ids:
            summary = EmbedSummary(model.id, model.name, 0, 0, skipped, 0, 0, time.perf_counter() - start)
            return summary

        actors = _pool_size(cfg)
        # Similar lengths in a block mean less padding inside each encode call.
        order = np.argsort(
            np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts)), kind="stable"
        )
        table = pa.table(
            {
                "id": pa.array(np.asarray(ids, dtype=np.int64)[order]),
                "content_hash": pa.array([hashes[i] for i in order], type=pa.string()),
                "text": pa.array([texts[i] for i in order], type=pa.string()),
            }
        )
        rows = plan_blocks(len(ids), actors=actors, rows_per_file=cfg.rows_per_file, min_rows=cfg.batch_size)
        blocks = [table.slice(offset, rows) for offset in range(0, table.num_rows, rows)]
        logger.info(
            "embedding %d documents with %s in %d blocks on up to %d actors",
            len(ids),
            info.name,
            len(blocks),
            actors,
        )
        # The job reports its own progress (documents committed); Ray Data's per-operator bars are off.
        ray.data.DataContext.get_current().enable_progress_bars = False
        dataset = build(blocks, info=info, model_id=model.id, cfg=cfg, actors=actors)
        embedded = 0
        files = 0
        encode_s = 0.0
        load_s = 0.0
        with JobProgress(total=len(ids), label="embedding", enabled=cfg.progress) as progress:
            for row in dataset.iter_rows():
                with session_scope(sessions) as session:
                    EmbeddingRepository(session).record_vector_file(
                        model_id=model.id,
                        path=row["path"],
                        document_ids=row["document_ids"],
                        content_hashes=row["content_hashes"],
                    )
                n = len(row["document_ids"])
                encode_s += float(row["encode_s"])
                load_s += float(row["load_s"])
                embedded += n
                files += 1
                progress.advance(n)
        summary = EmbedSummary(
            model.id,
            model.name,
            len(ids),
            embedded,
            skipped,
            files,
            actors,
            time.perf_counter() - start,
            actor_encode_s=encode_s,
            actor_load_s=load_s,
        )
        return summary
    finally:
        engine.dispose()
