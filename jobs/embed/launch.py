"""Launching the embedding job from settings, and telling index actors about new files."""

from __future__ import annotations

from typing import Any

import ray

from cluster.constants import is_index_actor_of
from cluster.settings import Settings
from jobs.embed.pipeline import EmbedJobConfig, EmbedSummary
from storage.database import make_engine, make_session_factory, session_scope
from storage.model_registry import ModelRegistry
from storage.vector_files import absolute_storage_uri


def default_recipe(settings: Settings) -> dict[str, object]:
    """The text recipe a model gets unless `pulse models add` says otherwise."""
    e = settings.embed
    return {"chunk_tokens": e.chunk_tokens, "overlap": e.chunk_overlap, "max_chunks": e.max_chunks}


def job_config(settings: Settings, database_url: str, **overrides: object) -> EmbedJobConfig:
    e = settings.embed
    values: dict[str, object] = {
        "database_url": database_url,
        "storage_uri": absolute_storage_uri(settings.storage.uri),
        "model_name": settings.model.name,
        "index_name": e.index_name,
        "recipe": default_recipe(settings),
        "device": settings.model.device,
        "batch_size": e.batch_size,
        "gpu_batch_size": e.gpu_batch_size,
        "min_actors": e.min_actors,
        "max_actors": e.max_actors,
        "cpus_per_actor": e.cpus_per_actor,
        "gpus_per_actor": e.gpus_per_actor,
        "tokenize_actors": e.tokenize_actors,
        "tokenize_cpus": e.tokenize_cpus,
        "cpu_label_selector": dict(e.cpu_label_selector),
        "rows_per_file": e.rows_per_file,
        "placement_timeout_s": settings.ray.placement_timeout_s,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return EmbedJobConfig(**values)  # type: ignore[arg-type]


def index_actors(model_id: int, namespace: str) -> list[Any]:
    """Handles of a model entry's running index actors: every level and shard, and the keyword index."""
    handles = []
    for item in ray.util.list_named_actors(all_namespaces=True):
        if item["namespace"] == namespace and is_index_actor_of(item["name"], model_id):
            try:
                handles.append(ray.get_actor(item["name"], namespace=namespace))
            except ValueError:
                continue  # gone meanwhile
    return handles


def notify_index(summary: EmbedSummary, namespace: str) -> None:
    """Hint the model's index actors that new files are committed (their poll would find them anyway)."""
    if not summary.files:
        return
    for actor in index_actors(summary.model_id, namespace):  # none running: they load all when started
        actor.catch_up.remote()


def embed_target(model: str | None, database_url: str, settings: Settings) -> dict[str, object]:
    """Which entry an embed run serves: ``model`` (an entry id, or a model name / folder with the
    default recipe), else the index's active entry, else PULSE_MODEL__NAME (which becomes active)."""
    if model:
        return {"model_id": int(model)} if model.isdigit() else {"model_name": model}
    engine = make_engine(database_url, pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            active = ModelRegistry(session).active(settings.embed.index_name)
    finally:
        engine.dispose()
    return {"model_id": active.id} if active else {}
