"""Running a probe module (``python -m tests.support.<probe> ARGS``) that starts its own Ray in a
subprocess, since one process holds one Ray and the test session may hold one already."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.conftest import ROOT


def run_probe(module: str, *args: str, timeout_s: int, clear_pulse_env: bool = False) -> dict[str, Any]:
    """The last JSON object line the probe printed; fails the test with its output if it did not end well.

    ``clear_pulse_env`` drops the caller's ``PULSE_*`` settings, so the probe sees only its own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "RAY_ADDRESS"
        and not (clear_pulse_env and k.startswith("PULSE_"))
        # Not the session's HAProxy folder and ports (tests/conftest.py ray_session): the probe's own Ray
        # would start a second HAProxy on them beside the session's and fail; a probe that wants the
        # HAProxy ingress sets its own (private_haproxy_env).
        and not k.startswith(("RAY_SERVE_HAPROXY_", "RAY_SERVE_ENABLE_HA_PROXY"))
    }
    env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"})
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    detail = f"rc {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-6000:]}"
    assert proc.returncode == 0, detail
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, detail
    return dict(json.loads(lines[-1]))
