"""Job configurations from settings: the one place where settings become the plain values jobs take.

Jobs never read settings (import-linter keeps it so); the commands build a frozen config here and hand
it down. Fields whose names match are carried by pydantic (``model_dump(include=...)``), so a setting
added to both sides needs no copy line; only renamed or converted fields are spelled out.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from cluster.ground.settings import Settings
from jobs.collect.fetch import FetchPolicy
from jobs.collect.pipeline import CollectJobConfig
from jobs.embed.pipeline import EmbedJobConfig
from jobs.recluster.communities import CommunityParams
from storage.database import make_engine, make_session_factory, session_scope
from storage.model_registry import ModelRegistry
from storage.vector_files import absolute_storage_uri


def _names(cls: Any) -> set[str]:
    return {f.name for f in fields(cls)}


def _given(overrides: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in overrides.items() if v is not None}


def fetch_policy(settings: Settings) -> FetchPolicy:
    c = settings.collect
    carried = c.model_dump(include=_names(FetchPolicy))
    carried["allow_networks"] = tuple(c.allow_networks)
    return FetchPolicy(**carried, total_timeout_s=c.timeout_s)


def collect_config(settings: Settings, database_url: str, **overrides: object) -> CollectJobConfig:
    """The collect job's configuration; ``overrides`` that are not None win (command-line flags)."""
    values: dict[str, object] = settings.collect.model_dump(include=_names(CollectJobConfig))
    values.update(
        database_url=database_url,
        storage_uri=absolute_storage_uri(settings.storage.uri),
        policy=fetch_policy(settings),
        placement_timeout_s=settings.ray.placement_timeout_s,
    )
    values.update(_given(overrides))
    return CollectJobConfig(**values)  # type: ignore[arg-type]


def default_recipe(settings: Settings) -> dict[str, object]:
    """The text recipe a model gets unless `pulse models add` says otherwise."""
    e = settings.embed
    return {"chunk_tokens": e.chunk_tokens, "overlap": e.chunk_overlap, "max_chunks": e.max_chunks}


def embed_config(settings: Settings, database_url: str, **overrides: object) -> EmbedJobConfig:
    """The embedding job's configuration; ``overrides`` that are not None win (command-line flags)."""
    values: dict[str, object] = settings.embed.model_dump(include=_names(EmbedJobConfig))
    values.update(
        database_url=database_url,
        storage_uri=absolute_storage_uri(settings.storage.uri),
        model_name=settings.model.name,
        recipe=default_recipe(settings),
        device=settings.model.device,
        cpu_label_selector=dict(settings.embed.cpu_label_selector),
        placement_timeout_s=settings.ray.placement_timeout_s,
    )
    values.update(_given(overrides))
    return EmbedJobConfig(**values)  # type: ignore[arg-type]


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


def community_params(settings: Settings) -> CommunityParams:
    """The re-cluster's parameters (the clusterer actors' periodic one and `pulse recluster`)."""
    t = settings.trends
    return CommunityParams(
        story_resolution=t.story_resolution,
        topic_resolution=t.topic_resolution,
        topic_k=t.topic_neighbours,
        min_size=t.min_story_size,
        time_scale_days=t.time_scale_days,
    )
