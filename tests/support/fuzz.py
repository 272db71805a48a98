"""Fuzzing an OpenAPI document with schemathesis through Serve's HTTP proxy (issue 15).

Every operation of ``/openapi.json`` (search) and ``/v1/cms/openapi.json`` (CMS, anonymous and as an
admin) gets schema-valid and schema-invalid requests: the schema's examples, boundary values (the coverage
phase: huge ids, NUL characters, empty and overlong strings...), then ``MAX_EXAMPLES`` random ones,
deterministically. A response must not be a 5xx, must use a status that the operation's OpenAPI lists,
and must match the schema documented for that status (so every error has the one error shape). The tests are
the last of ``test_search_api.py`` and ``test_cms_api.py``, on those modules' deployed apps; the CMS is
fuzzed anonymously and as an admin created for the run, and afterwards an admin must still exist.

It runs schemathesis' CLI (``schemathesis run``): its pytest loader for fixtures does not work with
pytest 9.2. A failure prints schemathesis' report, with a ``curl`` line that reproduces each case.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: Random cases per operation after the examples and boundary values (fast settings for CI).
MAX_EXAMPLES = 10
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"
FUZZ_ADMIN = "fuzz-admin@pulse.test"


def fuzz(schema_url: str, report: Path, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Run schemathesis against one OpenAPI document; fail the test with its report on any failure."""
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        schema_url,
        f"--checks={CHECKS}",
        "--phases=examples,coverage,fuzzing",
        f"--max-examples={MAX_EXAMPLES}",
        "--generation-deterministic",
        "--no-shrink",
        "--workers=2",
        "--request-timeout=30",
        "--no-color",
        "--report=json",
        f"--report-json-path={report}",
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    summary = json.loads(report.read_text()) if report.exists() else {}
    cases = summary.get("test_cases", {})
    print(
        f"{schema_url} ({'admin' if headers else 'anonymous'}): {cases} in {time.monotonic() - started:.0f} s"
    )
    output = done.stdout[-20_000:] + done.stderr[-5_000:]
    assert summary, f"schemathesis wrote no report (exit code {done.returncode}):\n{output}"
    # Every check failure fails the test: a 5xx, an undocumented status, a body off its schema.
    assert not summary.get("failures"), output
    # So does every error that speaks of the API (Network Error, Unhealthy API, Unresponsive Operation,
    # Server Unavailable...). A "Runtime Error" is schemathesis' own crash, not a response: 4.32.5's
    # body generator failed once on a CMS schema in CI ("spends the whole draw budget"); shown, not fatal.
    errors = summary.get("errors") or []
    assert all(e.get("title") == "Runtime Error" for e in errors), output
    if errors:
        print(f"schemathesis' own runtime errors (not the API's): {errors}\n{output[-3_000:]}")
    assert done.returncode == 0 or errors, output
    return summary
