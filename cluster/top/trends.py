"""Starting the trend clusterers: one detached actor per partition of the active model's documents
(each language present, times each source group of ``PULSE_TRENDS__SOURCE_GROUPS``), configured from
settings. ``pulse up`` calls ``start_trends``: the trend supervisor actor starts the clusterers of the
partitions there are and of those that appear later (a first ingest after ``pulse up --no-sample``, a new
language); the clusterers then follow the vector manifest themselves.
"""

from __future__ import annotations

import functools
import logging

import ray

from actors.trend_actor import TrendActorConfig
from actors.trend_clusterer import ClustererParams
from actors.trend_summaries import SummaryConfig
from actors.trend_supervisor import get_or_create_trend_supervisor
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
