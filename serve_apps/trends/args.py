"""The trends applications' arguments (``serve run`` / the Serve config's ``args``; ``pulse up`` builds them
from settings in ``cluster.top.serve_config.trends_app_args``). Both applications, stories and topics,
take the same."""

from __future__ import annotations

from pydantic import Field

from serve_apps.deployment_options import DeploymentArgs

#: Most rows one page of a listing may ask for.
MAX_PAGE_SIZE = 200


class TrendsArgs(DeploymentArgs):
    """Builder arguments (``serve run`` / the Serve config's ``args``)."""

    replica_fields = (("replicas", "max_replicas"),)

    database_url: str = Field(description="SQLAlchemy URL of Pulse's PostgreSQL database")
    page_size: int = Field(
        default=20, ge=1, le=MAX_PAGE_SIZE, description="Rows per page when a request names no limit"
    )
    topic_stories: int = Field(
        default=10, ge=1, le=MAX_PAGE_SIZE, description="Stories (best by score) in GET /v1/topics/{id}"
    )
    replicas: int = Field(default=1, ge=1, description="Replicas of each trends deployment (the minimum)")
    max_replicas: int | None = Field(
        default=None,
        ge=1,
        description="Most replicas of each trends deployment when autoscaled (unset: fixed)",
    )
    ingress_num_cpus: float = Field(default=0.0, ge=0, description="CPUs reserved per replica")
    pool_size: int = Field(default=5, ge=1, description="Database connections per replica")
