"""`pulse up` / `pulse down` / `pulse up` as a user runs them, with real HTTP in between.

Runs before any test starts the shared in-process Ray (e2e sorts first): `pulse down` runs `ray stop`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import ray

from storage.database import drop_database, ensure_database
from tests.conftest import sibling_database
from tests.integration.helpers import sample_subset

ROOT = Path(__file__).resolve().parents[2]
PORT = 8011


def pulse(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cluster.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_up_down_up_keeps_documents_and_embeds_nothing_twice(
    pg_server_url: tuple[str, str], tmp_path: Path
) -> None:
    if ray.is_initialized():
        pytest.skip("a Ray instance already runs in this process; `pulse down` would stop it")
    url = sibling_database(pg_server_url[0], "_cli")
    ensure_database(url)
    corpus = sample_subset(tmp_path / "corpus.jsonl", n_other=200)
    n_docs = sum(1 for _ in corpus.open())
    env = {
        **os.environ,
        "PULSE_DATABASE__URL": url,
        "PULSE_VAR_DIR": str(tmp_path / "var"),
        "PULSE_STORAGE__URI": str(tmp_path / "storage"),
        "PULSE_SAMPLE_CORPUS": str(corpus),
        "PULSE_SERVE__PORT": str(PORT),
        "PULSE_RAY__HEAD_PORT": "6391",
        "PULSE_RAY__INCLUDE_DASHBOARD": "false",
        "PULSE_RAY__NUM_CPUS": "2",
    }
    try:
        up = pulse(["up"], env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "Pulse is up" in up.stdout
        assert f"{n_docs} new" in up.stdout
        assert f"{n_docs} embedded" in up.stdout

        resp = httpx.get(
            f"http://127.0.0.1:{PORT}/v1/search", params={"q": "student walkout", "k": 5}, timeout=30
        )
        assert resp.status_code == 200
        first_results = resp.json()["results"]
        assert len(first_results) == 5

        status = pulse(["status"], env)
        assert status.returncode == 0
        assert f"documents: {n_docs}, embedded: {n_docs}, pending: 0" in status.stdout

        down = pulse(["down"], env)
        assert down.returncode == 0, down.stdout + down.stderr
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{PORT}/healthz", timeout=3)

        again = pulse(["up"], env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert f"0 new, 0 updated, {n_docs} unchanged" in again.stdout
        assert "0 embedded" in again.stdout
        resp = httpx.get(
            f"http://127.0.0.1:{PORT}/v1/search", params={"q": "student walkout", "k": 5}, timeout=30
        )
        assert resp.json()["results"] == first_results
    finally:
        pulse(["down"], env, timeout=120)
        drop_database(url)
