"""Which command lines belong to the local Ray node on a given GCS port (pure: no processes read)."""

from __future__ import annotations

import pytest

from cluster.ground.local_node import belongs

SESSION = "session_2026-11-24_14-24-58_181895_8655"


@pytest.mark.parametrize(
    "args",
    [
        ["/x/gcs_server", f"--log_dir=/tmp/ray/{SESSION}/logs", "--gcs_server_port=6391"],
        ["/x/raylet", f"--raylet_socket_name=/tmp/ray/{SESSION}/sockets/raylet"],
        ["python", "-m", "ray.util.client.server", "--address=192.0.2.2:6391", "--port=10001"],
        ["python", "dashboard.py", "--gcs-address=127.0.0.1:6391"],
        ["python", "log_monitor.py", f"--session-dir=/tmp/ray/{SESSION}"],
    ],
)
def test_the_nodes_own_processes_belong(args: list[str]) -> None:
    assert belongs(args, 6391, {SESSION})


@pytest.mark.parametrize(
    "args",
    [
        ["/x/gcs_server", "--log_dir=/tmp/ray/session_other/logs", "--gcs_server_port=63910"],
        ["python", "-m", "ray.util.client.server", "--address=192.0.2.2:16391"],
        ["python", "dashboard.py", "--gcs-address=127.0.0.1:6392", "--port=6391"],
        ["python", "my_script.py", "6391"],
        ["ray::IDLE"],  # a renamed worker: found as the raylet's child, not by its command line
    ],
)
def test_other_processes_do_not(args: list[str]) -> None:
    assert not belongs(args, 6391, {SESSION})
