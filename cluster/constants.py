"""Names shared across processes: namespaces, actor and application names."""

from __future__ import annotations

#: Ray namespace of every named Pulse actor (overridable with PULSE_RAY__NAMESPACE).
DEFAULT_NAMESPACE = "pulse"
#: Prefix of the per-model vector index actors: ``pulse-index-<model_id>-<shard>`` (document vectors)
#: and ``pulse-index-<model_id>-chunk-<shard>`` (chunk vectors).
INDEX_ACTOR_PREFIX = "pulse-index"
#: Serve application that exposes search.
SEARCH_APP_NAME = "search"
#: Route prefix of the search application.
SEARCH_ROUTE_PREFIX = "/"
#: Import path of the search application builder, as used by `serve run` / `serve deploy`.
SEARCH_APP_IMPORT_PATH = "serve_apps.search_app:app_builder"


def index_actor_name(model_id: int, shard: int = 0, *, level: str = "document") -> str:
    """Name of the vector index actor of one model entry, level and shard."""
    middle = "" if level == "document" else f"{level}-"
    return f"{INDEX_ACTOR_PREFIX}-{model_id}-{middle}{shard}"


#: Prefix of the detached actor that re-embeds for a model entry and then switches to it.
ACTIVATION_ACTOR_PREFIX = "pulse-activate"


def activation_actor_name(model_id: int) -> str:
    """Name of the activation actor of one model entry."""
    return f"{ACTIVATION_ACTOR_PREFIX}-{model_id}"
