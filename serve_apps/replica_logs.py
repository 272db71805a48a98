"""How each Serve replica logs: JSON lines at the platform's level, the access log only when asked.

Every deployment passes this as its own ``logging_config``: Serve applies an application's config only to
deployments that set none, and the deployments must keep the access log off by default (a line per
request costs throughput), whoever runs them (`pulse up`, `serve run`, a test or a benchmark)."""

from __future__ import annotations

from typing import Any


def replica_logging(*, log_level: str, access_log: bool) -> dict[str, Any]:
    """A deployment's ``logging_config`` (Serve's ``LoggingConfig`` fields)."""
    return {"encoding": "JSON", "log_level": log_level.upper(), "enable_access_log": access_log}
