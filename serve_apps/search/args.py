"""The search application's arguments (``serve run ... key=value`` or the Serve config's ``args``; ``pulse
up`` builds them from settings), and the plain configs derived from them: each index shard actor's, the
keyword actor's and the hybrid fusion's.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from pydantic import BaseModel, Field

from actors.index_actor import IndexActorConfig
from actors.keyword_actor import KeywordActorConfig
from actors.vector_search import IndexConfig
from cluster.ground.settings import ConsoleSettings, IndexSettings, RecommendSettings, SearchSettings
from serve_apps.deployment_options import DeploymentArgs
from serve_apps.search.fusion import DEFAULT_PARAMS, FusionParams
from storage.model_registry import ModelRow


class SearchArgs(DeploymentArgs):
    """Builder arguments (``serve run ... key=value`` or the Serve config's ``args``)."""

    replica_fields = (
        ("ingress_replicas", "ingress_max_replicas"),
        ("embedder_replicas", "embedder_max_replicas"),
    )

    database_url: str = Field(description="SQLAlchemy URL of Pulse's PostgreSQL database")
    storage_uri: str = Field(default="var/storage", description="Storage URI of the vector files")
    model_name: str = Field(default="sentence-transformers/all-MiniLM-L6-v2")
    device: str = Field(default="auto")
    namespace: str = Field(default="pulse")
    ingress_replicas: int = Field(default=1, ge=1, description="SearchIngress replicas (the minimum)")
    ingress_max_replicas: int | None = Field(
        default=None, ge=1, description="Most SearchIngress replicas when autoscaled (unset: fixed)"
    )
    ingress_num_cpus: float = Field(default=0.0, ge=0, description="CPUs reserved per SearchIngress replica")
    embedder_replicas: int = Field(default=1, ge=1, description="QueryEmbedder replicas (the minimum)")
    embedder_max_replicas: int | None = Field(
        default=None, ge=1, description="Most QueryEmbedder replicas when autoscaled (unset: fixed)"
    )
    embedder_num_cpus: float = Field(default=0.1, ge=0, description="CPUs reserved per QueryEmbedder replica")
    max_batch_size: int = Field(default=32, ge=1)
    batch_wait_timeout_s: float = Field(default=0.005, ge=0)
    max_query_chars: int = Field(default=1000, ge=1)
    query_cache_size: int = Field(default=4096, ge=0, description="Query vectors kept per replica (0: off)")
    index_name: str = Field(default="default", description="The index whose active model is served")
    model_refresh_s: float = Field(default=5.0, gt=0, description="Seconds between active-model checks")
    index: IndexSettings = Field(default_factory=IndexSettings, description="Index shards (PULSE_INDEX__*)")
    search: SearchSettings = Field(default_factory=SearchSettings, description="Ranking (PULSE_SEARCH__*)")
    recommend: RecommendSettings = Field(
        default_factory=RecommendSettings, description="Recommendations (PULSE_RECOMMEND__*)"
    )
    jwt_secret: str | None = Field(
        default=None,
        description="The CMS's token secret: users' access tokens are accepted by the recommendation routes",
    )
    console: ConsoleSettings = Field(
        default_factory=ConsoleSettings, description="The web console at /console/ (PULSE_CONSOLE__*)"
    )

    def shard_config(self, entry: ModelRow, level: str) -> IndexActorConfig:
        """The config of an entry's index shard actors at ``level`` (``shard`` is set per actor)."""
        return IndexActorConfig(
            database_url=self.database_url,
            storage_uri=self.storage_uri,
            model_id=entry.id,
            dimension=entry.dimension,
            namespace=self.namespace,
            level=level,
            index=index_config(self.index),
            **_carried(self.index, IndexActorConfig),
        )

    def keyword_config(self, entry_id: int) -> KeywordActorConfig:
        """The config of an entry's keyword (BM25) actor."""
        return KeywordActorConfig(
            database_url=self.database_url,
            model_id=entry_id,
            namespace=self.namespace,
            num_cpus=self.index.keyword_num_cpus,
            poll_interval_s=self.index.poll_interval_s,
            label_selector=dict(self.index.label_selector),
        )


def _carried(settings: BaseModel, config: Any) -> dict[str, Any]:
    """The settings whose names are fields of the ``config`` dataclass, as pydantic dumps them."""
    return settings.model_dump(include={f.name for f in fields(config)})


def index_config(s: IndexSettings) -> IndexConfig:
    """How each shard builds and searches its index: the settings of the same names."""
    return IndexConfig(**_carried(s, IndexConfig))


def fusion_params(s: SearchSettings) -> FusionParams:
    """The hybrid fusion: the measured default, with the settings' overrides."""
    base = DEFAULT_PARAMS
    method = base.method if s.fusion == "default" else s.fusion
    weights = base.weights or (1.0, 1.0)
    weights = (
        s.keyword_weight if s.keyword_weight is not None else weights[0],
        s.vector_weight if s.vector_weight is not None else weights[1],
    )
    return FusionParams(
        method=method, weights=weights, rrf_k=base.rrf_k, missing=base.missing, depth=base.depth
    )
