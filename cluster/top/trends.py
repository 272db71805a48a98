"""Starting the trend clusterers: one detached actor per partition of the active model's documents
(each language present, times each source group of ``PULSE_TRENDS__SOURCE_GROUPS``), configured from
settings. ``pulse up`` calls ``start_trends``; the actors then follow the vector manifest themselves.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from actors.trend_actor import TrendActorConfig, get_or_create_trend_actor
from actors.trend_clusterer import ClustererParams
from actors.trend_summaries import SummaryConfig
from cluster.ground.settings import Settings
from cluster.top.job_configs import community_params
from jobs.recluster.communities import window_communities
from storage.database import make_engine, make_session_factory, session_scope
from storage.model_registry import ModelRegistry
from storage.trends import DEFAULT_SOURCE_GROUP, document_languages
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


def trend_actor_configs(settings: Settings, database_url: str) -> list[TrendActorConfig]:
    """One config per partition of the active model's documents (none without an active model)."""
    engine = make_engine(database_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            active = ModelRegistry(session).active()
            languages = document_languages(session)
    finally:
        engine.dispose()
    if active is None:
        return []
    groups = [DEFAULT_SOURCE_GROUP, *sorted(settings.trends.source_groups)]
    return [
        TrendActorConfig(
            database_url=database_url,
            storage_uri=absolute_storage_uri(settings.storage.uri),
            model_id=active.id,
            namespace=settings.ray.namespace,
            language=language,
            source_group=group,
            source_groups=dict(settings.trends.source_groups),
            params=clusterer_params(settings),
            communities=functools.partial(window_communities, params=community_params(settings)),
            summary=summary_config(settings),
            num_cpus=settings.trends.num_cpus,
            poll_interval_s=settings.trends.poll_interval_s,
            snapshot_interval_s=settings.trends.snapshot_interval_s,
        )
        for language in languages
        for group in groups
    ]


def start_trends(settings: Settings, database_url: str) -> list[Any]:
    """Get or create every partition's clusterer (needs ``ray.init`` done); their handles."""
    if not settings.trends.enabled:
        return []
    handles = [get_or_create_trend_actor(config) for config in trend_actor_configs(settings, database_url)]
    for handle in handles:
        handle.catch_up.remote()
    return handles
