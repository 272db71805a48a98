"""Building the collect job's configuration from settings."""

from __future__ import annotations

from cluster.settings import Settings
from jobs.collect.fetch import FetchPolicy
from jobs.collect.pipeline import CollectJobConfig
from storage.vector_files import absolute_storage_uri


def fetch_policy(settings: Settings) -> FetchPolicy:
    c = settings.collect
    return FetchPolicy(
        user_agent=c.user_agent,
        per_host_concurrency=c.per_host_concurrency,
        per_host_delay_s=c.per_host_delay_s,
        global_concurrency=c.global_concurrency,
        connect_timeout_s=c.connect_timeout_s,
        total_timeout_s=c.timeout_s,
        max_bytes=c.max_bytes,
        max_redirects=c.max_redirects,
        max_retries=c.max_retries,
        max_retry_after_s=c.max_retry_after_s,
        respect_robots=c.respect_robots,
        allow_networks=tuple(c.allow_networks),
    )


def job_config(settings: Settings, database_url: str, **overrides: object) -> CollectJobConfig:
    c = settings.collect
    values: dict[str, object] = {
        "database_url": database_url,
        "storage_uri": absolute_storage_uri(settings.storage.uri),
        "policy": fetch_policy(settings),
        "fetch_partitions": c.fetch_partitions,
        "fetch_cpus": c.fetch_cpus,
        "extract_batch_size": c.extract_batch_size,
        "extract_cpus": c.extract_cpus,
        "placement_timeout_s": settings.ray.placement_timeout_s,
        "store_actors": c.store_actors,
        "near_duplicate_threshold": c.near_duplicate_threshold,
        "max_depth": c.max_depth,
        "max_rounds": c.max_rounds,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return CollectJobConfig(**values)  # type: ignore[arg-type]
