"""The Ray shell around ``ProfileBook``: one named, detached actor (``pulse-profiles``) that follows the
interaction events in PostgreSQL by watermark, as the index shards follow the vector manifest.

On start it restores its snapshot (``<storage>/snapshots/profiles``) and catches up from the snapshot's
watermark (``storage.rec_events.events_after``, never past ``settled_seq``, so an event committed late is
never skipped); it polls every ``poll_interval_s``, and ``catch_up()`` is the events route's hint, so a new
event moves the next recommendation at once while a lost hint only delays. The rebuild job
(``python -m jobs.profiles``) writes a whole new snapshot; ``reload()`` adopts it.

``inputs`` answers everything a recommendation needs of the book in one call: the subject's profile, what
readers of its documents also read, and the most popular documents.

Retention is the actor's too: at most once every ``RETENTION_INTERVAL_S`` its maintenance loop drops the
month partitions of events older than ``retention_days`` (``storage.rec_events.drop_expired``, in a short
transaction of its own). The book keeps what it learnt from them; a rebuild no longer sees them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import ray
from ray.actor import ActorClass, ActorProxy

from actors.rec_profiles import CoRead, Interaction, ProfileBook, ProfileParams, UserProfile
from cluster.ground.constants import PROFILE_ACTOR_NAME
from storage.database import make_engine, make_session_factory, session_scope
from storage.index_snapshots import SnapshotStore
from storage.rec_events import EventRow, drop_expired, events_after, settled_seq

logger = logging.getLogger(__name__)

#: Events read from PostgreSQL at once during a catch-up.
CATCH_UP_BATCH = 5_000
#: Name of the profile book's snapshot folder under the storage URI's snapshots.
PROFILE_SNAPSHOT = "profiles"
#: Seconds between two retention passes of the maintenance loop (the first runs at start).
RETENTION_INTERVAL_S = 3600.0


@dataclass(frozen=True)
class ProfileActorConfig:
    database_url: str
    storage_uri: str
    namespace: str
    name: str = PROFILE_ACTOR_NAME
    params: ProfileParams = field(default_factory=ProfileParams)
    num_cpus: float = 0.05
    poll_interval_s: float = 5.0
    snapshot_interval_s: float = 300.0  # 0 disables periodic snapshots
    retention_days: int = 365  # events older than this go, by whole months (storage.rec_events.drop_expired)


@dataclass(frozen=True)
class RecommendInputs:
    """What a recommendation for one subject needs from the book."""

    profile: UserProfile | None
    co_reads: list[CoRead]
    popular: list[tuple[int, float]]
    watermark: int


@dataclass(frozen=True)
class ProfileStats:
    subjects: int
    applied: int
    watermark: int
    ready: bool
    restored_from: int | None
    snapshots_written: int
    pid: int
    last_error: str | None
    partitions_dropped: int = 0  # month partitions of events dropped by retention since the actor started
    retention_runs: int = 0  # retention passes done since the actor started


def interaction(row: EventRow) -> Interaction:
    return Interaction(
        subject=row.subject,
        document_id=row.document_id,
        type=row.type,
        at=row.occurred_at.timestamp(),
        value=row.value,
    )


class ProfileService:
    def __init__(self, config: ProfileActorConfig) -> None:
        self._config = config
        self._engine = make_engine(config.database_url, pool_size=2)
        self._sessions = make_session_factory(self._engine)
        self._snapshots = SnapshotStore(config.storage_uri)
        self._lock = threading.Lock()  # the book and its watermark
        self._catching = threading.Lock()  # one catch-up (or reload) at a time
        self._watermark = 0
        self._restored_from: int | None = None
        self._snapshots_written = 0
        self._book = self._restore()
        self._dirty = False
        self._last_snapshot = time.monotonic()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: str | None = None
        self._last_retention: float | None = None  # monotonic time of the last retention pass
        self._retention_runs = 0
        self._partitions_dropped = 0
        self._thread = threading.Thread(target=self._run, name="profile-maintenance", daemon=True)
        self._thread.start()

    def _restore(self) -> ProfileBook:
        loaded = self._snapshots.load(PROFILE_SNAPSHOT)
        if loaded is None:
            return ProfileBook(self._config.params)
        arrays, info = loaded
        self._watermark = int(info["watermark"])
        self._restored_from = self._watermark
        logger.info("profile book restored at watermark %d", self._watermark)
        return ProfileBook.from_arrays(self._config.params, arrays)

    def _catch_up(self) -> int:
        """Apply what was committed since the watermark. Catch-ups run one at a time (``_catching``); the
        book's lock is held only while a batch is applied, not while PostgreSQL is read, so requests keep
        being answered meanwhile."""
        applied = 0
        with self._catching:
            while True:
                with session_scope(self._sessions) as session:
                    until = settled_seq(session)
                    if until is None or until <= self._watermark:
                        break
                    rows = events_after(session, self._watermark, CATCH_UP_BATCH, until=until)
                if not rows:
                    break
                with self._lock:
                    applied += self._book.add(interaction(r) for r in rows)
                    self._watermark = rows[-1].seq
                    self._dirty = True
            if self._dirty and self._snapshot_due():
                with self._lock:
                    self._snapshot()
        return applied

    def _snapshot_due(self) -> bool:
        interval = self._config.snapshot_interval_s
        return interval > 0 and time.monotonic() - self._last_snapshot >= interval

    def _snapshot(self) -> None:
        self._snapshots.save(PROFILE_SNAPSHOT, self._book.to_arrays(), {"watermark": self._watermark})
        self._dirty = False
        self._snapshots_written += 1
        self._last_snapshot = time.monotonic()

    def _expire(self) -> int:
        """Retention, at most once every ``RETENTION_INTERVAL_S``: drop the months of events older than
        ``retention_days``; how many month partitions were dropped."""
        now = time.monotonic()
        if self._last_retention is not None and now - self._last_retention < RETENTION_INTERVAL_S:
            return 0
        self._last_retention = now
        before = datetime.now(UTC) - timedelta(days=self._config.retention_days)
        with session_scope(self._sessions) as session:  # its own short transaction (ACCESS EXCLUSIVE)
            dropped = drop_expired(session, before=before)
        self._retention_runs += 1
        self._partitions_dropped += dropped
        if dropped:
            logger.info(
                "profile retention: dropped %d month partition(s) of events before %s (%d days kept)",
                dropped,
                before.date().isoformat(),
                self._config.retention_days,
            )
        return dropped

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                applied = self._catch_up()
                if applied:
                    logger.info("profile book: %d events applied (watermark %d)", applied, self._watermark)
                self._error = None
                self._ready.set()
            except Exception as exc:  # keep serving what is known; report and retry
                self._error = f"{type(exc).__name__}: {exc}"
                logger.exception("profile book: catch-up failed")
            try:
                self._expire()
            except Exception as exc:  # the book is unaffected; tried again in an hour
                self._error = f"retention: {type(exc).__name__}: {exc}"
                logger.exception("profile retention failed")
            self._stop.wait(self._config.poll_interval_s)

    # ----------------------------------------------------------------------------------- remote API
    # Typed through a handle by ``@ray.method``; no default arguments (see ``actors.index_actor``).
    @ray.method
    def catch_up(self) -> int:
        """Apply the events committed since the watermark (the events route's hint); how many."""
        return self._catch_up()

    @ray.method
    def inputs(
        self, subject: str | None, co_read_limit: int, popular_limit: int, now: float
    ) -> RecommendInputs:
        """The subject's profile (``None``: unknown subject, or none asked), what readers of its newest
        positives also read, and the most popular documents at ``now`` that the subject has not seen."""
        with self._lock:
            profile = self._book.user(subject) if subject else None
            co_reads: list[CoRead] = []
            seen: frozenset[int] = frozenset()
            if profile is not None:
                seen = profile.seen
                co_reads = [
                    c
                    for c in self._book.co_read(list(profile.positives), limit=co_read_limit + len(seen))
                    if c.document_id not in seen
                ][:co_read_limit]
            popular = self._book.popular(now=now, limit=popular_limit, exclude=seen)
            return RecommendInputs(profile, co_reads, popular, self._watermark)

    @ray.method
    def co_read(self, document_ids: list[int], limit: int) -> list[CoRead]:
        """What readers of ``document_ids`` also read, best first."""
        with self._lock:
            return self._book.co_read(document_ids, limit=limit)

    @ray.method
    def snapshot(self) -> int:
        """Write a snapshot now; its watermark."""
        with self._lock:
            self._snapshot()
            return self._watermark

    @ray.method
    def reload(self) -> int:
        """Adopt the newest snapshot (the rebuild job's), then catch up from its watermark; the watermark."""
        with self._catching, self._lock:  # no catch-up may apply to the old book meanwhile
            self._book = self._restore()
            self._dirty = False
        self._catch_up()
        return self._watermark

    @ray.method
    def wait_ready(self, timeout_s: float) -> bool:
        return self._ready.wait(timeout_s)

    @ray.method
    def stats(self) -> ProfileStats:
        return ProfileStats(
            subjects=len(self._book),
            applied=self._book.applied,
            watermark=self._watermark,
            ready=self._ready.is_set(),
            restored_from=self._restored_from,
            snapshots_written=self._snapshots_written,
            pid=os.getpid(),
            last_error=self._error,
            partitions_dropped=self._partitions_dropped,
            retention_runs=self._retention_runs,
        )


ProfileActor: ActorClass[ProfileService] = ray.remote(ProfileService)


def get_or_create_profile_actor(config: ProfileActorConfig) -> ActorProxy[ProfileService]:
    """The profile actor, created if it does not exist yet (safe to call from many replicas)."""
    return ProfileActor.options(
        name=config.name,
        namespace=config.namespace,
        get_if_exists=True,
        num_cpus=config.num_cpus,
        max_restarts=-1,
        max_task_retries=3,
        max_concurrency=8,
        lifetime="detached",
    ).remote(config)
