"""The reliability and security suites in one run, and the README's "Reliability" table (issue 20).

    python bench/reliability.py                      # chaos + security suites (long too), 10-min soak
    python bench/reliability.py --soak-duration 60   # a shorter soak
    python bench/reliability.py --from FIGURES.jsonl # only the table, from an earlier run's figures

1. ``pytest -m "chaos or security"``: every chaos and security test, the ``long`` ones included, with a
   fresh figures file (``PULSE_RELIABILITY_FIGURES``): each test writes its figures there through the
   ``figure`` fixture (``tests/support/figures.py``). A chaos scenario compares what a killed run kept
   against a clean one (its baseline); a fuzz run counts 5xx; the matrix counts cells whose answer
   differs from the permission table; hostile inputs count what was fetched, stored or answered wrongly.
2. ``bench/soak.py --duration N``: the mixed load while collection and embedding run; its JSON becomes a
   ``soak`` figure in the same file.

Prints one JSON object (the run's date, command, test outcome, seconds, the summary rows) on stdout and
the Markdown table on stderr (``--markdown FILE`` writes it to a file too).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import figures  # noqa: E402  (after the path is set, as the other benchmarks)

PYTEST_MARKERS = "chaos or security"


def run_suites(figures_file: Path, *, pytest_args: list[str]) -> dict[str, Any]:
    """Run every chaos and security test (long ones included) writing figures to ``figures_file``."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        PYTEST_MARKERS,
        "-p",
        "no:cacheprovider",
        "-q",
        *pytest_args,
    ]
    env = {**os.environ, "PULSE_RELIABILITY_FIGURES": str(figures_file)}
    started = time.monotonic()
    print(f"running: {' '.join(command)}", file=sys.stderr, flush=True)
    done = subprocess.run(command, cwd=ROOT, env=env, text=True, capture_output=True, check=False)
    tail = done.stdout.strip().splitlines()[-1:] or [""]
    sys.stderr.write(done.stdout[-4_000:] + done.stderr[-2_000:])
    return {
        "command": " ".join(command[2:]),
        "exit_code": done.returncode,
        "outcome": tail[0],
        "seconds": round(time.monotonic() - started, 1),
    }


def run_soak(figures_file: Path, *, duration_s: int, work: Path) -> dict[str, Any]:
    """Run the soak benchmark and add its summary to the figures file as a ``soak`` figure."""
    out, png = work / "soak.json", work / "soak.png"
    command = [
        sys.executable,
        str(ROOT / "bench" / "soak.py"),
        "--duration",
        str(duration_s),
        "--out",
        str(out),
        "--png",
        str(png),
    ]
    started = time.monotonic()
    print(f"running: {' '.join(command)}", file=sys.stderr, flush=True)
    done = subprocess.run(command, cwd=ROOT, text=True, capture_output=True, check=False)
    sys.stderr.write(done.stderr[-2_000:])
    result = json.loads(out.read_text()) if out.exists() else {}
    os.environ["PULSE_RELIABILITY_FIGURES"] = str(figures_file)
    figures.record(
        "bench/soak.py", "soak", {"exit_code": done.returncode, "png": str(png), **soak_summary(result)}
    )
    return {
        "command": " ".join(command[1:]),
        "exit_code": done.returncode,
        "seconds": round(time.monotonic() - started, 1),
    }


def soak_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The soak JSON's headline figures (``bench/soak.py`` documents its output)."""
    summary = result.get("summary", result)
    keys = (
        "duration_s",
        "requests",
        "errors",
        "error_rate",
        "p50_ms",
        "p99_ms",
        "max_memory_drift_pct",
        "processes",
        "memory_flat",
        "not_flat",
        "data_growth_pct",
    )
    return {key: summary[key] for key in keys if key in summary}


def table_rows(lines: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(part, what, figure) rows of the README table from the figures of one run."""
    rows: list[tuple[str, str, str]] = []
    for line in (x for x in lines if x["figure"] == "chaos"):
        failed = f"{line.get('failed_requests', 0)} of {line.get('requests', 0)} requests failed"
        degraded = line.get("degraded_requests")
        if degraded:
            failed += f", {degraded} partial"
        rows.append(
            (
                "chaos",
                f"kill: {line['scenario']}",
                f"lost {line.get('lost')}, duplicated {line.get('duplicated')}; "
                f"recovery {line.get('recovery_s')} s; {failed}",
            )
        )
    fuzz: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for line in (x for x in lines if x["figure"] == "fuzz"):
        app = fuzz[line["app"]]
        app["cases"] += int(line.get("cases", 0))
        app["server_errors"] += int(line.get("server_errors", 0))
        app["failures"] += int(line.get("failures", 0))
        app["roles"] += 1
    for name, app in sorted(fuzz.items()):
        rows.append(
            (
                "fuzzing",
                f"{name} ({app['roles']} callers)",
                f"{app['cases']:,} cases, {app['server_errors']} 5xx, {app['failures']} failed checks",
            )
        )
    for line in (x for x in lines if x["figure"] == "access"):
        rows.append(
            (
                "access control",
                "role x endpoint matrix, object-level access, JWTs",
                f"{line.get('cells')} cells ({line.get('roles')} roles x {line.get('operations')} "
                f"operations), {line.get('mismatches')} mismatches; {line.get('bola_cases')} object-level "
                f"and {line.get('jwt_cases')} token cases",
            )
        )
    for line in (x for x in lines if x["figure"] == "limits"):
        values = ", ".join(f"{k} {v}" for k, v in sorted(line.items()) if k not in {"test", "figure", "at"})
        rows.append(("access control", "rate and body limits", values))
    for line in (x for x in lines if x["figure"] == "hostile"):
        rows.append(
            (
                "hostile input",
                line["group"],
                f"{line.get('inputs')} inputs, {line.get('refused')} refused, "
                f"{line.get('stored_intact', 0)} stored intact; {line.get('server_errors')} 5xx, "
                f"{line.get('fetched_private', 0)} private fetches",
            )
        )
    for line in (x for x in lines if x["figure"] == "soak"):
        grew = line.get("not_flat") or []
        flat = int(line.get("processes", 0)) - len(grew)
        memory = f"{flat} of {line.get('processes')} Ray processes flat within 10 %"
        if grew:
            memory += "; grew: " + ", ".join(
                f"{e.get('actor') or e['process']} {e['drift_pct']:+} %" for e in grew
            )
        data = line.get("data_growth_pct") or {}
        if data:
            memory += " (documents indexed " + f"{data.get('documents_indexed', 0):+} %, vectors in shards "
            memory += f"{data.get('shard_rows', 0):+} %)"
        rows.append(
            (
                "soak",
                f"{line.get('duration_s')} s mixed load while collecting and embedding",
                f"{line.get('requests')} requests, error rate {line.get('error_rate')}, p50 "
                f"{line.get('p50_ms')} ms, p99 {line.get('p99_ms')} ms; {memory}",
            )
        )
    return rows


def markdown(rows: list[tuple[str, str, str]]) -> str:
    out = ["| part | what | figure |", "| --- | --- | --- |"]
    out += [f"| {part} | {what} | {value} |" for part, what, value in rows]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--soak-duration", type=int, default=600, help="seconds of soak (0: no soak)")
    parser.add_argument("--from", dest="source", type=Path, help="only render the table of this figures file")
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "reliability", help="output folder")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python bench/reliability.py " + " ".join(argv or sys.argv[1:]),
    }
    if args.source:
        figures_file = args.source
    else:
        args.work.mkdir(parents=True, exist_ok=True)
        figures_file = args.work / f"figures-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.jsonl"
        report["tests"] = run_suites(figures_file, pytest_args=args.pytest_args)
        if args.soak_duration > 0:
            report["soak"] = run_soak(figures_file, duration_s=args.soak_duration, work=args.work)
    lines = figures.read(figures_file)
    rows = table_rows(lines)
    report.update(figures_file=str(figures_file), figures=len(lines), rows=[list(row) for row in rows])
    table = markdown(rows)
    sys.stderr.write(table)
    if args.markdown:
        args.markdown.write_text(table, encoding="utf-8")
    print(json.dumps(report, indent=2))
    failed = report.get("tests", {}).get("exit_code", 0) or report.get("soak", {}).get("exit_code", 0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
