"""The console's pure JavaScript (bursts, routes, the slug preview) under Node's own test runner
(tests/browser/console.test.mjs); the pages themselves are tested in Chromium (tests/e2e/test_console.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_console_functions_under_node() -> None:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is needed for the console's JavaScript tests")
        pytest.skip("node is not installed")
    done = subprocess.run(
        [node, "--test", "console.test.mjs"],
        cwd=ROOT / "tests" / "browser",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    tests = len(re.findall(r"^test\(", (ROOT / "tests" / "browser" / "console.test.mjs").read_text(), re.M))
    assert tests >= 4 and "# fail 0" in done.stdout and f"# pass {tests}\n" in done.stdout
