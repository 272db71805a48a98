"""A local head node with the dashboard (Ray's job server), started with ``ray start`` as `pulse up` starts
one (cluster.top.platform start_ray_head): its own ports and its own RAY_TMPDIR (so no other process's
``ray.init()`` finds it), the virtualenv first on the node's PATH (a job's bare ``python``), stopped by port
when the context ends. Tests that use it talk to the node over HTTP or from subprocesses, never through the
``ray_session`` fixture (one process, one Ray)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ray.job_submission import JobSubmissionClient

from cluster.ground.local_node import stop_node
from cluster.top.jobs_cli import connect
from cluster.top.serve_config import free_port

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class HeadNode:
    """A running head node: its GCS port and address, and its job server's URL."""

    port: int
    address: str
    job_server: str

    def client(self) -> JobSubmissionClient:
        """A job-server client (with the node's token when it asks for one)."""
        return connect(self.job_server, "the test's node")


@contextmanager
def head_node(*, num_cpus: int = 2, prefix: str = "pnode", ready_timeout_s: float = 60) -> Iterator[HeadNode]:
    """Start a head node with the dashboard; stop it (and remove its temporary folder) afterwards."""
    port, dashboard = free_port(), free_port()
    ray_tmp = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "RAY_TMPDIR": ray_tmp,
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", os.defpath)]),
    }
    cmd = [
        str(BIN / "ray"),
        "start",
        "--head",
        f"--port={port}",
        f"--num-cpus={num_cpus}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--dashboard-agent-listen-port={free_port()}",
        "--disable-usage-stats",
    ]
    try:
        started = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, check=False)
        assert started.returncode == 0, started.stdout + started.stderr
        node = HeadNode(port=port, address=f"127.0.0.1:{port}", job_server=f"http://127.0.0.1:{dashboard}")
        deadline = time.monotonic() + ready_timeout_s
        while True:  # the dashboard's job module answers a moment after `ray start` returns
            try:
                node.client().list_jobs()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield node
    finally:
        stop_node(port, grace_s=30)
        shutil.rmtree(ray_tmp, ignore_errors=True)
