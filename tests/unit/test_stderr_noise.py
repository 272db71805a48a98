"""drop_ray_core_noise: Ray's noise lines leave a console command's stderr and stdout, nothing else does."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import ROOT

SCRIPT = textwrap.dedent(
    """
    import os, sys
    from cluster.ground.runtime import drop_ray_core_noise
    drop_ray_core_noise()
    noise = b"[core_worker.cc:2170] Actor 'MapWorker' has constructor arguments in the object store and "
    os.write(2, noise + b"max_restarts > 0. If the arguments go out of scope the restart will fail.\\n")
    os.write(2, b"embedding 40/100\\r")  # a progress redraw: no newline, passes at once
    sys.stderr.write("kept: a warning of our own\\n")
    os.write(2, b"before\\n" + noise + b"max_restarts > 0 again\\nafter\\n")
    sys.stdout.write("summary line\\n")
    raylet = "\\x1b[33m(raylet)\\x1b[0m WARNING: 12 PYTHON worker processes have been started on node: 9a"
    print(raylet + " [repeated 2x across cluster]")  # how Ray's driver prints the raylet's warning
    print("kept: | table row |", flush=True)
    sys.stderr.write("error: the last words, without a newline")
    raise SystemExit(3)
    """
)


def test_only_the_noise_line_is_dropped_and_the_last_words_arrive() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 3
    assert done.stdout == b"summary line\nkept: | table row |\n"
    assert done.stderr == (
        b"embedding 40/100\rkept: a warning of our own\nbefore\nafter\n"
        b"error: the last words, without a newline"
    )
