"""Launching the embedding job from settings, and telling index actors about new files."""

from __future__ import annotations

import ray

from cluster.constants import index_actor_name
from cluster.settings import Settings
from jobs.embed.pipeline import EmbedJobConfig, EmbedSummary
from storage.vector_files import absolute_storage_uri


def job_config(settings: Settings, database_url: str, **overrides: object) -> EmbedJobConfig:
    e = settings.embed
    values: dict[str, object] = {
        "database_url": database_url,
        "storage_uri": absolute_storage_uri(settings.storage.uri),
        "model_name": settings.model.name,
        "device": settings.model.device,
        "batch_size": e.batch_size,
        "min_actors": e.min_actors,
        "max_actors": e.max_actors,
        "cpus_per_actor": e.cpus_per_actor,
        "gpus_per_actor": e.gpus_per_actor,
        "rows_per_file": e.rows_per_file,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return EmbedJobConfig(**values)  # type: ignore[arg-type]


def notify_index(summary: EmbedSummary, namespace: str) -> None:
    """Hint the model's index actor that new files are committed (its poll would find them anyway)."""
    if not summary.files:
        return
    try:
        actor = ray.get_actor(index_actor_name(summary.model_id), namespace=namespace)
    except ValueError:
        return  # no index running for this model: it loads everything when it starts
    actor.catch_up.remote()
