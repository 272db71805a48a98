"""`pulse down` stops the Ray node `pulse up` started and no other: a second node started with
`ray start --head` beside the test session's Ray is stopped, and the session's Ray keeps working."""

from __future__ import annotations

import subprocess
import sys
from contextlib import suppress
from pathlib import Path

import psutil
import ray

from cluster.ground.local_node import node_processes, stop_node
from cluster.top.platform import RAY_CURRENT_CLUSTER_FILE
from cluster.top.serve_config import free_port


@ray.remote
def square(x: int) -> int:
    return x * x


def test_stop_node_stops_only_that_node(ray_session: None) -> None:
    port = free_port()
    ray_cli = str(Path(sys.executable).with_name("ray"))
    started = subprocess.run(
        [
            ray_cli,
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=1",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--dashboard-agent-listen-port={free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    procs = node_processes(port)
    try:
        names = {p.name() for p in procs}
        assert {"gcs_server", "raylet"} <= names, names
        # The session's own Ray is not part of that node.
        session_gcs = [p for p in psutil.process_iter() if p.name() == "gcs_server" and p not in procs]
        assert session_gcs
        # `ray start` pointed Ray's "current cluster" file at the new node (ray.init() would join it).
        assert RAY_CURRENT_CLUSTER_FILE.read_text().strip().endswith(f":{port}")

        assert stop_node(port, grace_s=30, current_cluster_file=RAY_CURRENT_CLUSTER_FILE) == len(procs)

        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs)
        assert node_processes(port) == []
        assert not RAY_CURRENT_CLUSTER_FILE.exists()
        assert all(p.is_running() for p in session_gcs)
        assert ray.get(square.remote(7), timeout=60) == 49
    finally:
        for p in node_processes(port):  # the test failed half way: leave nothing behind
            with suppress(psutil.Error):
                p.kill()
