"""The Ray shell around ``TrendClusterer``: a named, detached actor per partition (a language, and a
source group when ``PULSE_TRENDS__SOURCE_GROUPS`` sets some) of one model entry's documents.

Like the index shards it follows the vector manifest by watermark (``storage.vector_source``): on
start it restores its snapshot (``<storage>/snapshots/trends-<model>-<key>``) and catches up from the
snapshot's watermark, so a restart renumbers nothing (ids are chosen by the clusterer from counters in
the snapshot, and replays are idempotent upserts); it polls every ``poll_interval_s``, and
``catch_up()`` is the writers' hint. After each batch it writes the changes (``storage.trends``) and
refreshes the touched stories' lifecycle, keywords and summaries (``actors.trend_refresh``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import ray
from ray.actor import ActorClass, ActorProxy

from actors.trend_clusterer import ClustererParams, Communities, TrendClusterer
from actors.trend_delta import ClusterDelta
from actors.trend_refresh import StoryRefresher, utc
from actors.trend_summaries import StorySummarizer, SummaryConfig
from cluster.ground import ray_metrics
from cluster.ground.constants import TREND_ID_BLOCK, TREND_SNAPSHOT_PREFIX, trend_actor_name
from cluster.ground.metrics import ERRORS, TREND_ASSIGNED, TREND_STORIES
from storage.database import make_engine, make_session_factory, session_scope
from storage.index_feed import NO_DATE
from storage.index_snapshots import SnapshotStore
from storage.trends import (
    DEFAULT_SOURCE_GROUP,
    Assignment,
    DocumentTopicUpsert,
    LineageEvent,
    StoryUpsert,
    TopicUpsert,
    TrendDelta,
    apply_delta,
    ensure_partition,
)
from storage.vector_source import ManifestVectorSource

logger = logging.getLogger(__name__)

#: Documents a catch-up takes at once (sorted by document time before they reach the clusterer).
CATCH_UP_BATCH = 20_000
#: Documents fed between two writes (and refreshes of the stories they touched).
FLUSH_EVERY = 1_000


@dataclass(frozen=True)
class TrendActorConfig:
    database_url: str
    storage_uri: str
    model_id: int
    namespace: str
    language: str | None
    source_group: str = DEFAULT_SOURCE_GROUP
    #: source group -> source names (a document's group: the first naming its source, else default)
    source_groups: dict[str, list[str]] = field(default_factory=dict)
    params: ClustererParams = field(default_factory=ClustererParams)
    #: the re-cluster (``jobs.recluster.communities.window_communities`` bound to its parameters)
    communities: Communities | None = None
    summary: SummaryConfig | None = None
    num_cpus: float = 0.05
    poll_interval_s: float = 10.0
    snapshot_interval_s: float = 300.0

    @property
    def key(self) -> str:
        lang = self.language or "xx"
        return lang if self.source_group == DEFAULT_SOURCE_GROUP else f"{lang}/{self.source_group}"


@dataclass(frozen=True)
class TrendStats:
    key: str
    model_id: int
    partition_id: int
    window: int
    unassigned: int
    stories: int
    reclusters: int
    last_recluster_s: float
    watermark: int
    clock: str | None
    ready: bool
    pid: int
    last_error: str | None


def to_storage(delta: ClusterDelta, *, watermark: int, clock: int | None, language: str | None) -> TrendDelta:
    return TrendDelta(
        stories=tuple(
            StoryUpsert(id=s, topic_id=t, language=language, status=status, merged_into=into)  # type: ignore[arg-type]
            for s, (t, status, into) in sorted(delta.stories.items())
        ),
        topics=tuple(
            TopicUpsert(id=t, status=status, story_count=count)  # type: ignore[arg-type]
            for t, (status, count) in sorted(delta.topics.items())
        ),
        assignments=tuple(
            Assignment(document_id=d, story_id=s, document_time=utc(at), similarity=sim, method=method)  # type: ignore[arg-type]
            for d, (s, sim, method, at) in sorted(delta.assignments.items())
        ),
        unassigned=tuple(sorted(delta.unassigned)),
        document_topics=tuple(
            DocumentTopicUpsert(document_id=d, topic_id=None if t < 0 else t, document_time=utc(at))
            for d, (t, at) in sorted(delta.document_topics.items())
        ),
        lineage=tuple(
            LineageEvent(
                level=e.level,  # type: ignore[arg-type]
                kind=e.kind,  # type: ignore[arg-type]
                subject_id=e.subject,
                related_ids=e.related,
                documents=e.documents,
                at=utc(e.at),
                event_key=e.key,
            )
            for e in delta.lineage
        ),
        watermark=watermark,
        clock=None if clock is None else utc(clock),
    )


class TrendService:
    def __init__(self, config: TrendActorConfig) -> None:
        self._config = config
        self._engine = make_engine(config.database_url, pool_size=2)
        self._sessions = make_session_factory(self._engine)
        self._source = ManifestVectorSource(
            database_url=config.database_url, storage_uri=config.storage_uri, model_id=config.model_id
        )
        self._snapshots = SnapshotStore(config.storage_uri)
        with session_scope(self._sessions) as session:
            self._partition = ensure_partition(
                session,
                model_id=config.model_id,
                key=config.key,
                language=config.language,
                source_group=config.source_group,
            )
        self._lock = threading.Lock()
        self._watermark = 0
        self._clusterer = self._restore()
        summarizer = StorySummarizer(config.summary, sessions=self._sessions) if config.summary else None
        self._refresher = StoryRefresher(
            self._sessions, partition_id=self._partition.id, summarizer=summarizer
        )
        self._group_of = {name: g for g, names in config.source_groups.items() for name in names}
        self._dirty = False
        self._states_seen: set[str] = set()
        self._last_snapshot = time.monotonic()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, name="trend-maintenance", daemon=True)
        self._thread.start()

    @property
    def _snapshot_name(self) -> str:
        return f"{TREND_SNAPSHOT_PREFIX}-{self._config.model_id}-{self._config.key.replace('/', '.')}"

    def _restore(self) -> TrendClusterer:
        if self._config.communities is None:
            raise ValueError("TrendActorConfig.communities is required (cluster.top.trends sets it)")
        loaded = self._snapshots.load(self._snapshot_name)
        if loaded is None:
            return TrendClusterer(
                self._config.params, self._config.communities, id_base=self._partition.id * TREND_ID_BLOCK
            )
        arrays, info = loaded
        self._watermark = int(info["watermark"])
        logger.info("trend clusterer %s restored at watermark %d", self._config.key, self._watermark)
        return TrendClusterer.restore(self._config.params, self._config.communities, arrays, info)

    def _mine(self, languages: list[str | None], sources: list[str | None]) -> np.ndarray:
        lang = self._config.language
        group = self._config.source_group
        return np.asarray(
            [
                (lg or "xx") == (lang or "xx")
                and self._group_of.get(src or "", DEFAULT_SOURCE_GROUP) == group
                for lg, src in zip(languages, sources, strict=True)
            ],
            dtype=bool,
        )

    def _catch_up(self) -> int:
        """Take every manifest file after the watermark, in batches of about ``CATCH_UP_BATCH``
        documents, each sorted by document time: files arrive in embedding order, not in time order
        (a backfill of months embeds newest and oldest side by side)."""
        added = 0
        with self._lock:
            pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
            buffered = 0
            last = self._watermark
            for update in self._source.updates_after(self._watermark):
                last = update.watermark
                if len(update.document_ids) and update.meta is not None:
                    mine = self._mine(list(update.meta.languages), list(update.meta.sources))
                    published = np.asarray(update.meta.published)[mine]
                    times = np.where(published == NO_DATE, int(time.time()), published).astype(np.int64)
                    pending.append((update.document_ids[mine], update.vectors[mine], times))
                    buffered += int(mine.sum())
                if buffered >= CATCH_UP_BATCH:
                    added += self._take(pending, last)
                    pending, buffered = [], 0
            if pending or last != self._watermark:
                added += self._take(pending, last)
            if self._dirty and self._snapshot_due():
                self._snapshot()
        return added

    def _take(self, pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]], watermark: int) -> int:
        """Feed the pending documents in time order, writing after every ``FLUSH_EVERY`` of them (so
        stories are described while their documents are in the window); the watermark advances with
        the last write (a crash before it replays the batch, which writes the same rows again)."""
        total = 0
        if pending:
            ids = np.concatenate([p[0] for p in pending])
            total = len(ids)
            if total:
                vectors = np.concatenate([p[1] for p in pending if len(p[0])])
                times = np.concatenate([p[2] for p in pending])
                order = np.argsort(times, kind="stable")
                for start in range(0, total, FLUSH_EVERY):
                    rows = order[start : start + FLUSH_EVERY]
                    self._clusterer.add(ids[rows], vectors[rows], times[rows])
                    if start + FLUSH_EVERY < total:
                        self._flush()
        self._watermark = watermark
        self._flush()
        return total

    def _flush(self) -> None:
        delta = self._clusterer.drain()
        self._measure(len(delta.assignments))
        with session_scope(self._sessions) as session:
            touched = apply_delta(
                session,
                partition_id=self._partition.id,
                delta=to_storage(
                    delta,
                    watermark=self._watermark,
                    clock=self._clusterer.clock,
                    language=self._config.language,
                ),
            )
        if delta.empty:
            return
        self._dirty = True
        if self._clusterer.clock is not None:
            ids, vectors, _, labels = self._clusterer.window()
            self._refresher.refresh(
                touched=touched,
                topics={t for t, _ in delta.topics.items()}
                | {t for t, _, _ in delta.stories.values() if t is not None}
                | {t for t, _ in delta.document_topics.values() if t >= 0},
                clock=utc(self._clusterer.clock),
                window=(ids, vectors, labels),
            )

    def _measure(self, assigned: int) -> None:
        """Metrics at each write: documents assigned since the last one, stories by state (a state that
        emptied is set to 0, so its series does not keep its last value)."""
        key = self._config.key
        ray_metrics.inc(TREND_ASSIGNED, assigned, partition=key)
        states = self._clusterer.story_states()
        for state in set(states) | self._states_seen:
            ray_metrics.set_gauge(TREND_STORIES, states.get(state, 0), partition=key, state=state)
        self._states_seen |= set(states)

    def _snapshot_due(self) -> bool:
        interval = self._config.snapshot_interval_s
        return interval > 0 and time.monotonic() - self._last_snapshot >= interval

    def _snapshot(self) -> None:
        arrays, info = self._clusterer.snapshot()
        self._snapshots.save(self._snapshot_name, arrays, {**info, "watermark": self._watermark})
        self._dirty = False
        self._last_snapshot = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                added = self._catch_up()
                if added:
                    logger.info("trend clusterer %s: %d documents taken", self._config.key, added)
                self._error = None
                if not self._ready.is_set():
                    self._measure(0)  # the stories a restored clusterer holds, before any write
                self._ready.set()
            except Exception as exc:  # keep serving; report and retry
                self._error = f"{type(exc).__name__}: {exc}"
                ray_metrics.inc(ERRORS, component="trend", kind=type(exc).__name__)
                logger.exception("trend clusterer %s: catch-up failed", self._config.key)
            self._stop.wait(self._config.poll_interval_s)

    # ----------------------------------------------------------------------------------- remote API
    # Typed through a handle by ``@ray.method``; no default arguments (see ``actors.index_actor``).
    @ray.method
    def catch_up(self) -> int:
        """Take what the manifest holds now (the writers' hint); the documents added."""
        return self._catch_up()

    @ray.method
    def snapshot(self) -> str:
        """Write a snapshot now; its name."""
        with self._lock:
            self._snapshot()
        return self._snapshot_name

    @ray.method
    def window(
        self, since: int | None, until: int | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(document ids, vectors, current stories, times) of the window rows with time in [since, until]."""
        with self._lock:
            ids, vectors, times, labels = self._clusterer.window()
            keep = np.ones(len(ids), bool)
            if since is not None:
                keep &= times >= since
            if until is not None:
                keep &= times <= until
            return ids[keep].copy(), vectors[keep].copy(), labels[keep].copy(), times[keep].copy()

    @ray.method
    def apply_communities(self, doc_ids: np.ndarray, stories: np.ndarray, topics: np.ndarray) -> int:
        """Adopt communities computed by the re-cluster job (matched to the current ids); snapshots."""
        with self._lock:
            self._clusterer.apply_communities(doc_ids, stories, topics, method="job")
            self._flush()
            self._snapshot()
        return len(doc_ids)

    @ray.method
    def stats(self) -> TrendStats:
        clock = self._clusterer.clock
        return TrendStats(
            key=self._config.key,
            model_id=self._config.model_id,
            partition_id=self._partition.id,
            window=self._clusterer.size,
            unassigned=self._clusterer.unassigned,
            stories=len(self._clusterer.active_stories()),
            reclusters=self._clusterer.reclusters,
            last_recluster_s=self._clusterer.last_recluster_s,
            watermark=self._watermark,
            clock=None if clock is None else datetime.fromtimestamp(clock, tz=UTC).isoformat(),
            ready=self._ready.is_set(),
            pid=os.getpid(),
            last_error=self._error,
        )


TrendClustererActor: ActorClass[TrendService] = ray.remote(TrendService)


def get_or_create_trend_actor(config: TrendActorConfig) -> ActorProxy[TrendService]:
    return TrendClustererActor.options(
        name=trend_actor_name(config.model_id, config.key),
        namespace=config.namespace,
        get_if_exists=True,
        num_cpus=config.num_cpus,
        max_restarts=-1,
        max_task_retries=3,
        max_concurrency=4,
        lifetime="detached",
    ).remote(config)
