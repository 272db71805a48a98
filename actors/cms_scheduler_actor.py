"""The Ray shell around ``CmsScheduler``: one named, detached actor (``pulse-cms-scheduler``) that Ray
restarts after a crash.

The service runs its own asyncio loop in a thread and ticks every ``interval_s``; ``tick_now()`` runs a
tick at once (tests, or a hint after a write) and ``stats()`` answers meanwhile. It holds no state that
matters: due times, cursors and deliveries are in PostgreSQL, so a restarted actor just carries on.

Embedding is injected, not imported (``actors`` never import ``jobs``): ``on_documents_changed`` is a
picklable zero-argument callable, in production ``cluster.top.cms_embed_hook.EmbedCmsDocuments``, which
the top layer that starts the actor (``cluster.top.cms_scheduler``, from `pulse up`) passes in. After a tick
that wrote or deleted documents the service runs it in a worker thread, never two at once; changes that
arrive while it runs make it run once more afterwards, and a failed run is retried after ``embed_retry_s``.
The service also runs it once at start, so documents a crash left unembedded are picked up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import ray
from ray.actor import ActorClass, ActorProxy
from sqlalchemy.ext.asyncio import async_sessionmaker

from actors.cms_scheduler import AiohttpSender, CmsScheduler, TickReport
from cluster.ground.constants import CMS_SCHEDULER_NAME, DEFAULT_NAMESPACE
from storage.database import make_async_engine

logger = logging.getLogger(__name__)


@dataclass
class SchedulerStats:
    """What the scheduler has done since its process started (``stats()``)."""

    pid: int = field(default_factory=os.getpid)
    ticks: int = 0
    tick_errors: int = 0
    last_tick: TickReport | None = None
    last_error: str | None = None
    embeds: int = 0
    embed_errors: int = 0
    last_embed_error: str | None = None
    embedding: bool = False  # the embedding hook runs now
    embed_pending: bool = False  # documents changed since it last ran


@dataclass(frozen=True)
class CmsSchedulerConfig:
    """Everything the scheduler actor needs; plain values so it never reads settings itself."""

    database_url: str
    public_base_url: str
    namespace: str = DEFAULT_NAMESPACE
    interval_s: float = 2.0
    embed: bool = True  # call on_documents_changed after ticks that changed documents
    max_attempts: int = 8
    private_targets: bool = False  # webhooks may reach loopback / private addresses
    http_timeout_s: float = 10.0
    concurrency: int = 8  # webhook requests in flight at once
    embed_retry_s: float = 30.0
    pool_size: int = 4


class CmsSchedulerService:
    def __init__(
        self, config: CmsSchedulerConfig, on_documents_changed: Callable[[], object] | None = None
    ) -> None:
        self._config = config
        self._on_documents_changed = on_documents_changed if config.embed else None
        self._engine = make_async_engine(config.database_url, pool_size=config.pool_size)
        self._sender = AiohttpSender(private_targets=config.private_targets)
        self._core = CmsScheduler(
            async_sessionmaker(self._engine, expire_on_commit=False),
            sender=self._sender,
            public_base_url=config.public_base_url,
            max_attempts=config.max_attempts,
            http_timeout_s=config.http_timeout_s,
            concurrency=config.concurrency,
        )
        self._stats = SchedulerStats()
        self._embed_lock = threading.Lock()
        self._embed_wanted = self._on_documents_changed is not None  # catch up on start
        self._embed_thread: threading.Thread | None = None
        self._embed_not_before = 0.0
        self._stopping = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._tick_lock: asyncio.Lock | None = None
        self._thread = threading.Thread(target=self._run_loop, name="cms-scheduler", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------ loop
    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        try:
            while not self._stopping.is_set():
                await self._tick()
                await asyncio.sleep(self._config.interval_s)
        finally:
            await self._sender.close()
            await self._engine.dispose()

    async def _tick(self) -> TickReport | None:
        if self._tick_lock is None:
            self._tick_lock = asyncio.Lock()
        async with self._tick_lock:
            try:
                report = await self._core.tick()
            except Exception as exc:  # e.g. PostgreSQL down: try again next interval
                logger.exception("cms scheduler tick failed")
                self._stats.tick_errors += 1
                self._stats.last_error = f"{type(exc).__name__}: {exc}"
                report = None
        self._stats.ticks += 1
        if report is not None:
            self._stats.last_tick = report
            if report.errors:
                self._stats.last_error = report.errors[-1]
            if report.documents_changed:
                self._embed_wanted = True
        self._maybe_embed()
        return report

    # ------------------------------------------------------------------------------------- embedding
    def _maybe_embed(self) -> None:
        with self._embed_lock:
            if not self._embed_wanted or self._on_documents_changed is None:
                return
            if self._embed_thread is not None and self._embed_thread.is_alive():
                return  # the running worker sees the flag and runs again
            if time.monotonic() < self._embed_not_before:
                return
            self._embed_thread = threading.Thread(target=self._embed_worker, name="cms-embed", daemon=True)
            self._embed_thread.start()

    def _embed_worker(self) -> None:
        callback = self._on_documents_changed
        assert callback is not None
        while True:
            with self._embed_lock:
                if not self._embed_wanted:
                    return
                self._embed_wanted = False
            try:
                callback()
                self._stats.embeds += 1
            except Exception as exc:  # retried later; documents stay in PostgreSQL meanwhile
                logger.exception("cms scheduler: embedding new documents failed")
                self._stats.embed_errors += 1
                self._stats.last_embed_error = f"{type(exc).__name__}: {exc}"
                with self._embed_lock:
                    self._embed_wanted = True
                    self._embed_not_before = time.monotonic() + self._config.embed_retry_s
                return

    # ----------------------------------------------------------------------------------- remote API
    # ``@ray.method`` types the calls through a handle (``ActorProxy``); remote methods take every
    # argument (Ray's typing picks the shortest signature a method accepts).
    @ray.method
    def tick_now(self, timeout_s: float) -> TickReport | None:
        """Run one tick now (after any tick in progress) and return its report."""
        return asyncio.run_coroutine_threadsafe(self._tick(), self._loop).result(timeout_s)

    @ray.method
    def stats(self) -> SchedulerStats:
        with self._embed_lock:
            embedding = self._embed_thread is not None and self._embed_thread.is_alive()
            return replace(self._stats, embedding=embedding, embed_pending=self._embed_wanted)

    @ray.method
    def stop(self) -> None:
        """Finish the current tick and stop the loop (the actor itself stays until killed)."""
        self._stopping.set()


#: Ray options of the scheduler actor: detached, always restarted, no CPU of its own (it waits on
#: PostgreSQL and HTTP; the embedding job it triggers reserves its own resources).
CMS_SCHEDULER_OPTIONS: dict[str, Any] = {
    "lifetime": "detached",
    "max_restarts": -1,
    "max_task_retries": 3,
    "max_concurrency": 4,
    "num_cpus": 0,
}

CmsSchedulerActor: ActorClass[CmsSchedulerService] = ray.remote(CmsSchedulerService)


def get_or_create_cms_scheduler(
    config: CmsSchedulerConfig, on_documents_changed: Callable[[], object] | None = None
) -> ActorProxy[CmsSchedulerService]:
    """The scheduler actor, created unless it runs already (one per namespace)."""
    return CmsSchedulerActor.options(
        name=CMS_SCHEDULER_NAME,
        namespace=config.namespace,
        get_if_exists=True,
        **CMS_SCHEDULER_OPTIONS,
    ).remote(config, on_documents_changed)
