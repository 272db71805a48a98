"""Fuzzing an OpenAPI document with schemathesis through Serve's HTTP proxy (issues 15 and 20).

Every operation of one OpenAPI document gets schema-valid and schema-invalid requests: the schema's
examples, boundary values (the coverage phase: huge ids, NUL characters, empty and overlong strings...),
then ``max_examples`` random ones, deterministically. A response must not be a 5xx, must use a status that
the operation's OpenAPI lists, must match the schema documented for that status (so every error has the one
error shape), and a request that breaks the schema must get a 4xx (``negative_data_rejection``). Used by
tests/security/test_api_fuzz.py, which fuzzes every deployed application as every kind of caller.

``run`` returns what one run found (``FuzzRun``: its report, the ``fuzz`` figure's counts) without
judging it, so that the test can print the figure before ``FuzzRun.check`` fails it. Each run's full output
is written beside its JSON report (``.txt``).

It runs schemathesis' CLI (``schemathesis run``): its pytest loader for fixtures does not work with
pytest 9.2. A failure prints schemathesis' report, with a ``curl`` line that reproduces each case.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Random cases per operation after the examples and boundary values (fast settings for CI).
MAX_EXAMPLES = 10
#: ``negative_data_rejection``: a request that breaks the schema (the coverage and fuzzing phases make them,
#: schemathesis' default ``--mode all``) must get a 4xx, never a 2xx.
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance,negative_data_rejection"
#: Check settings (negative_data_rejection also accepts 413: see the file).
CONFIG = Path(__file__).with_name("schemathesis.toml")


@dataclass(frozen=True)
class FuzzRun:
    """One schemathesis run: its JSON report, its exit code and the tail of what it printed."""

    summary: dict[str, Any]
    returncode: int
    output: str
    seconds: float

    def figure(self) -> dict[str, int]:
        """The run's ``fuzz`` figure values: operations tested, test cases, failures, 5xx responses."""
        failures = self.summary.get("failures") or []
        return {
            "operations": int((self.summary.get("operations") or {}).get("tested", 0)),
            "cases": int((self.summary.get("test_cases") or {}).get("generated", 0)),
            "failures": sum(int(f.get("count", 1)) for f in failures),
            "server_errors": sum(int(f.get("count", 1)) for f in failures if f.get("type") == "ServerError"),
        }

    def check(self) -> None:
        """Fail the test with schemathesis' report on any failure (each with a ``curl`` line)."""
        summary, output = self.summary, self.output
        assert summary, f"schemathesis wrote no report (exit code {self.returncode}):\n{output}"
        # Every check failure fails the test: a 5xx, an undocumented status, a body off its schema, an
        # invalid request accepted.
        assert not summary.get("failures"), output
        # So does every error that speaks of the API (Network Error, Unhealthy API, Unresponsive Operation,
        # Server Unavailable...). A "Runtime Error" is schemathesis' own crash, not a response: 4.32.5's
        # body generator failed once on a CMS schema in CI ("spends the whole draw budget"); shown, not fatal.
        errors = summary.get("errors") or []
        assert all(e.get("title") == "Runtime Error" for e in errors), output
        if errors:
            print(f"schemathesis' own runtime errors (not the API's): {errors}\n{output[-3_000:]}")
        assert self.returncode == 0 or errors, output


def run(
    schema_url: str,
    report: Path,
    headers: dict[str, str] | None = None,
    *,
    max_examples: int = MAX_EXAMPLES,
    label: str | None = None,
) -> FuzzRun:
    """Run schemathesis against one OpenAPI document and return what it found, without judging it."""
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        f"--config-file={CONFIG}",
        "run",
        schema_url,
        f"--checks={CHECKS}",
        "--phases=examples,coverage,fuzzing",
        f"--max-examples={max_examples}",
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
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    seconds = time.monotonic() - started
    summary = json.loads(report.read_text()) if report.exists() else {}
    report.with_suffix(".txt").write_text(done.stdout + done.stderr, encoding="utf-8")
    who = label or ("authenticated" if headers else "anonymous")
    print(f"{schema_url} ({who}): {summary.get('test_cases', {})} in {seconds:.0f} s")
    return FuzzRun(summary, done.returncode, done.stdout[-20_000:] + done.stderr[-5_000:], seconds)
