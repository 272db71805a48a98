"""The re-cluster job (``python -m jobs.recluster`` / `pulse recluster`): recompute the stories and
topics of each trend clusterer's window (or of its documents in a time range) as Ray tasks, one per
partition, placed on any node with the CPUs asked; each result goes back to its clusterer, which
matches it to the ids it holds (so ids persist) and writes the changes. The clusterers keep serving
meanwhile: the result is applied between two of their catch-ups. It lives in ``cluster.top`` because
it drives actors; the computation itself is ``jobs.recluster.communities``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import ray

from cluster.ground.constants import TREND_ACTOR_PREFIX
from jobs.placement import Ask, wait_placeable
from jobs.recluster.communities import CommunityParams, window_communities

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReclusterConfig:
    model_id: int
    namespace: str
    since: int | None = None  # epoch seconds of document time
    until: int | None = None
    partitions: tuple[str, ...] = ()  # actor names' partition keys; empty: all
    num_cpus: float = 1.0
    placement_timeout_s: float = 10.0
    params: CommunityParams = field(default_factory=CommunityParams)


@dataclass(frozen=True)
class PartitionResult:
    actor: str
    documents: int
    stories: int
    topics: int
    seconds: float

    def line(self) -> str:
        return (
            f"{self.actor}: {self.documents} documents -> {self.stories} stories, {self.topics} topics "
            f"in {self.seconds:.1f} s"
        )


def clusterer_actors(model_id: int, namespace: str, partitions: tuple[str, ...]) -> list[tuple[str, Any]]:
    prefix = f"{TREND_ACTOR_PREFIX}-{model_id}-"
    found = []
    for item in ray.util.list_named_actors(all_namespaces=True):
        name = item["name"]
        if item["namespace"] != namespace or not name.startswith(prefix):
            continue
        if partitions and name[len(prefix) :] not in partitions:
            continue
        found.append((name, ray.get_actor(name, namespace=namespace)))
    return sorted(found, key=lambda pair: pair[0])


def run_recluster(config: ReclusterConfig) -> list[PartitionResult]:
    """Re-cluster every selected partition (Ray must be initialised); one result per partition."""
    actors = clusterer_actors(config.model_id, config.namespace, config.partitions)
    if not actors:
        return []
    wait_placeable(
        "recluster",
        [Ask("re-cluster task", config.num_cpus, setting="--num-cpus")],
        timeout_s=config.placement_timeout_s,
    )
    task = ray.remote(window_communities).options(num_cpus=config.num_cpus)
    started = {}
    pending = {}
    for name, actor in actors:
        ids, vectors, labels, times = ray.get(actor.window.remote(config.since, config.until))
        if not len(ids):
            continue
        started[name] = time.perf_counter()
        pending[name] = (actor, ids, task.remote(vectors, labels, times, config.params))
    results = []
    for name, (actor, ids, ref) in pending.items():
        stories, topics = ray.get(ref)
        ray.get(actor.apply_communities.remote(ids, stories, topics))
        result = PartitionResult(
            actor=name,
            documents=len(ids),
            stories=len(set(stories[stories >= 0].tolist())),
            topics=len(set(topics[topics >= 0].tolist())),
            seconds=time.perf_counter() - started[name],
        )
        logger.info("recluster %s", result.line())
        results.append(result)
    return results
