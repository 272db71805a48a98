"""The trends applications' arguments (``serve run`` / the Serve config's ``args``; ``pulse up`` builds them
from settings in ``cluster.top.serve_config.trends_app_args``). Both applications, stories and topics,
take the same."""

from __future__ import annotations

from pydantic import BaseModel, Field

#: Most rows one page of a listing may ask for.
MAX_PAGE_SIZE = 200


class TrendsArgs(BaseModel):
    """Builder arguments (``serve run`` / the Serve config's ``args``)."""

    database_url: str = Field(description="SQLAlchemy URL of Pulse's PostgreSQL database")
    page_size: int = Field(
        default=20, ge=1, le=MAX_PAGE_SIZE, description="Rows per page when a request names no limit"
    )
    topic_stories: int = Field(
        default=10, ge=1, le=MAX_PAGE_SIZE, description="Stories (best by score) in GET /v1/topics/{id}"
    )
    max_ongoing_requests: int = Field(default=256, ge=1)
    replicas: int = Field(default=1, ge=1)
    pool_size: int = Field(default=5, ge=1, description="Database connections per replica")
    access_log: bool = Field(default=False, description="Serve's per-request access log")
    log_level: str = Field(default="INFO", description="Level of the replicas' JSON log lines")
