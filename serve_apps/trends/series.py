"""A story's or topic's series as the API gives it: each bucket with whether it was a burst."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from actors.trend_lifecycle import LifecycleParams, burst_flags
from storage.trend_queries import Bucket, Granularity

_PARAMS = {
    "day": LifecycleParams(bucket=timedelta(days=1)),
    "hour": LifecycleParams(bucket=timedelta(hours=1)),
}


def marked_series(series: Sequence[Bucket], granularity: Granularity) -> list[dict[str, Any]]:
    """``series`` with ``burst`` on each bucket: the lifecycle's burst rule read at the bucket's end
    (``actors.trend_lifecycle.burst_flags``), the rule behind a story's own ``burst``."""
    flags = burst_flags([(b.bucket, b.count) for b in series], _PARAMS[granularity])
    return [{"bucket": b.bucket, "count": b.count, "burst": f} for b, f in zip(series, flags, strict=True)]
