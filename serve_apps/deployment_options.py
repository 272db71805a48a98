"""Each Serve deployment's options (``serve.deployment(...)``) from its application's arguments, so that
`pulse up`, ``serve run`` and ``serve deploy`` of the generated ``serve_apps/serve_config.yaml`` give the
replicas the same scaling, resources, health checks, shutdown and logs.

``DeploymentArgs`` holds what every application's arguments share (``SearchArgs``, ``CmsArgs`` and
``TrendsArgs`` extend it); each builder passes its own replica counts and CPU reservation per deployment to
``deployment_options``. A fixed count (``max_replicas`` unset or equal to ``replicas``) is Serve's
``num_replicas``, as before: no autoscaling metrics on the request path. A range is Serve's
``autoscaling_config`` (``min_replicas`` = ``replicas``, ``max_replicas``, ``target_ongoing_requests``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field, model_validator

from serve_apps.replica_logs import replica_logging


class DeploymentArgs(BaseModel):
    """Builder arguments every application shares: requests per replica, autoscaling target, health checks,
    shutdown and logs of each of its deployments."""

    #: ``(replicas field, max_replicas field)`` of each deployment, checked together.
    replica_fields: ClassVar[tuple[tuple[str, str], ...]] = ()

    max_ongoing_requests: int = Field(default=256, ge=1, description="Concurrent requests per replica")
    target_ongoing_requests: float = Field(
        default=2.0,
        gt=0,
        description="Ongoing requests per replica that Serve's autoscaler aims at (a replica range only)",
    )
    health_check_period_s: float = Field(
        default=10.0, gt=0, description="Seconds between the Serve controller's health checks of a replica"
    )
    health_check_timeout_s: float = Field(
        default=30.0, gt=0, description="Seconds a replica's health check may take before it is replaced"
    )
    graceful_shutdown_timeout_s: float = Field(
        default=20.0, ge=0, description="Seconds a stopping replica gets to finish its requests"
    )
    access_log: bool = Field(default=False, description="Serve's per-request access log")
    log_level: str = Field(default="INFO", description="Level of the replicas' JSON log lines")

    @model_validator(mode="after")
    def _replica_ranges(self) -> DeploymentArgs:
        for low_name, high_name in self.replica_fields:
            low, high = getattr(self, low_name), getattr(self, high_name)
            if high is not None and high < low:
                raise ValueError(
                    f"{high_name} ({high}) is below {low_name} ({low}): set it to {low} or more for "
                    f"autoscaling, or leave it unset for a fixed {low}"
                )
        return self


def deployment_options(
    args: DeploymentArgs,
    *,
    name: str,
    replicas: int,
    max_replicas: int | None,
    num_cpus: float,
    actor_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The keyword arguments of ``serve.deployment`` for one deployment of an application: ``replicas``
    (the minimum when ``max_replicas`` is above it), its CPU reservation and other Ray actor options, and
    the application's shared options."""
    options: dict[str, Any] = {
        "name": name,
        "max_ongoing_requests": args.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": num_cpus, **(actor_options or {})},
        "health_check_period_s": args.health_check_period_s,
        "health_check_timeout_s": args.health_check_timeout_s,
        "graceful_shutdown_timeout_s": args.graceful_shutdown_timeout_s,
        "logging_config": replica_logging(log_level=args.log_level, access_log=args.access_log),
    }
    if max_replicas is None or max_replicas == replicas:
        options["num_replicas"] = replicas
    else:
        options["autoscaling_config"] = {
            "min_replicas": replicas,
            "max_replicas": max_replicas,
            "target_ongoing_requests": args.target_ongoing_requests,
        }
    return options
