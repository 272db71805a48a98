"""Starting the trend clusterers: one detached actor per partition of the active model's documents
(each language present, times each source group of ``PULSE_TRENDS__SOURCE_GROUPS``), configured from
settings. ``pulse up`` calls ``start_trends``: the trend supervisor actor starts the clusterers of the
partitions there are and of those that appear later (a first ingest after ``pulse up --no-sample``, a new
language); the clusterers then follow the vector manifest themselves.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import ray

from actors.trend_actor import TrendActorConfig
from actors.trend_clusterer import ClustererParams
from actors.trend_summaries import SummaryConfig
from actors.trend_supervisor import TREND_SUPERVISOR_NAME, get_or_create_trend_supervisor
from cluster.ground.constants import PROFILE_ACTOR_NAME, TREND_ACTOR_PREFIX
from cluster.ground.settings import Settings
from cluster.top.job_configs import community_params
from jobs.recluster.communities import window_communities
from storage.vector_files import absolute_storage_uri

logger = logging.getLogger(__name__)


def clusterer_params(settings: Settings) -> ClustererParams:
    t = settings.trends
    return ClustererParams(
        window_size=t.window_size,
        window_days=t.window_days,
        assign_threshold=t.assign_threshold,
        recluster_every=t.recluster_every,
        recluster_hours=t.recluster_hours,
        min_story_size=t.min_story_size,
        story_gap_days=t.story_gap_days,
        merge_threshold=t.merge_threshold,
        move_margin=t.move_margin,
        split_threshold=t.split_threshold,
    )


def summary_config(settings: Settings) -> SummaryConfig:
    s = settings.trends.summary
    values = s.model_dump()
    values["api_key"] = s.api_key.get_secret_value() if s.api_key else None
    return SummaryConfig(**values)


def trend_template(settings: Settings, database_url: str) -> TrendActorConfig:
    """Every clusterer's config but its model and partition (the supervisor fills those in)."""
    return TrendActorConfig(
        database_url=database_url,
        storage_uri=absolute_storage_uri(settings.storage.uri),
        model_id=0,
        namespace=settings.ray.namespace,
        language=None,
        source_groups=dict(settings.trends.source_groups),
        params=clusterer_params(settings),
        communities=functools.partial(window_communities, params=community_params(settings)),
        summary=summary_config(settings),
        num_cpus=settings.trends.num_cpus,
        poll_interval_s=settings.trends.poll_interval_s,
        snapshot_interval_s=settings.trends.snapshot_interval_s,
    )


def start_trends(settings: Settings, database_url: str) -> list[str]:
    """Get or create the trend supervisor (needs ``ray.init`` done), which starts a clusterer for each
    partition now and for every one that appears later; the partitions started now (``model/key``)."""
    if not settings.trends.enabled:
        return []
    supervisor = get_or_create_trend_supervisor(trend_template(settings, database_url))
    started: list[str] = ray.get(supervisor.ensure.remote())
    return started


def snapshot_before_stop(timeout_s: float = 15.0) -> int:
    """Ask every running trend clusterer, and the profile actor, for a snapshot now (before a stop); how many
    wrote one."""
    refs: list[Any] = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = entry["name"]
        if (
            name.startswith(f"{TREND_ACTOR_PREFIX}-") and name != TREND_SUPERVISOR_NAME
        ) or name == PROFILE_ACTOR_NAME:
            try:
                refs.append(ray.get_actor(name, namespace=entry["namespace"]).snapshot.remote())
            except ValueError:
                continue  # gone meanwhile
    if not refs:
        return 0
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    done = 0
    for ref in ready:
        try:
            ray.get(ref)
            done += 1
        except ray.exceptions.RayError as exc:
            logger.warning("a trend clusterer could not snapshot before the stop: %s", exc)
    if len(ready) < len(refs):
        logger.warning("%d trend clusterer(s) busy: stopped without a new snapshot", len(refs) - len(ready))
    return done
