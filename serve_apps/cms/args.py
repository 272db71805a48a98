"""The CMS application's arguments (``serve run`` / the Serve config's ``args``; ``pulse up`` builds them
from settings in ``cluster.top.serve_config.cms_app_args``).

Most fields shape the replicas. The scheduler's fields (``scheduler`` and below it) are read where the
scheduler actor is started, by ``pulse up`` and ``pulse cms scheduler`` (``cluster.top.cms_scheduler``),
from the same arguments: a replica never starts it.
"""

from __future__ import annotations

from pydantic import Field

from cluster.ground.constants import DEFAULT_TRUSTED_PROXIES
from serve_apps.deployment_options import DeploymentArgs


class CmsArgs(DeploymentArgs):
    """Builder arguments (``serve run`` / the Serve config's ``args``)."""

    replica_fields = (("replicas", "max_replicas"),)

    database_url: str
    jwt_secret: str = Field(min_length=32, description="Signs access and refresh tokens")
    access_ttl_s: int = 900
    refresh_ttl_s: int = 1_209_600
    max_body_bytes: int = 1_048_576
    cache_entries: int = Field(default=4096, ge=0, description="Anonymous answers kept per replica (0: none)")
    cache_poll_s: float = Field(default=0.2, ge=0, description="Seconds between outbox reads (0: no cache)")
    cache_ttl_s: float = Field(default=300.0, gt=0, description="Longest life of a cached answer")
    cache_max_age_s: int = Field(default=0, ge=0, description="max-age of public answers (0: no-cache)")
    idempotency_ttl_s: int = Field(default=86_400, gt=0, description="How long an Idempotency-Key is kept")
    rate_per_key: str = "600/minute"
    rate_per_ip: str = "300/minute"
    trusted_proxies: list[str] = Field(
        default=list(DEFAULT_TRUSTED_PROXIES),
        description="Peers whose X-Forwarded-For names the caller (addresses or CIDR networks)",
    )
    replicas: int = Field(default=1, ge=1, description="CmsIngress replicas (the minimum)")
    max_replicas: int | None = Field(
        default=None, ge=1, description="Most CmsIngress replicas when autoscaled (unset: fixed)"
    )
    ingress_num_cpus: float = Field(default=0.0, ge=0, description="CPUs reserved per CmsIngress replica")
    user_code_thread: bool = Field(
        default=False,
        description="Routes on a second event-loop thread (Serve's default), else on the replica's own loop",
    )
    pool_size: int = 10
    webhook_private_targets: bool = Field(
        default=False, description="Webhooks may POST to loopback, private and link-local addresses"
    )
    admin_email: str = "admin@pulse.local"
    admin_password: str | None = Field(default=None, description="First admin's password (bootstrap)")
    # The scheduler's (cluster.top.cms_scheduler); webhook_private_targets above is also its.
    scheduler: bool = Field(
        default=True, description="Start the CMS scheduler actor with these arguments (get-or-create)"
    )
    storage_uri: str = Field(default="var/storage", description="Where published items' vectors are written")
    namespace: str = "pulse"
    public_base_url: str = "https://cms.pulse.local"
    scheduler_interval_s: float = 2.0
    webhook_max_attempts: int = 8
    embed_on_publish: bool = True
    embed_inline_max: int = Field(
        default=32,
        ge=0,
        description="Embed changes of at most this many documents in the scheduler (0: a job)",
    )
