"""The collect job: due sources -> rounds of (fetch per host partition -> extract -> store) -> summary.

``run_collect`` is the whole job; ``build_round`` only wires one round's Ray Data stages:

1. ``fetch_partition`` (tasks, ``fetch_cpus`` each): one task per partition of hosts runs an asyncio
   ``Fetcher`` over its URLs and yields fetched records as they complete; each yielded chunk is first
   written to the raw Parquet log.
2. ``process_batch`` (tasks): extraction and parsing on the CPUs running services leave free, one task
   per free CPU, each reserving its share (``plan_resources``; fractional beside a running platform).
3. ``StoreBatch`` (a small actor pool): one transaction per record; the frontier marks the URL done in it.

Before a run is recorded, ``wait_placeable`` checks that one task of each stage and the store actors fit
what is free, and fails within ``placement_timeout_s`` naming what is missing (``jobs.placement``).

A round fetches everything pending; what it discovers (feed items, child sitemaps) is fetched by the next
round, until nothing is pending or ``max_rounds`` is reached.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit
from urllib.request import url2pathname

import pyarrow as pa
import ray
import ray.data

from jobs.collect.errors import CollectBusy, FetchErrorCode
from jobs.collect.fetch import Fetcher, FetchPolicy, FetchRequest, FetchResult
from jobs.collect.plan import partition, roots
from jobs.collect.process import process_record
from jobs.collect.store import COUNTERS, StoreBatch
from jobs.placement import Ask, free_resources, wait_placeable
from jobs.progress import JobProgress
from storage.database import make_engine, make_session_factory, session_scope
from storage.frontier import FrontierRepository, RunRepository
from storage.raw_files import RawFileStore
from storage.sources import SourceRepository, SourceRow

logger = logging.getLogger(__name__)

#: Fetched records per yielded chunk (and raw Parquet file) of a fetch task.
CHUNK_RECORDS = 32
#: Longest a fetch task holds finished records before yielding them.
CHUNK_SECONDS = 2.0
#: Largest block while a round runs: small, so each fetched chunk reaches extraction at once instead of
#: waiting in the fetch task's output buffer until the task ends (Ray Data's default is 128 MiB).
ROUND_MAX_BLOCK_BYTES = 256 * 1024
#: CPUs reserved by each store actor (it waits on PostgreSQL).
STORE_CPUS = 0.1
#: Least CPUs an extraction task reserves when it sizes itself from what is free.
MIN_EXTRACT_CPUS = 0.1


@dataclass(frozen=True)
class CollectJobConfig:
    database_url: str
    storage_uri: str
    policy: FetchPolicy
    sources: tuple[str, ...] = ()
    force: bool = False
    fetch_partitions: int | None = None
    fetch_cpus: float = 0.05
    extract_batch_size: int = 8
    extract_cpus: float | None = None  # None: sized from the free CPUs (plan_resources)
    placement_timeout_s: float = 10.0
    store_actors: int = 1
    near_duplicate_threshold: float = 0.8
    max_depth: int = 3
    max_rounds: int = 5
    progress: bool = True


@dataclass
class CollectSummary:
    run_id: int | None  # None: nothing was due, no run recorded
    sources: int
    rounds: int = 0
    fetched: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    failed_by_reason: Counter[str] = field(default_factory=Counter)
    pending_left: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "sources": self.sources,
            "rounds": self.rounds,
            "fetched": self.fetched,
            **{name: self.counts[name] for name in COUNTERS},
            "failed_by_reason": dict(self.failed_by_reason),
            "pending_left": self.pending_left,
            "seconds": round(self.seconds, 2),
        }

    def line(self) -> str:
        if self.run_id is None:
            return "collect: no source is due (`pulse collect --force` collects them now)"
        c = self.counts
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.failed_by_reason.items())) or "none"
        left = f", {self.pending_left} still pending (run again)" if self.pending_left else ""
        return (
            f"collect run {self.run_id}: {self.sources} sources, {self.rounds} rounds, "
            f"{self.fetched} fetched: {c['new']} new, {c['updated']} updated, {c['unchanged']} unchanged, "
            f"{c['duplicates']} duplicates, "
            f"{c['discovered']} URLs discovered ({c['filtered']} filtered), {c['failed']} failed "
            f"(by reason: {reasons}){left}, {self.seconds:.1f} s"
        )


# --------------------------------------------------------------------------- stage 1: fetch


def _record(row: dict[str, Any], result: FetchResult) -> dict[str, Any]:
    return {
        "url": row["url"],
        "source_id": row["source_id"],
        "kind": row["kind"],
        "depth": row["depth"],
        "hint": json.dumps(row.get("hint") or {}),
        "final_url": result.final_url,
        "status": result.status,
        "error": result.error,
        "error_detail": result.error_detail,
        "content_type": result.content_type,
        "charset": result.charset,
        "etag": result.etag,
        "last_modified": result.last_modified,
        "fetched_at": result.fetched_at,
        "elapsed_s": result.elapsed_s,
        "retry_after_s": result.retry_after_s,
        "body": result.body,
        "text": result.text,
    }


def _local_record(row: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """A local file read as a fetch would have read it (JSONL files are parsed later, from their path)."""
    path = Path(url2pathname(urlsplit(row["url"]).path))
    started = time.perf_counter()
    body: bytes = b""
    error: FetchErrorCode | None = None
    detail: str | None = None
    try:
        size = path.stat().st_size
        if path.suffix.lower() != ".jsonl" and size > max_bytes:
            error, detail = FetchErrorCode.TOO_LARGE, f"{path} is {size} bytes, over the {max_bytes} cap"
        elif path.suffix.lower() != ".jsonl":
            body = path.read_bytes()
    except OSError as exc:
        error, detail = FetchErrorCode.FILE_ERROR, f"cannot read {path}: {exc}"
    result = FetchResult(
        url=row["url"],
        final_url=row["url"],
        status=None,
        body=body,
        text=None,
        content_type=None,
        charset=None,
        etag=None,
        last_modified=None,
        redirects=(),
        attempts=0,
        elapsed_s=time.perf_counter() - started,
        fetched_at=datetime.now(UTC),
        error=error,
        error_detail=detail,
    )
    return _record(row, result)


def fetch_partition(batch: Any, *, policy: FetchPolicy, storage_uri: str, run_id: int) -> Iterator[Any]:
    """Fetch every URL of the partitions in ``batch`` (one per row), yielding chunks as they complete."""
    raw = RawFileStore(storage_uri)
    for requests_json in batch["requests"]:
        rows: list[dict[str, Any]] = json.loads(requests_json)
        web = [r for r in rows if r["kind"] != "file"]
        local = [r for r in rows if r["kind"] == "file"]
        chunk: list[dict[str, Any]] = [_local_record(r, policy.max_bytes) for r in local]
        last = time.monotonic()
        for record in _fetch_web(web, policy):
            chunk.append(record)
            if len(chunk) >= CHUNK_RECORDS or time.monotonic() - last >= CHUNK_SECONDS:
                yield _flush(chunk, raw, run_id)
                chunk, last = [], time.monotonic()
        if chunk:
            yield _flush(chunk, raw, run_id)


def _flush(chunk: list[dict[str, Any]], raw: RawFileStore, run_id: int) -> pa.Table:
    raw.write([r for r in chunk if r["kind"] != "file"], run_id=run_id, day=datetime.now(UTC))
    return pa.Table.from_pylist(chunk)


def _fetch_web(rows: list[dict[str, Any]], policy: FetchPolicy) -> Iterator[dict[str, Any]]:
    """Run the asyncio fetcher in a thread and hand its results over as they complete."""
    if not rows:
        return
    done: queue.Queue[dict[str, Any] | BaseException | None] = queue.Queue(maxsize=4 * CHUNK_RECORDS)
    by_url = {r["url"]: r for r in rows}

    async def run() -> None:
        requests = [
            FetchRequest(
                r["url"],
                kind="page" if r["kind"] == "site" else r["kind"],
                etag=r.get("etag"),
                last_modified=r.get("last_modified"),
            )
            for r in rows
        ]
        async with Fetcher(policy) as fetcher:
            async for result in fetcher.fetch_many(requests):
                await asyncio.to_thread(done.put, _record(by_url[result.url], result))

    def thread_main() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:  # handed to the consumer, which re-raises it
            done.put(exc)
        else:
            done.put(None)

    worker = threading.Thread(target=thread_main, name="pulse-fetch", daemon=True)
    worker.start()
    while True:
        item = done.get()
        if item is None:
            break
        if isinstance(item, BaseException):
            raise item
        yield item
    worker.join()


# --------------------------------------------------------------------------- stage 2: process


def process_batch(batch: Any, *, sources: dict[int, SourceRow]) -> Any:
    return pa.Table.from_pylist([process_record(rec, sources=sources) for rec in batch.to_pylist()])


# --------------------------------------------------------------------------- wiring


@dataclass(frozen=True)
class ResourcePlan:
    """What each stage of a round reserves, sized from the CPUs free when the run starts."""

    fetch_tasks: int
    fetch_cpus: float
    extract_tasks: int  # at most this many extraction tasks at once
    extract_cpus: float
    store_actors: int
    store_cpus: float = STORE_CPUS

    def asks(self) -> list[Ask]:
        """The smallest set that must run at once for a round to progress: one of each stage."""
        return [
            Ask("fetch task", self.fetch_cpus, setting="PULSE_COLLECT__FETCH_CPUS"),
            Ask("extraction task", self.extract_cpus, setting="PULSE_COLLECT__EXTRACT_CPUS"),
            Ask(
                "store actor", self.store_cpus, count=self.store_actors, setting="PULSE_COLLECT__STORE_ACTORS"
            ),
        ]

    def describe(self) -> str:
        return (
            f"{self.fetch_tasks} fetch tasks x {self.fetch_cpus:g} CPU, up to {self.extract_tasks} "
            f"extraction tasks x {self.extract_cpus:g} CPU, {self.store_actors} store actors x "
            f"{self.store_cpus:g} CPU"
        )


def plan_resources(cfg: CollectJobConfig, *, free_cpus: float, fetch_tasks: int) -> ResourcePlan:
    """Extraction gets what the fetch tasks and store actors leave of ``free_cpus``: one task per free
    CPU (rounded up, so 1.45 CPUs give two tasks and both cores work), each reserving its share."""
    rest = free_cpus - fetch_tasks * cfg.fetch_cpus - cfg.store_actors * STORE_CPUS
    if cfg.extract_cpus is not None:
        cpus = cfg.extract_cpus
        tasks = max(1, math.floor(round(rest / cpus, 2)))
    else:
        tasks = max(1, math.ceil(round(rest, 2)))
        cpus = max(MIN_EXTRACT_CPUS, min(1.0, math.floor(rest / tasks * 100) / 100))
    return ResourcePlan(fetch_tasks, cfg.fetch_cpus, tasks, cpus, cfg.store_actors)


def build_round(
    partitions: list[list[dict[str, Any]]],
    cfg: CollectJobConfig,
    *,
    run_id: int,
    sources: dict[int, SourceRow],
    plan: ResourcePlan,
) -> ray.data.Dataset:
    items = [{"requests": json.dumps(p, default=str)} for p in partitions]
    ds: ray.data.Dataset = ray.data.from_items(items, override_num_blocks=len(items))
    # Ray's stubs type a UDF as a one-argument callable; ours take keyword-only fn_kwargs.
    ds = ds.map_batches(
        fetch_partition,  # type: ignore[arg-type]
        batch_size=1,
        batch_format="numpy",
        fn_kwargs={"policy": cfg.policy, "storage_uri": cfg.storage_uri, "run_id": run_id},
        num_cpus=cfg.fetch_cpus,
    )
    ds = ds.map_batches(
        process_batch,  # type: ignore[arg-type]
        batch_size=cfg.extract_batch_size,
        batch_format="pyarrow",
        fn_kwargs={"sources": sources},
        # No more tasks than fetch partitions feed it (Ray Data warns, as an error in tests, otherwise).
        compute=ray.data.TaskPoolStrategy(size=max(1, min(plan.extract_tasks, len(partitions)))),
        num_cpus=plan.extract_cpus,
    )
    return ds.map_batches(
        StoreBatch,
        batch_size=cfg.extract_batch_size,
        batch_format="pyarrow",
        fn_constructor_kwargs={
            "database_url": cfg.database_url,
            "run_id": run_id,
            "sources": sources,
            "near_duplicate_threshold": cfg.near_duplicate_threshold,
            "max_depth": cfg.max_depth,
        },
        compute=ray.data.ActorPoolStrategy(size=plan.store_actors),
        num_cpus=plan.store_cpus,
    )


def _consume(ds: ray.data.Dataset, summary: CollectSummary, progress: JobProgress) -> None:
    """Run a round, counting what the store stage reports as it arrives."""
    with progress as bar:
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            table = cast(pa.Table, batch)
            summary.fetched += table.num_rows
            for name in COUNTERS:
                summary.counts[name] += sum(table.column(name).to_pylist())
            for reason in table.column("error").to_pylist():
                if reason:
                    summary.failed_by_reason[reason] += 1
            bar.advance(table.num_rows)


def _default_partitions() -> int:
    return max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))  # type: ignore[no-untyped-call]


def run_collect(cfg: CollectJobConfig) -> CollectSummary:
    """Collect the due sources (or the named ones). Exclusive: a second concurrent run gets CollectBusy."""
    start = time.perf_counter()
    engine = make_engine(cfg.database_url, pool_size=2)
    sessions = make_session_factory(engine)
    lock_session = sessions()
    try:
        runs = RunRepository(lock_session)
        if not runs.try_lock():
            raise CollectBusy()
        lock_session.commit()
        try:
            return _run_locked(cfg, sessions, start)
        finally:
            runs.unlock()
            lock_session.commit()
    finally:
        lock_session.close()
        engine.dispose()


def _run_locked(cfg: CollectJobConfig, sessions: Any, start: float) -> CollectSummary:
    ray.data.DataContext.get_current().enable_progress_bars = False
    with session_scope(sessions) as session:
        due = SourceRepository(session).due(names=cfg.sources, force=cfg.force)
        if not due:  # nothing to do: no run is recorded (``--loop`` checks often)
            return CollectSummary(run_id=None, sources=0, seconds=time.perf_counter() - start)
    fetch_tasks = cfg.fetch_partitions or _default_partitions()
    plan = plan_resources(cfg, free_cpus=free_resources()["CPU"], fetch_tasks=fetch_tasks)
    wait_placeable("the collect job", plan.asks(), timeout_s=cfg.placement_timeout_s)
    logger.info("collect resources: %s", plan.describe())
    with session_scope(sessions) as session:
        run_id = RunRepository(session).start()
        frontier = FrontierRepository(session)
        frontier.seed(roots(due))
        frontier.requeue_retries()
    summary = CollectSummary(run_id=run_id, sources=len(due))
    source_map = {s.id: s for s in due}
    source_ids = list(source_map)
    status = "failed"
    try:
        for round_no in range(1, cfg.max_rounds + 1):
            with session_scope(sessions) as session:
                pending = FrontierRepository(session).pending(source_ids=source_ids)
            if not pending:
                break
            summary.rounds = round_no
            parts = partition(pending, partitions=fetch_tasks)
            logger.info(
                "collect run %d round %d: %d URLs on %d hosts in %d fetch partitions",
                run_id,
                round_no,
                len(pending),
                len({p.host for p in pending}),
                len(parts),
            )
            # A Dataset copies the current DataContext when it is created: set the block size first.
            context = ray.data.DataContext.get_current()
            saved_block_size = context.target_max_block_size
            context.target_max_block_size = ROUND_MAX_BLOCK_BYTES
            ds = build_round(parts, cfg, run_id=run_id, sources=source_map, plan=plan)
            try:
                _consume(
                    ds,
                    summary,
                    JobProgress(total=len(pending), label=f"collect round {round_no}", enabled=cfg.progress),
                )
            finally:
                context.target_max_block_size = saved_block_size
            logger.debug("collect round %d Ray Data stats:\n%s", round_no, ds.stats())
        with session_scope(sessions) as session:
            summary.pending_left = FrontierRepository(session).count_pending(source_ids=source_ids)
            if not summary.pending_left:
                SourceRepository(session).mark_collected(source_ids)
        status = "finished"
    finally:
        summary.seconds = time.perf_counter() - start
        with session_scope(sessions) as session:
            RunRepository(session).finish(run_id, status=status, summary=summary.as_dict())
    logger.debug("%s", summary.line())
    return summary
