"""Names shared across processes: namespaces, actor and application names."""

from __future__ import annotations

#: Ray namespace of every named Pulse actor (overridable with PULSE_RAY__NAMESPACE).
DEFAULT_NAMESPACE = "pulse"
#: Prefix of the per-model vector index actors: ``pulse-index-<model_id>-<shard>``.
INDEX_ACTOR_PREFIX = "pulse-index"
#: Serve application that exposes search.
SEARCH_APP_NAME = "search"
#: Route prefix of the search application.
SEARCH_ROUTE_PREFIX = "/"
#: Import path of the search application builder, as used by `serve run` / `serve deploy`.
SEARCH_APP_IMPORT_PATH = "serve_apps.search_app:app_builder"


def index_actor_name(model_id: int, shard: int = 0) -> str:
    """Name of the vector index actor of one model and shard."""
    return f"{INDEX_ACTOR_PREFIX}-{model_id}-{shard}"
