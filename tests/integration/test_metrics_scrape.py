"""Pulse's metrics reach Prometheus: Ray's metrics endpoint, scraped live after real work (the embedding
job, an index shard, the trends application under Serve), carries the ``ray_pulse_*`` families with their
tags, and ``promtool check metrics`` finds nothing wrong with them but what Ray itself imposes. The Serve
replica's JSON log lines carry the request id.

The work runs in a subprocess (``tests.support.metrics_probe``) with its own Ray and a known metrics port.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cluster.ground.metrics import ALL_METRICS
from tests.support.metrics_probe import DOCUMENTS
from tests.support.probe_run import run_probe

#: ``promtool check metrics`` lint findings that Ray imposes on every exported series, Pulse's included:
#: its own labels (Component, NodeAddress, SessionName, Version, WorkerId) are CamelCase; and the house names
#: end in ``_ms`` like Ray's own latency metrics (STYLE.md: pulse_<component>_<thing>_<unit>).
ACCEPTED_LINT = (
    re.compile(r"label names should be written in 'snake_case' not 'camelCase'$"),
    re.compile(r"metric names should not contain abbreviated units$"),
)
#: Lines of one series: name{labels} value
SERIES = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>.*)\} (?P<value>\S+)$")


def _promtool() -> str | None:
    promtool = shutil.which("promtool")
    if promtool is None and os.environ.get("CI"):
        pytest.fail("promtool is missing in CI: .ci/run installs it (Debian package prometheus)")
    return promtool


def _series(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    found = []
    for line in text.splitlines():
        m = SERIES.match(line)
        if m and m["name"] == name:
            labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m["labels"]))
            found.append((labels, float(m["value"])))
    return found


def _pulse_families(text: str) -> str:
    """The scrape's lines of Pulse's families only (their HELP, TYPE and series)."""
    return "\n".join(line for line in text.splitlines() if "ray_pulse_" in line) + "\n"


@pytest.mark.integration
def test_live_scrape_has_pulse_metrics_and_passes_promtool(clean_db: str, tmp_path: Path) -> None:
    result = run_probe(
        "tests.support.metrics_probe",
        clean_db,
        str(tmp_path / "storage"),
        timeout_s=600,
        clear_pulse_env=True,
    )
    assert result["missing"] == [], f"not on the scrape after {result['seconds']} s: {result['missing']}"
    assert result["embedded"] == DOCUMENTS
    assert result["statuses"] == [200, 404]
    # Serve's replica logs are JSON lines with the request id (and the route, application, replica).
    access = [json.loads(line) for line in result["replica_lines"]]
    assert len({line["request_id"] for line in access}) >= 2, access
    assert all(line["application"] == "trends" and line["replica"] for line in access), access
    text: str = result["scrape"]

    # Every defined family the scrape carries has the type and tags cluster/ground/metrics.py gives it.
    for spec in ALL_METRICS:
        if f"# TYPE {spec.exported} " in text:
            assert f"# TYPE {spec.exported} {spec.kind}" in text
            for labels, _ in _series(text, spec.exported_series[0]):
                assert set(spec.tag_keys) <= set(labels), (spec.name, labels)

    embedded = _series(text, "ray_pulse_embed_documents_total")
    assert sum(v for _, v in embedded) == DOCUMENTS
    assert {labels["model"] for labels, _ in embedded} == {"sentence-transformers/all-MiniLM-L6-v2"}
    vectors = _series(text, "ray_pulse_index_vectors")
    assert [(labels["model_id"] != "", labels["level"], labels["shard"], v) for labels, v in vectors] == [
        (True, "document", "0", float(DOCUMENTS))
    ]
    assert sum(v for _, v in _series(text, "ray_pulse_index_applied_total")) == DOCUMENTS

    requests = {
        (labels["app"], labels["route"], labels["status"]): v
        for labels, v in _series(text, "ray_pulse_http_requests_total")
    }
    assert requests[("trends", "/healthz", "200")] == 1
    not_found = [key for key in requests if key[0] == "trends" and key[2] == "404"]
    assert len(not_found) == 1 and "{" in not_found[0][1], f"a route template, not a raw path: {not_found}"
    assert "987654321" not in _pulse_families(text)
    buckets = _series(text, "ray_pulse_http_latency_ms_bucket")
    assert {labels["le"] for labels, _ in buckets} >= {"1.0", "10000.0", "+Inf"}

    promtool = _promtool()
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus): the scrape was not linted")
    # The whole scrape parses (Ray's own families have lint findings of their own: not Pulse's to fix).
    whole = _check_metrics(promtool, text)
    assert not any("error while linting" in f for f in whole), whole[:20]
    # Pulse's families: nothing but what Ray imposes.
    findings = _check_metrics(promtool, _pulse_families(text))
    unexpected = [f for f in findings if not any(p.search(f) for p in ACCEPTED_LINT)]
    assert unexpected == [], unexpected[:20]


def _check_metrics(promtool: str, body: str) -> list[str]:
    """``promtool check metrics`` findings on ``body``: exit 0 when clean, 3 with lint findings only (a
    parse error exits 1)."""
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, text=True, check=False
    )
    findings = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode in (0, 3), f"promtool exit {proc.returncode}: {findings[:20]}"
    return findings
