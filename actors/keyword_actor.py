"""The Ray shell around ``KeywordIndex``: a named, detached actor that follows one model entry's documents.

It indexes exactly the documents the entry's vector index holds: those with a current embedding in the
manifest (``document_embeddings``), read in manifest-file order, so keyword, vector and hybrid search
see the same collection. Its watermarks are the last manifest file read and the last deletion seen;
it polls every ``poll_interval_s`` and ``catch_up()`` is the writers' hint. On (re)start it reads the
collection from PostgreSQL again (BM25 statistics are cheap to recompute: no snapshot is kept).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray
from ray.actor import ActorClass, ActorProxy

from actors.errors import IndexNotReady
from actors.filters import MetaBatch, MetaTable, SearchFilter
from actors.index_stats import KeywordStats
from actors.keyword_index import KeywordIndex
from actors.vector_search import SearchHits
from cluster.ground.constants import keyword_actor_name
from storage.database import make_engine, make_session_factory, session_scope
from storage.index_feed import deletions_after, embedded_documents_after

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeywordActorConfig:
    database_url: str
    model_id: int
    namespace: str
    num_cpus: float = 0.25
    poll_interval_s: float = 10.0
    page_size: int = 5_000
    label_selector: Mapping[str, str] = field(default_factory=dict)  # node labels required; empty: any


class KeywordIndexService:
    def __init__(self, config: KeywordActorConfig) -> None:
        self._config = config
        self._engine = make_engine(config.database_url, pool_size=1)
        self._sessions = make_session_factory(self._engine)
        self._index = KeywordIndex()
        self._meta = MetaTable()
        self._meta_lock = threading.Lock()
        self._file_watermark = 0
        self._deletion_watermark = 0
        self._catch_up_lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, name="keyword-maintenance", daemon=True)
        self._thread.start()

    def _catch_up(self) -> int:
        changed = 0
        with self._catch_up_lock:
            while True:
                with session_scope(self._sessions) as session:
                    docs = embedded_documents_after(
                        session,
                        model_id=self._config.model_id,
                        file_id=self._file_watermark,
                        limit=self._config.page_size,
                    )
                if not docs:
                    break
                ids = [d.id for d in docs]
                with self._meta_lock:
                    self._meta.upsert(ids, MetaBatch.of([d.meta for d in docs]))
                self._index.upsert(ids, [d.text for d in docs], [d.language for d in docs])
                self._file_watermark = max(d.file_id for d in docs)
                changed += len(docs)
            with session_scope(self._sessions) as session:
                sequence, deleted = deletions_after(session, self._deletion_watermark)
            if deleted:
                self._index.delete(deleted)
                with self._meta_lock:
                    self._meta.delete(deleted)
                changed += len(deleted)
            self._deletion_watermark = sequence
            if changed:
                self._index.refresh()
        return changed

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                changed = self._catch_up()
                if changed:
                    logger.info(
                        "keyword index of model %d: %d changes applied", self._config.model_id, changed
                    )
                self._error = None
                self._ready.set()
            except Exception as exc:  # keep serving; report and retry
                self._error = f"{type(exc).__name__}: {exc}"
                logger.exception("keyword index catch-up failed for model %d", self._config.model_id)
            self._stop.wait(self._config.poll_interval_s)

    # ----------------------------------------------------------------------------------- remote API
    # Typed through a handle by ``@ray.method``; no default arguments (see ``actors.index_actor``).
    @ray.method
    def catch_up(self) -> int:
        if not self._ready.is_set():
            return 0
        return self._catch_up()

    @ray.method
    def search(
        self,
        queries: list[str],
        k: int,
        flt: SearchFilter | None,
        languages: tuple[str, ...],
        normalize: bool,
    ) -> SearchHits:
        """BM25 top-``k`` for each query (one row each), only documents passing ``flt``; with
        ``normalize`` scores are divided by the query's best possible score (for fusion)."""
        if not self._ready.is_set():
            raise IndexNotReady(self._config.model_id)
        doc_filter = None
        if flt is not None and not flt.is_empty:
            active = flt

            def doc_filter(ids: Any) -> Any:
                with self._meta_lock:
                    return self._meta.matches(ids, active)

        ids: list[list[int]] = []
        scores: list[list[float]] = []
        for query in queries:
            hits = self._index.search(
                query, k, languages=languages, doc_filter=doc_filter, normalize=normalize
            )
            ids.append(hits.ids[0])
            scores.append(hits.scores[0])
        return SearchHits(ids=ids, scores=scores)

    @ray.method
    def document_ids(self) -> np.ndarray:
        """Ids of the documents searchable now (each once): what a check against the manifest compares."""
        if not self._ready.is_set():
            raise IndexNotReady(self._config.model_id)
        return self._index.ids()

    @ray.method
    def stats(self) -> KeywordStats:
        return KeywordStats(
            model_id=self._config.model_id,
            size=self._index.size,
            pending=self._index.pending,
            watermark=self._file_watermark,
            deletion_watermark=self._deletion_watermark,
            ready=self._ready.is_set(),
            pid=os.getpid(),
            last_error=self._error,
        )


KeywordIndexActor: ActorClass[KeywordIndexService] = ray.remote(KeywordIndexService)


def get_or_create_keyword_actor(config: KeywordActorConfig) -> ActorProxy[KeywordIndexService]:
    return KeywordIndexActor.options(
        name=keyword_actor_name(config.model_id),
        namespace=config.namespace,
        get_if_exists=True,
        num_cpus=config.num_cpus,
        max_restarts=-1,
        max_task_retries=3,
        max_concurrency=8,
        lifetime="detached",
        **({"label_selector": dict(config.label_selector)} if config.label_selector else {}),
    ).remote(config)
