"""Recording Pulse's metrics (``cluster.ground.metrics``) through ``ray.util.metrics``.

A ``ray.util.metrics`` object records for the process that created it, so each process creates its own,
lazily, on first use (``inc``, ``set_gauge``, ``observe``), and keeps it: a Ray Data worker, an actor, a
Serve replica or a job's driver. Nothing is created at import. Ray's metrics agent on the node exports what
every process recorded on the node's metrics port (``--metrics-export-port``) every few seconds; a
process that ends within seconds of its last record may leave that record unexported.

Tags must be exactly the family's ``tag_keys`` (a missing or unknown key raises ``ValueError`` naming the
family, here rather than deep in Ray); values are turned into strings.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from ray.util import metrics as ray_metrics

from cluster.ground.metrics import MetricSpec

_created: dict[str, ray_metrics.Metric] = {}
_lock = threading.Lock()


def metric(spec: MetricSpec) -> ray_metrics.Metric:
    """This process's Ray metric object for ``spec`` (created on first call)."""
    found = _created.get(spec.name)
    if found is not None:
        return found
    with _lock:
        found = _created.get(spec.name)
        if found is None:
            found = _create(spec)
            _created[spec.name] = found
        return found


def _create(spec: MetricSpec) -> ray_metrics.Metric:
    if spec.kind == "counter":
        return ray_metrics.Counter(spec.name, description=spec.description, tag_keys=spec.tag_keys)
    if spec.kind == "gauge":
        return ray_metrics.Gauge(spec.name, description=spec.description, tag_keys=spec.tag_keys)
    return ray_metrics.Histogram(
        spec.name, description=spec.description, boundaries=list(spec.boundaries), tag_keys=spec.tag_keys
    )


def _tags(spec: MetricSpec, tags: Mapping[str, object]) -> dict[str, str]:
    if set(tags) != set(spec.tag_keys):
        raise ValueError(
            f"metric {spec.name} takes the tags {sorted(spec.tag_keys)}, got {sorted(tags)}: "
            "pass exactly its tag_keys (cluster.ground.metrics)"
        )
    return {key: str(value) for key, value in tags.items()}


def _expect(spec: MetricSpec, kind: str) -> None:
    if spec.kind != kind:
        raise TypeError(f"metric {spec.name} is a {spec.kind}, not a {kind}")


def inc(spec: MetricSpec, value: float = 1.0, **tags: object) -> None:
    """Add ``value`` to a counter; zero or less records nothing (Ray refuses it)."""
    _expect(spec, "counter")
    checked = _tags(spec, tags)
    if value > 0:
        metric(spec).inc(value, tags=checked)  # type: ignore[attr-defined]


def set_gauge(spec: MetricSpec, value: float, **tags: object) -> None:
    """Set a gauge to ``value``."""
    _expect(spec, "gauge")
    metric(spec).set(value, tags=_tags(spec, tags))  # type: ignore[attr-defined]


def observe(spec: MetricSpec, value: float, **tags: object) -> None:
    """Record one observation of a histogram."""
    _expect(spec, "histogram")
    metric(spec).observe(value, tags=_tags(spec, tags))  # type: ignore[attr-defined]
