"""Telling a model entry's index actors that the embedding job committed new files."""

from __future__ import annotations

from typing import Any

import ray

from cluster.ground.constants import TREND_ACTOR_PREFIX, is_index_actor_of
from jobs.embed.pipeline import EmbedSummary


def index_actors(model_id: int, namespace: str) -> list[Any]:
    """Handles of the actors following a model entry's manifest: every index level and shard, the keyword
    index and the trend clusterers."""
    handles = []
    for item in ray.util.list_named_actors(all_namespaces=True):
        follows = is_index_actor_of(item["name"], model_id) or item["name"].startswith(
            f"{TREND_ACTOR_PREFIX}-{model_id}-"
        )
        if item["namespace"] == namespace and follows:
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
