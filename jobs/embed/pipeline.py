"""The embedding pipeline: pending documents -> read -> tokenize and chunk -> encode -> vector files.

``run_embed`` is the whole job; ``build`` only wires the Ray Data stages:

1. **read** (``ReadPending`` on a small actor pool, one PostgreSQL connection each): a planned id range
   becomes the documents in it that are still pending; or, with ``input_path``, rows read from Parquet
   are kept if PostgreSQL says they are pending (``FilterPending``);
2. **tokenize** (``TokenizeBatch`` on CPU actors, the model's own tokenizer): the recipe's text is cut
   into token windows with overlap; a blank document gets no chunk and is counted as skipped;
3. **encode** (``EncodeBatch`` on an autoscaling actor pool, ``num_gpus`` per actor on GPU clusters,
   fp16 there): every chunk is encoded from its token ids, document vectors are the normalised mean of
   their chunks, and the block becomes one durable Parquet file whose manifest entry is returned.

A small delta (at most ``inline_max`` documents) skips Ray Data: the same stages run in the calling
process with a model it keeps loaded (``jobs.embed.inline``; the CMS scheduler embeds edits so).

The driver commits each manifest row as it arrives, so a crash loses at most the files not yet
committed (their documents are pending again on the next run, and the orphan files are never read).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
import ray
import ray.data

from cluster.ground import ray_metrics
from cluster.ground.metrics import EMBED_ERRORS
from jobs.embed.encode import ModelInfo
from jobs.embed.inline import embed_inline
from jobs.embed.registry import entry_spec, info_of
from jobs.embed.stages import EncodeBatch, FilterPending, ReadPending, TokenizeBatch
from jobs.errors import EmbedBusy
from jobs.placement import Ask, free_resources, wait_placeable
from jobs.progress import JobProgress
from storage.database import make_engine, make_session_factory, session_scope
from storage.document_files import RowGroupRef, list_row_groups
from storage.embeddings import EmbeddingRepository, EmbedRunRepository
from storage.model_registry import ModelRegistry, ModelRow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedJobConfig:
    database_url: str
    storage_uri: str
    model_name: str
    model_id: int | None = None  # a registry entry; overrides model_name and recipe
    index_name: str = "default"
    recipe: dict[str, Any] | None = None  # None: the default recipe
    device: str = "auto"
    batch_size: int = 64
    gpu_batch_size: int = 512
    min_actors: int = 1
    max_actors: int | None = None
    cpus_per_actor: float | None = None  # None: 1 with a GPU; CPU-only, the CPUs left split evenly
    gpus_per_actor: float | None = None  # None: 1 when the cluster has GPUs and device is not cpu
    tokenize_actors: int | None = None  # None: 1, or 2 per GPU encoder
    tokenize_cpus: float = 0.25
    cpu_label_selector: dict[str, str] = field(default_factory=dict)
    rows_per_file: int = 4096
    placement_timeout_s: float = 10.0
    input_path: str | None = None
    full: bool = False
    progress: bool = True
    lock_wait_s: float = 0.0  # wait this long for another run of the entry to finish (0: refuse at once)
    # At most this many pending documents (and no input_path): embed them in this process with a model it
    # keeps loaded (jobs.embed.inline), not with the Ray Data pipeline. 0: always the pipeline.
    inline_max: int = 0


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
    chunks: int = 0
    tokens: int = 0
    run_id: int | None = None
    actor_encode_s: float = 0.0  # summed over actors: time inside encode + write
    actor_load_s: float = 0.0  # summed over actors: model loading
    actor_peak_rss_mb: float = 0.0  # largest encoder process
    devices: tuple[str, ...] = ()
    # stage -> node id -> encoded blocks it handled (tokenize: blocks holding rows tokenized there)
    placement: dict[str, dict[str, int]] = field(default_factory=dict)

    def line(self) -> str:
        rate = self.embedded / self.seconds if self.seconds > 0 else 0.0
        return (
            f"embed: model {self.model_name} (id {self.model_id}): {self.embedded} embedded "
            f"({self.chunks} chunks, {self.tokens:,} tokens), {self.skipped_empty} skipped (empty text), "
            f"{self.files} files, {self.seconds:.1f} s ({rate:,.0f} docs/s, up to {self.actors} encoders"
            f"{' on ' + '/'.join(self.devices) if self.devices else ''})"
        )

    def as_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class PoolPlan:
    """How many actors of each stage and what each reserves."""

    encoders: int
    encoder_cpus: float
    encoder_gpus: float
    threads: int
    tokenizers: int
    tokenize_cpus: float

    def asks(self, cfg: EmbedJobConfig) -> list[Ask]:
        """The smallest set that must run at once: a reader, a tokenizer and the pool's minimum encoders."""
        labels = dict(cfg.cpu_label_selector)
        setting = "PULSE_EMBED__TOKENIZE_CPUS"
        return [
            Ask("read actor", self.tokenize_cpus, setting=setting, labels=labels),
            Ask("tokenize actor", self.tokenize_cpus, setting=setting, labels=labels),
            Ask(
                "encoder actor",
                self.encoder_cpus,
                self.encoder_gpus,
                count=min(cfg.min_actors, self.encoders),
                setting="PULSE_EMBED__GPUS_PER_ACTOR" if self.encoder_gpus else "PULSE_EMBED__CPUS_PER_ACTOR",
            ),
        ]


def plan_pools(
    cfg: EmbedJobConfig, resources: dict[str, float], *, total: dict[str, float] | None = None
) -> PoolPlan:
    """Pool sizes from the resources free for the job (``resources``: what running services leave):
    GPUs when the cluster has them (``total``; default ``resources``) and the device allows, else CPUs.

    Without GPUs there is one encoder per free CPU, rounded up (1.25 CPUs left beside the read and
    tokenize actors give two encoders of 0.62 CPU and one torch thread each: both cores work)."""
    total_cpus = float(resources.get("CPU", 1.0))
    free_gpus = float(resources.get("GPU", 0.0))
    gpus = cfg.gpus_per_actor
    if gpus is None:
        has_gpus = float((total or resources).get("GPU", 0.0)) >= 1
        gpus = 1.0 if has_gpus and cfg.device != "cpu" else 0.0
    if gpus > 0:
        encoders = cfg.max_actors or max(1, int(free_gpus // gpus))
        tokenizers = cfg.tokenize_actors or 2 * encoders
        cpus = cfg.cpus_per_actor if cfg.cpus_per_actor is not None else 1.0
        return PoolPlan(encoders, cpus, gpus, max(1, int(cpus)), tokenizers, cfg.tokenize_cpus)
    tokenizers = cfg.tokenize_actors or 1
    # Readers and tokenizers reserve a little; the encoders split the rest, one torch thread per CPU.
    reserved = 2 * tokenizers * cfg.tokenize_cpus
    encoders = cfg.max_actors or max(1, math.ceil(round(total_cpus - reserved, 2)))
    if cfg.cpus_per_actor is not None:
        cpus = cfg.cpus_per_actor
    else:
        cpus = max(0.1, min(1.0, math.floor((total_cpus - reserved) / encoders * 100) / 100))
    return PoolPlan(encoders, cpus, 0.0, max(1, round(cpus)), tokenizers, cfg.tokenize_cpus)


#: Blocks per actor the job aims for: small enough that the last blocks do not leave actors idle.
BLOCKS_PER_ACTOR = 16


def plan_blocks(n_rows: int, *, actors: int, rows_per_file: int, min_rows: int) -> int:
    """Rows per block (one block, one encode call, one file): ~16 blocks per actor, within bounds."""
    if n_rows == 0:
        return min_rows
    per_block = math.ceil(n_rows / max(1, actors * BLOCKS_PER_ACTOR))
    return max(min_rows, min(rows_per_file, per_block))


def build(
    source: ray.data.Dataset,
    *,
    info: ModelInfo,
    entry: ModelRow,
    cfg: EmbedJobConfig,
    plan: PoolPlan,
    cutoff: datetime | None,
    rows: int,
) -> ray.data.Dataset:
    """Wire the stages: read (or filter) -> tokenize on CPU actors -> encode on an autoscaling pool."""
    cpu_stage: dict[str, Any] = {"num_cpus": plan.tokenize_cpus}
    if cfg.cpu_label_selector:
        cpu_stage["label_selector"] = dict(cfg.cpu_label_selector)
    reader_kwargs: dict[str, Any] = {
        "database_url": cfg.database_url,
        "model_id": entry.id,
        "cutoff": cutoff,
    }
    if cfg.input_path:
        reader_kwargs["input_path"] = cfg.input_path
    read = source.map_batches(
        FilterPending if cfg.input_path else ReadPending,
        batch_size=None,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=plan.tokenizers),
        fn_constructor_kwargs=reader_kwargs,
        **cpu_stage,
    )
    tokenized = read.map_batches(
        TokenizeBatch,
        batch_size=None,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=plan.tokenizers),
        fn_constructor_kwargs={"model": asdict(info), "recipe": entry.recipe},
        **cpu_stage,
    )
    return tokenized.map_batches(
        EncodeBatch,
        # One block, one file; Ray Data wants an explicit batch size for GPU stages: the planned block.
        batch_size=rows if plan.encoder_gpus else None,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(
            min_size=min(cfg.min_actors, plan.encoders),
            max_size=plan.encoders,
            # One block running and one queued per actor: dynamic balance, no static split of the tail.
            max_tasks_in_flight_per_actor=2,
        ),
        num_cpus=plan.encoder_cpus,
        num_gpus=plan.encoder_gpus or None,
        fn_constructor_kwargs={
            "model": asdict(info),
            "model_id": entry.id,
            "storage_uri": cfg.storage_uri,
            "device": cfg.device,
            "batch_size": cfg.batch_size,
            "gpu_batch_size": cfg.gpu_batch_size,
            "threads": plan.threads,
        },
    )


def _source(ranges: list[Any], row_groups: list[RowGroupRef] | None, rows: int) -> ray.data.Dataset:
    """One input block per unit of reading: a planned id range, or Parquet row groups of ~``rows``.

    Reading happens in the read actors (which reserve their CPUs), not in Ray Data read tasks that
    would each want a whole CPU beside encoders holding the rest.
    """
    if row_groups is not None:
        blocks: list[list[dict[str, Any]]] = [[]]
        filled = 0
        for ref in row_groups:
            if filled >= rows:
                blocks.append([])
                filled = 0
            blocks[-1].append({"path": ref.path, "row_group": ref.row_group})
            filled += ref.rows
        return ray.data.from_arrow([pa.Table.from_pylist(b) for b in blocks])
    items = [{"lo": r.lo, "hi": r.hi} for r in ranges]
    return ray.data.from_items(items, override_num_blocks=len(items))


def run_embed(cfg: EmbedJobConfig) -> EmbedSummary:
    """Embed every document lacking a current vector for the model entry; needs Ray only if there is work.

    The model is resolved and the recipe checked before anything else, so a bad model name or recipe
    fails at once. Runs of one entry are exclusive (``EmbedBusy``, after ``lock_wait_s`` of waiting).
    """
    start = time.perf_counter()
    # A missing or malformed Parquet input fails here, before any work; the row groups are read once.
    row_groups = list_row_groups(cfg.input_path) if cfg.input_path else None
    spec = (
        None
        if cfg.model_id is not None
        else entry_spec(cfg.model_name, recipe=cfg.recipe, index_name=cfg.index_name)[1]
    )
    engine = make_engine(cfg.database_url, pool_size=2)
    sessions = make_session_factory(engine)
    lock_session = sessions()
    try:
        with session_scope(sessions) as session:
            registry = ModelRegistry(session)
            if cfg.model_id is not None:
                entry = registry.get(cfg.model_id)
            else:
                assert spec is not None
                entry = registry.register(spec, activate_if_none=True)
        info = info_of(entry)
        runs = EmbedRunRepository(lock_session)
        if not runs.lock(entry.id, wait_s=cfg.lock_wait_s):
            raise EmbedBusy(entry.id)
        lock_session.commit()
        try:
            with session_scope(sessions) as session:
                run = EmbedRunRepository(session).start(model_id=entry.id, full=cfg.full)
            try:
                summary = _run_locked(
                    cfg,
                    sessions,
                    info=info,
                    entry=entry,
                    run_id=run.id,
                    cutoff=run.cutoff if cfg.full else None,
                    start=start,
                    row_groups=row_groups,
                )
            except BaseException as exc:
                ray_metrics.inc(EMBED_ERRORS, kind=type(exc).__name__)
                with session_scope(sessions) as session:
                    EmbedRunRepository(session).finish(run.id, status="failed", summary={})
                raise
            with session_scope(sessions) as session:
                EmbedRunRepository(session).finish(run.id, status="done", summary=summary.as_json())
            return summary
        finally:
            runs.unlock(entry.id)
            lock_session.commit()
    finally:
        lock_session.close()
        engine.dispose()


def _run_locked(
    cfg: EmbedJobConfig,
    sessions: Any,
    *,
    info: ModelInfo,
    entry: ModelRow,
    run_id: int,
    cutoff: datetime | None,
    start: float,
    row_groups: list[RowGroupRef] | None,
) -> EmbedSummary:
    with session_scope(sessions) as session:
        total = EmbeddingRepository(session).count_pending(model_id=entry.id, cutoff=cutoff)
    if total == 0:
        return EmbedSummary(entry.id, entry.name, 0, 0, 0, 0, 0, time.perf_counter() - start, run_id=run_id)
    rows_out: Iterable[dict[str, Any]]
    if cfg.inline_max and cutoff is None and not cfg.input_path and total <= cfg.inline_max:
        logger.info("embedding %d documents with %s (entry %d) in this process", total, info.name, entry.id)
        encoders = 1
        rows_out = embed_inline(
            sessions,
            info=info,
            entry=entry,
            storage_uri=cfg.storage_uri,
            device=cfg.device,
            batch_size=cfg.batch_size,
            gpu_batch_size=cfg.gpu_batch_size,
        )
    else:
        encoders, rows_out = _pipeline_rows(
            cfg, sessions, info=info, entry=entry, cutoff=cutoff, total=total, row_groups=row_groups
        )
    totals = {"embedded": 0, "skipped": 0, "files": 0, "chunks": 0, "tokens": 0}
    encode_s = load_s = peak = 0.0
    devices: set[str] = set()
    placement: dict[str, dict[str, int]] = {"encode": {}, "tokenize": {}}
    with JobProgress(total=total, label="embedding", enabled=cfg.progress) as progress:
        for row in rows_out:
            if row["path"]:
                with session_scope(sessions) as session:
                    EmbeddingRepository(session).record_vector_file(
                        model_id=entry.id,
                        path=row["path"],
                        document_ids=row["document_ids"],
                        content_hashes=row["content_hashes"],
                        chunk_counts=row["chunk_counts"],
                        row_count=row["rows"],
                    )
                totals["files"] += 1
            n = len(row["document_ids"])
            totals["embedded"] += n
            totals["skipped"] += int(row["skipped"])
            totals["chunks"] += int(row["chunks"])
            totals["tokens"] += int(row["tokens"])
            encode_s += float(row["encode_s"])
            load_s += float(row["load_s"])
            peak = max(peak, float(row["peak_rss_mb"]))
            devices.add(str(row["device"]))
            placement["encode"][row["node"]] = placement["encode"].get(row["node"], 0) + 1
            for node in row["tokenize_nodes"]:
                placement["tokenize"][node] = placement["tokenize"].get(node, 0) + 1
            progress.advance(n + int(row["skipped"]))
    return EmbedSummary(
        entry.id,
        entry.name,
        total,
        totals["embedded"],
        totals["skipped"],
        totals["files"],
        encoders,
        time.perf_counter() - start,
        chunks=totals["chunks"],
        tokens=totals["tokens"],
        run_id=run_id,
        actor_encode_s=encode_s,
        actor_load_s=load_s,
        actor_peak_rss_mb=peak,
        devices=tuple(sorted(devices)),
        placement=placement,
    )


def _pipeline_rows(
    cfg: EmbedJobConfig,
    sessions: Any,
    *,
    info: ModelInfo,
    entry: ModelRow,
    cutoff: datetime | None,
    total: int,
    row_groups: list[RowGroupRef] | None,
) -> tuple[int, Iterable[dict[str, Any]]]:
    """Plan and place the Ray Data pipeline; its encoders at most and the encode stage's rows."""
    plan = plan_pools(cfg, free_resources(), total=ray.cluster_resources())  # type: ignore[no-untyped-call]
    wait_placeable(
        f"the embed job (model entry {entry.id})", plan.asks(cfg), timeout_s=cfg.placement_timeout_s
    )
    rows = plan_blocks(total, actors=plan.encoders, rows_per_file=cfg.rows_per_file, min_rows=cfg.batch_size)
    ranges: list[Any] = []
    if not cfg.input_path:
        with session_scope(sessions) as session:
            repo = EmbeddingRepository(session)
            ranges = list(repo.plan_ranges(model_id=entry.id, cutoff=cutoff, rows_per_range=rows))
    logger.info(
        "embedding %d documents with %s (entry %d) in blocks of %d on up to %d encoders (%s)",
        total,
        info.name,
        entry.id,
        rows,
        plan.encoders,
        "GPU" if plan.encoder_gpus else "CPU",
    )
    # The job reports its own progress (documents committed); Ray Data's per-operator bars are off.
    ray.data.DataContext.get_current().enable_progress_bars = False
    dataset = build(
        _source(ranges, row_groups, rows),
        info=info,
        entry=entry,
        cfg=cfg,
        plan=plan,
        cutoff=cutoff,
        rows=rows,
    )
    return plan.encoders, dataset.iter_rows()
