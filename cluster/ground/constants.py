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
SEARCH_APP_IMPORT_PATH = "serve_apps.search.app:app_builder"
#: Serve application of the CMS, its route prefix and builder.
CMS_APP_NAME = "cms"
CMS_ROUTE_PREFIX = "/v1/cms"
CMS_APP_IMPORT_PATH = "serve_apps.cms.app:app_builder"

#: Serve application of trends (stories and topics), its route prefix and builder.
TRENDS_APP_NAME = "trends"
TRENDS_ROUTE_PREFIX = "/v1/trends"
TRENDS_APP_IMPORT_PATH = "serve_apps.trends.app:app_builder"
#: Serve application of topics (same module; a second app so search keeps /v1/search by prefix).
TOPICS_APP_NAME = "topics"
TOPICS_ROUTE_PREFIX = "/v1/topics"
TOPICS_APP_IMPORT_PATH = "serve_apps.trends.app:topics_app_builder"
#: Prefix of the trend clusterer actors: ``pulse-trends-<model_id>-<partition key>``.
TREND_ACTOR_PREFIX = "pulse-trends"
#: Folder (under the storage URI's snapshots) of clusterer snapshots: ``trends-<model_id>-<key>``.
TREND_SNAPSHOT_PREFIX = "trends"
#: Story and topic ids are ``partition id * ID_BLOCK + n``: unique across partitions, chosen by the
#: clusterer (so a replay writes the same ids again).
TREND_ID_BLOCK = 1_000_000_000


def index_actor_name(model_id: int, shard: int = 0, *, level: str = "document", shards: int = 1) -> str:
    """Name of the vector index actor of one model entry, level and shard (of ``shards``).

    One shard: ``pulse-index-7-0``; four: ``pulse-index-7-2-of-4`` (a different shard count is a
    different set of actors, so changing it never mixes two partitionings).
    """
    middle = "" if level == "document" else f"{level}-"
    suffix = "" if shards == 1 else f"-of-{shards}"
    return f"{INDEX_ACTOR_PREFIX}-{model_id}-{middle}{shard}{suffix}"


def is_index_actor_of(name: str, model_id: int) -> bool:
    """Whether a named actor is one of a model entry's index actors (any level, shard, or keyword)."""
    return name.startswith(f"{INDEX_ACTOR_PREFIX}-{model_id}-") or name == keyword_actor_name(model_id)


#: Name of the keyword (BM25) index actor of a model entry's documents.
KEYWORD_ACTOR_PREFIX = "pulse-keyword"


def keyword_actor_name(model_id: int) -> str:
    """Name of the keyword index actor that follows one model entry's embedded documents."""
    return f"{KEYWORD_ACTOR_PREFIX}-{model_id}"


#: Prefix of the detached actor that re-embeds for a model entry and then switches to it.
ACTIVATION_ACTOR_PREFIX = "pulse-activate"


def activation_actor_name(model_id: int) -> str:
    """Name of the activation actor of one model entry."""
    return f"{ACTIVATION_ACTOR_PREFIX}-{model_id}"


#: Name of the detached actor that keeps readers' profiles, co-reads and popularity (recommendations).
PROFILE_ACTOR_NAME = "pulse-profiles"

#: Name of the detached actor that runs the CMS scheduler (scheduled publishing, search sync, webhooks).
CMS_SCHEDULER_NAME = "pulse-cms-scheduler"

#: Name of the detached actor that submits jobs on schedule (collect, re-cluster, embed, backup).
JOB_SCHEDULER_NAME = "pulse-job-scheduler"

#: Peers trusted to report the client in X-Forwarded-For: loopback and private networks, where an
#: ingress (Serve's HAProxy or proxy, a Kubernetes ingress, a load balancer) runs.
DEFAULT_TRUSTED_PROXIES = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
)


def trend_actor_name(model_id: int, partition_key: str) -> str:
    """Name of the trend clusterer actor of one model entry's partition (``en``, ``ar/wires``...)."""
    return f"{TREND_ACTOR_PREFIX}-{model_id}-{partition_key.replace('/', '.')}"
