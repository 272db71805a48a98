"""The profile rebuild job (``python -m jobs.profiles`` / `pulse profiles rebuild`): the profile book
rebuilt from every stored interaction event, one Ray task per group of subjects, then adopted by the
running profile actor.

1. The watermark: ``settled_seq`` now (every event at or below it is final). The new snapshot holds
   exactly the events up to it.
2. One task per group (``jobs.profiles.build.group_book``; a subject's group is a hash of its name, so
   each group's book holds whole subjects), each reserving ``num_cpus``; ``wait_placeable`` first, so a
   machine whose CPUs the services hold refuses at once, naming what to change.
3. The driver merges the group books (``ProfileBook.merge``: subjects are disjoint; co-read pair counts,
   reader counts and popularity are sums over subjects, so the merge equals a book built from all events
   in seq order, as long as no document's co-read row outgrows twice ``max_neighbours`` and is pruned)
   and writes the snapshot with the watermark (``SnapshotStore.save``: it becomes current atomically).
4. If the actor ``pulse-profiles`` runs in the namespace, its ``reload()`` adopts the snapshot and
   catches up from its watermark: events stored during the rebuild are applied then, none is lost.

It lives in ``cluster.top`` because it wires a job (``jobs.profiles``) to an actor's book and snapshot
(jobs may not import actors).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import ray
from ray.actor import ActorProxy

from actors.rec_actor import PROFILE_SNAPSHOT, ProfileService, ProfileStats, interaction
from actors.rec_profiles import Interaction, ProfileBook, ProfileParams
from cluster.ground.constants import PROFILE_ACTOR_NAME
from jobs.errors import JobError
from jobs.placement import Ask, wait_placeable
from jobs.profiles.build import PAGE_SIZE, GroupBook, GroupQuery, group_book
from storage.database import make_engine, make_session_factory, session_scope
from storage.index_snapshots import SnapshotStore
from storage.rec_events import EventRow, settled_seq

logger = logging.getLogger(__name__)

#: Seconds between two looks at the watermark while an event insert is in flight.
SETTLE_POLL_S = 0.1


@dataclass(frozen=True)
class ProfilesRebuildConfig:
    database_url: str
    storage_uri: str  # absolute (the driver writes the snapshot; the actor reads it)
    namespace: str
    params: ProfileParams = field(default_factory=ProfileParams)
    groups: int = 4
    num_cpus: float = 0.5  # per group task
    page_size: int = PAGE_SIZE
    actor_name: str = PROFILE_ACTOR_NAME
    placement_timeout_s: float = 10.0
    settle_timeout_s: float = 30.0  # how long to wait for in-flight event inserts before giving up


@dataclass(frozen=True)
class RebuildResult:
    subjects: int
    events: int
    groups: int
    seconds: float
    watermark: int  # the snapshot's: every event with seq <= watermark is in it
    reloaded: bool  # the running actor adopted it
    actor_watermark: int | None  # the actor's watermark after its reload (None: no actor running)

    def line(self) -> str:
        actor = (
            f"; {PROFILE_ACTOR_NAME} reloaded, now at seq {self.actor_watermark}"
            if self.reloaded
            else f"; no {PROFILE_ACTOR_NAME} running (it restores the snapshot when it starts)"
        )
        return (
            f"rebuilt profiles of {self.subjects} subjects from {self.events} events in {self.groups} "
            f"groups in {self.seconds:.1f} s (watermark seq {self.watermark}){actor}"
        )


def settled_watermark(database_url: str, *, timeout_s: float) -> int:
    """``settled_seq`` (0 without events), waiting up to ``timeout_s`` while an insert is in flight."""
    engine = make_engine(database_url, pool_size=1)
    try:
        sessions = make_session_factory(engine)
        deadline = time.monotonic() + timeout_s
        while True:
            with session_scope(sessions) as session:
                seq = settled_seq(session)
            if seq is not None:
                return seq
            if time.monotonic() >= deadline:
                raise JobError(
                    f"profile rebuild: events were still being written after {timeout_s:.0f} s (an open "
                    "transaction inserting into rec_events holds the watermark back); try again"
                )
            time.sleep(SETTLE_POLL_S)
    finally:
        engine.dispose()


def _reload_actor(config: ProfilesRebuildConfig, watermark: int) -> int | None:
    """The actor's watermark after it adopted the snapshot; ``None`` when it does not run."""
    try:
        actor = ray.get_actor(config.actor_name, namespace=config.namespace)
    except ValueError:
        logger.info("profile rebuild: no %s in namespace %s to reload", config.actor_name, config.namespace)
        return None
    handle: ActorProxy[ProfileService] = actor
    now_at = ray.get(handle.reload.remote())
    stats: ProfileStats = ray.get(handle.stats.remote())
    if stats.restored_from != watermark:
        # The actor saved a snapshot of its own between our save and its reload: it kept its book.
        logger.warning(
            "profile rebuild: %s restored the snapshot at seq %s, not the rebuild's (seq %d): it wrote one "
            "of its own meanwhile; run the rebuild again",
            config.actor_name,
            stats.restored_from,
            watermark,
        )
    logger.info("profile rebuild: %s reloaded, at seq %d", config.actor_name, now_at)
    return now_at


def rebuild_profiles(config: ProfilesRebuildConfig) -> RebuildResult:
    """Rebuild the profile book from the events up to the settled watermark (Ray must be initialised),
    save it as the profile snapshot and have the running actor adopt it; see the module docstring."""
    if config.groups < 1:
        raise ValueError(f"groups must be at least 1, not {config.groups}")
    started = time.perf_counter()
    until = settled_watermark(config.database_url, timeout_s=config.settle_timeout_s)
    logger.info("profile rebuild: events up to seq %d in %d groups", until, config.groups)
    wait_placeable(
        "profile rebuild",
        [Ask("profile group task", config.num_cpus, setting="--num-cpus")],
        timeout_s=config.placement_timeout_s,
    )
    build: Callable[[GroupQuery, ProfileBook, Callable[[EventRow], Interaction]], GroupBook] = group_book
    task = ray.remote(build).options(num_cpus=config.num_cpus)
    pending = [
        task.remote(
            GroupQuery(config.database_url, g, config.groups, until, config.page_size),
            ProfileBook(config.params),
            interaction,
        )
        for g in range(config.groups)
    ]
    book = ProfileBook(config.params)
    events = 0
    while pending:
        (ready,), pending = ray.wait(pending, num_returns=1)
        part: GroupBook = ray.get(ready)
        book.merge(ProfileBook.from_arrays(config.params, part.arrays))
        events += part.events
        logger.info(
            "profile rebuild: group %d merged (%d events in %.1f s; %d of %d groups done)",
            part.group,
            part.events,
            part.seconds,
            config.groups - len(pending),
            config.groups,
        )
    SnapshotStore(config.storage_uri).save(PROFILE_SNAPSHOT, book.to_arrays(), {"watermark": until})
    logger.info("profile rebuild: snapshot saved (%d subjects, watermark %d)", len(book), until)
    actor_watermark = _reload_actor(config, until)
    result = RebuildResult(
        subjects=len(book),
        events=events,
        groups=config.groups,
        seconds=time.perf_counter() - started,
        watermark=until,
        reloaded=actor_watermark is not None,
        actor_watermark=actor_watermark,
    )
    logger.info("profile rebuild: %s", result.line())
    return result
