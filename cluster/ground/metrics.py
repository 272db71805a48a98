"""Pulse's metric families, in one place: names, kinds, descriptions, tag keys, histogram boundaries.

Pure (no Ray import): the definitions are values, read by the recorder that creates the
``ray.util.metrics`` objects in the recording process (``cluster.ground.ray_metrics``), by the unit test
that keeps the Grafana dashboard (``docker/grafana/dashboards/pulse.json``) in step with them, and by
``docs/observability.md``.

Names follow ``pulse_<component>_<thing>_<unit>``; a counter's name ends in ``_total``. Ray's metrics agent
exports each family to Prometheus with the ``ray_`` prefix (``ray_pulse_collect_documents_total``), a
histogram as ``<name>_bucket`` / ``_sum`` / ``_count`` (checked on a live scrape by
``tests/integration/test_metrics_scrape.py``), and adds its own labels to every series (``Component``,
``NodeAddress``, ``SessionName``, ``Version``, ``WorkerId``).

Tags are bounded sets: route templates (``/v1/documents/{document_id}``), never raw paths; error kinds are
codes or exception class names, never messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricKind = Literal["counter", "gauge", "histogram"]

#: The prefix Ray's metrics agent puts before every application metric it exports.
EXPORT_PREFIX = "ray_"
#: Histogram boundaries of request latencies, in milliseconds.
LATENCY_BOUNDARIES_MS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


@dataclass(frozen=True)
class MetricSpec:
    """One metric family: what a recorder creates and what Prometheus receives."""

    name: str
    kind: MetricKind
    description: str
    tag_keys: tuple[str, ...]
    #: where the code records it (for the docs)
    recorded_in: str
    boundaries: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.name.startswith("pulse_"):
            raise ValueError(
                f"metric {self.name}: names start with pulse_ (pulse_<component>_<thing>_<unit>)"
            )
        if (self.kind == "counter") != self.name.endswith("_total"):
            raise ValueError(f"metric {self.name}: counters, and only counters, end in _total")
        if (self.kind == "histogram") != bool(self.boundaries):
            raise ValueError(f"metric {self.name}: histograms, and only histograms, have boundaries")

    @property
    def exported(self) -> str:
        """The family's name on Ray's Prometheus endpoint."""
        return EXPORT_PREFIX + self.name

    @property
    def exported_series(self) -> tuple[str, ...]:
        """Every series name Prometheus stores for the family (a histogram's three)."""
        if self.kind == "histogram":
            return tuple(f"{self.exported}_{suffix}" for suffix in ("bucket", "sum", "count"))
        return (self.exported,)


COLLECT_DOCUMENTS = MetricSpec(
    "pulse_collect_documents_total",
    "counter",
    "Documents the collect job stored, by the kind of URL they came from (feed, sitemap, page, file) and "
    "outcome (new, updated, unchanged, duplicates).",
    ("source_kind", "outcome"),
    "jobs.collect.store.StoreBatch (per batch)",
)
COLLECT_URLS = MetricSpec(
    "pulse_collect_urls_total",
    "counter",
    "URLs the collect job finished, by kind and result (a document outcome or an error).",
    ("kind", "result"),
    "jobs.collect.store.StoreBatch (per batch)",
)
COLLECT_ERRORS = MetricSpec(
    "pulse_collect_errors_total",
    "counter",
    "URLs the collect job failed, by error code (http_status, timeout, robots_disallowed, store_error...).",
    ("kind",),
    "jobs.collect.store.StoreBatch (per batch)",
)
EMBED_DOCUMENTS = MetricSpec(
    "pulse_embed_documents_total",
    "counter",
    "Documents the embed job encoded into a vector file, by model name.",
    ("model",),
    "jobs.embed.stages.EncodeBatch (per block)",
)
EMBED_ERRORS = MetricSpec(
    "pulse_embed_errors_total",
    "counter",
    "Documents or runs the embed job could not embed, by kind (blank_document, or the exception class of a "
    "failed run).",
    ("kind",),
    "jobs.embed.stages.EncodeBatch (blank documents), jobs.embed.pipeline.run_embed (failed runs)",
)
INDEX_VECTORS = MetricSpec(
    "pulse_index_vectors",
    "gauge",
    "Vectors held by an index shard.",
    ("model_id", "level", "shard"),
    "actors.index_actor.VectorIndexService (each catch-up)",
)
INDEX_APPLIED = MetricSpec(
    "pulse_index_applied_total",
    "counter",
    "Vectors an index shard applied from the manifest and the deletion log (added, replaced, deleted).",
    ("model_id", "level", "shard"),
    "actors.index_actor.VectorIndexService (each catch-up)",
)
SEARCH_LATENCY = MetricSpec(
    "pulse_search_latency_ms",
    "histogram",
    "Latency of a search route's work in the ingress (query embedding, index, fusion, database), in "
    "milliseconds, by route template and mode (vector, keyword, hybrid; similar).",
    ("route", "mode"),
    "serve_apps.search.app.SearchIngress",
    LATENCY_BOUNDARIES_MS,
)
SEARCH_STAGE_LATENCY = MetricSpec(
    "pulse_search_stage_latency_ms",
    "histogram",
    "Latency of each stage of /v1/search and /similar (embed, vector, keyword, db...) in milliseconds.",
    ("stage",),
    "serve_apps.search.app.SearchIngress",
    (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
HTTP_REQUESTS = MetricSpec(
    "pulse_http_requests_total",
    "counter",
    "HTTP requests answered by a Serve application, by app, route template and status code.",
    ("app", "route", "status"),
    "serve_apps.http_metrics.HttpMetrics (middleware of every app)",
)
HTTP_LATENCY = MetricSpec(
    "pulse_http_latency_ms",
    "histogram",
    "Time a Serve application's FastAPI app took to answer, in milliseconds, by app and route template.",
    ("app", "route"),
    "serve_apps.http_metrics.HttpMetrics (middleware of every app)",
    LATENCY_BOUNDARIES_MS,
)
CMS_CACHE_REQUESTS = MetricSpec(
    "pulse_cms_cache_requests_total",
    "counter",
    "Anonymous CMS reads of cacheable content, by result: hit (answered from the replica's cache) or miss.",
    ("result",),
    "serve_apps.cms.http_cache.HttpCache (middleware of the CMS app)",
)
TREND_STORIES = MetricSpec(
    "pulse_trend_stories",
    "gauge",
    "Stories a trend clusterer holds, by partition (language[/source group]) and state (active, merged...).",
    ("partition", "state"),
    "actors.trend_actor.TrendService (each write)",
)
TREND_ASSIGNED = MetricSpec(
    "pulse_trend_documents_assigned_total",
    "counter",
    "Documents a trend clusterer assigned to a story (or re-assigned), by partition.",
    ("partition",),
    "actors.trend_actor.TrendService (each write)",
)
ERRORS = MetricSpec(
    "pulse_errors_total",
    "counter",
    "Errors by component (search, cms, trends, topics, index, trend) and kind (exception class or http_5xx).",
    ("component", "kind"),
    "serve_apps.http_metrics (5xx answers), index and trend actors (failed background work)",
)

#: Every family, in the dashboard's order.
ALL_METRICS: tuple[MetricSpec, ...] = (
    COLLECT_DOCUMENTS,
    COLLECT_URLS,
    COLLECT_ERRORS,
    EMBED_DOCUMENTS,
    EMBED_ERRORS,
    INDEX_VECTORS,
    INDEX_APPLIED,
    SEARCH_LATENCY,
    SEARCH_STAGE_LATENCY,
    HTTP_REQUESTS,
    HTTP_LATENCY,
    CMS_CACHE_REQUESTS,
    TREND_STORIES,
    TREND_ASSIGNED,
    ERRORS,
)
