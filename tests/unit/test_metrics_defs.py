"""Pulse's metric definitions, the Grafana dashboard and the Prometheus config stay in step; the recorders'
pure parts (tag checks, per-batch sums, the HTTP middleware's route templates and error kinds) do what
docs/observability.md says."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from ray._private import ray_constants

from cluster.ground import ray_metrics
from cluster.ground.metrics import ALL_METRICS, EXPORT_PREFIX, HTTP_REQUESTS, INDEX_VECTORS, MetricSpec
from jobs.collect.store import batch_metrics
from serve_apps import http_metrics
from serve_apps.errors import install_error_handlers
from serve_apps.http_metrics import UNMATCHED, install_http_metrics
from tests.conftest import ROOT

DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "pulse.json"
DATASOURCES = ROOT / "docker" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = ROOT / "docker" / "grafana" / "provisioning" / "dashboards" / "pulse.yml"
PROMETHEUS = ROOT / "docker" / "prometheus" / "prometheus.yml"
#: A metric name in PromQL: Pulse's exported families all start with ray_pulse_.
PROMQL_NAME = re.compile(r"\b" + EXPORT_PREFIX + r"pulse_[a-z0-9_]+\b")


def _panels() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels: list[dict[str, Any]] = dashboard["panels"]
    return panels


def _exprs(panel: dict[str, Any]) -> list[str]:
    return [str(t["expr"]) for t in panel["targets"]]


def test_metric_names_are_unique_and_follow_the_house_names() -> None:
    names = [m.name for m in ALL_METRICS]
    assert len(names) == len(set(names))
    for m in ALL_METRICS:
        assert re.fullmatch(r"pulse_[a-z]+_[a-z0-9_]+", m.name), m.name
        assert m.description and m.recorded_in and m.tag_keys
        assert list(m.boundaries) == sorted(set(m.boundaries))


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"name": "search_latency_ms", "kind": "histogram", "boundaries": (1.0,)}, "pulse_"),
        ({"name": "pulse_collect_documents", "kind": "counter"}, "_total"),
        ({"name": "pulse_index_vectors_total", "kind": "gauge"}, "_total"),
        ({"name": "pulse_search_latency_ms", "kind": "histogram"}, "boundaries"),
    ],
)
def test_a_malformed_definition_is_refused(kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        MetricSpec(description="d", tag_keys=("a",), recorded_in="here", **kwargs)


def test_exported_series_names() -> None:
    hist = next(m for m in ALL_METRICS if m.kind == "histogram")
    assert hist.exported_series == tuple(f"ray_{hist.name}_{s}" for s in ("bucket", "sum", "count"))
    assert HTTP_REQUESTS.exported_series == ("ray_pulse_http_requests_total",)


def test_every_panel_queries_defined_metrics_only() -> None:
    known = {series for m in ALL_METRICS for series in m.exported_series}
    for panel in _panels():
        names = {name for expr in _exprs(panel) for name in PROMQL_NAME.findall(expr)}
        assert names, f"panel {panel['title']!r} queries no Pulse metric"
        assert names <= known, f"panel {panel['title']!r} queries undefined {sorted(names - known)}"
        for expr in _exprs(panel):
            if "_bucket" in expr:
                assert "histogram_quantile" in expr and "le" in expr, expr


def test_every_defined_metric_has_a_panel_grouping_by_its_tags() -> None:
    for m in ALL_METRICS:
        exprs = [
            e for p in _panels() for e in _exprs(p) if set(PROMQL_NAME.findall(e)) & set(m.exported_series)
        ]
        assert exprs, f"no dashboard panel shows {m.name}"
        for tag in m.tag_keys:
            assert any(re.search(rf"\b{tag}\b", e) for e in exprs), (
                f"no panel of {m.name} shows its tag {tag}"
            )


def test_panels_use_the_provisioned_datasource_and_do_not_overlap() -> None:
    uid = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["uid"]
    cells: set[tuple[int, int]] = set()
    for panel in _panels():
        assert panel["datasource"]["uid"] == uid
        assert all(t["datasource"]["uid"] == uid for t in panel["targets"])
        g = panel["gridPos"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"panel {panel['title']!r} overlaps another"
        cells |= mine
    provider = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"]


def test_prometheus_config_scrapes_rays_discovery_file_and_compose_nodes() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    files = jobs["ray"]["file_sd_configs"][0]["files"]
    assert [Path(f).name for f in files] == [ray_constants.PROMETHEUS_SERVICE_DISCOVERY_FILE]
    assert jobs["ray-compose"]["static_configs"][0]["targets"]


def test_promtool_accepts_the_prometheus_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI: .ci/run installs it (Debian package prometheus)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    proc = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(PROMETHEUS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_recorder_refuses_wrong_tags_and_kinds_before_touching_ray() -> None:
    with pytest.raises(
        ValueError, match=r"pulse_index_vectors takes the tags \['level', 'model_id', 'shard'\]"
    ):
        ray_metrics.set_gauge(INDEX_VECTORS, 3, model_id=1, shard=0)
    with pytest.raises(TypeError, match="is a gauge, not a counter"):
        ray_metrics.inc(INDEX_VECTORS, 1, model_id=1, level="document", shard=0)


def test_collect_batch_metrics_sum_per_series() -> None:
    def row(kind: str, error: str | None = None, **counts: int) -> dict[str, Any]:
        base = dict.fromkeys(
            ("new", "updated", "unchanged", "duplicates", "discovered", "filtered", "failed"), 0
        )
        return {"url": "u", "kind": kind, "error": error, **base, **counts}

    rows = [
        row("page", new=1),
        row("page", new=1),
        row("feed", new=2, duplicates=1),
        row("sitemap", discovered=5),
        row("page", error="timeout", failed=1),
        row("page", error="timeout", failed=1),
        row("file", error="file_error", failed=1),
    ]
    sums = batch_metrics(rows)
    assert dict(sums["documents"]) == {("page", "new"): 2, ("feed", "new"): 2, ("feed", "duplicates"): 1}
    assert dict(sums["errors"]) == {("timeout",): 2, ("file_error",): 1}
    assert sums["urls"][("page", "new")] == 2 and sums["urls"][("sitemap", "discovered")] == 1
    assert sums["urls"][("page", "timeout")] == 2


class SpyRecorder:
    """Stands in for ``cluster.ground.ray_metrics`` in the middleware, checking tags the same way."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    def inc(self, spec: MetricSpec, value: float = 1.0, **tags: object) -> None:
        self.calls.append(("inc", spec.name, ray_metrics._tags(spec, tags)))

    def observe(self, spec: MetricSpec, value: float, **tags: object) -> None:
        assert value >= 0
        self.calls.append(("observe", spec.name, ray_metrics._tags(spec, tags)))


def test_http_middleware_records_route_templates_statuses_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = SpyRecorder()
    monkeypatch.setattr(http_metrics, "ray_metrics", spy)
    api = FastAPI()
    install_error_handlers(api)
    install_http_metrics(api, app="probe")

    @api.get("/v1/things/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    @api.get("/boom")
    async def boom() -> None:
        raise RuntimeError("broken on purpose")

    client = TestClient(api, raise_server_exceptions=False)
    assert client.get("/v1/things/7").status_code == 200
    assert client.get("/v1/things/8").status_code == 200
    assert client.get("/v1/things/x").status_code == 422
    assert client.get("/nowhere/at/all").status_code == 404
    assert client.get("/boom").status_code == 500

    requests = [tags for kind, name, tags in spy.calls if name == "pulse_http_requests_total"]
    assert requests == [
        {"app": "probe", "route": "/v1/things/{thing_id}", "status": "200"},
        {"app": "probe", "route": "/v1/things/{thing_id}", "status": "200"},
        {"app": "probe", "route": "/v1/things/{thing_id}", "status": "422"},
        {"app": "probe", "route": UNMATCHED, "status": "404"},
        {"app": "probe", "route": "/boom", "status": "500"},
    ]
    latencies = [tags for kind, name, tags in spy.calls if name == "pulse_http_latency_ms"]
    assert len(latencies) == 5 and latencies[0] == {"app": "probe", "route": "/v1/things/{thing_id}"}
    errors = [tags for kind, name, tags in spy.calls if name == "pulse_errors_total"]
    assert errors == [{"component": "probe", "kind": "RuntimeError"}]
